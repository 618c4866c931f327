/**
 * Transmission-phase replies written straight into caller-supplied (pooled) buffers: simple
 * replies, structured chunks and extended chunks. Big-endian stores are done by hand: no DataView
 * or BigInt per reply on the hot path.
 */
import {
  EXTENDED_HEADER_SIZE,
  EXTENDED_REPLY_MAGIC,
  SIMPLE_REPLY_MAGIC,
  SIMPLE_REPLY_SIZE,
  STRUCTURED_HEADER_SIZE,
  STRUCTURED_REPLY_MAGIC,
} from "./constants.ts";

/** How replies are framed on a connection, fixed when transmission begins. */
export const ReplyMode = {
  /** No structured replies negotiated: simple replies only. */
  Simple: 0,
  /** NBD_OPT_STRUCTURED_REPLY: 20-byte chunk headers. */
  Structured: 1,
  /** NBD_OPT_EXTENDED_HEADERS: 32-byte chunk headers with 64-bit lengths. */
  Extended: 2,
} as const;
export type ReplyMode = typeof ReplyMode[keyof typeof ReplyMode];

const TWO_32 = 4294967296;

export function put16(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 8;
  buf[at + 1] = v;
}

export function put32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = v >>> 16;
  buf[at + 2] = v >>> 8;
  buf[at + 3] = v;
}

/** Stores a non-negative safe integer as 64 bits. */
export function put64(buf: Uint8Array, at: number, v: number): void {
  put32(buf, at, Math.floor(v / TWO_32));
  put32(buf, at + 4, v >>> 0);
}

/** Bytes of a chunk header in `mode` (Simple has none: its reply is 16 bytes). */
export function chunkHeaderSize(mode: ReplyMode): number {
  return mode === ReplyMode.Extended ? EXTENDED_HEADER_SIZE : STRUCTURED_HEADER_SIZE;
}

/** Writes a 16-byte simple reply at `at`. */
export function putSimpleReply(
  buf: Uint8Array,
  at: number,
  error: number,
  handleHi: number,
  handleLo: number,
): number {
  put32(buf, at, SIMPLE_REPLY_MAGIC);
  put32(buf, at + 4, error);
  put32(buf, at + 8, handleHi);
  put32(buf, at + 12, handleLo);
  return SIMPLE_REPLY_SIZE;
}

/**
 * Writes a structured (20-byte) or extended (32-byte) chunk header at `at`; `offset` is the
 * request's offset, carried only by extended headers. Returns the header size.
 */
export function putChunkHeader(
  buf: Uint8Array,
  at: number,
  mode: ReplyMode,
  flags: number,
  type: number,
  handleHi: number,
  handleLo: number,
  offset: number,
  payloadLength: number,
): number {
  if (mode === ReplyMode.Extended) {
    put32(buf, at, EXTENDED_REPLY_MAGIC);
    put16(buf, at + 4, flags);
    put16(buf, at + 6, type);
    put32(buf, at + 8, handleHi);
    put32(buf, at + 12, handleLo);
    put64(buf, at + 16, offset);
    put64(buf, at + 24, payloadLength);
    return EXTENDED_HEADER_SIZE;
  }
  put32(buf, at, STRUCTURED_REPLY_MAGIC);
  put16(buf, at + 4, flags);
  put16(buf, at + 6, type);
  put32(buf, at + 8, handleHi);
  put32(buf, at + 12, handleLo);
  put32(buf, at + 16, payloadLength);
  return STRUCTURED_HEADER_SIZE;
}

const encoder = new TextEncoder();

/** An error chunk payload: error, message length, message (cut to fit 4096 bytes). */
export function errorPayload(error: number, message: string): Uint8Array {
  let text = encoder.encode(message);
  if (text.length > 4096) text = text.subarray(0, 4096);
  const out = new Uint8Array(6 + text.length);
  put32(out, 0, error);
  put16(out, 4, text.length);
  out.set(text, 6);
  return out;
}
