/**
 * How one connection's replies reach the socket: acks, errors, data (with no copy when it landed
 * behind its header), sparse reads as data and hole chunks, and block status. Every final reply
 * segment gives its request's budget back (`done(cost)`) once the writer has written it, so the
 * session reads no more than its budget while a client is not taking its replies.
 */
import {
  BlockError,
  type BlockErrorCode,
  type Extent,
  landedIn,
} from "../actors/block/contract.ts";
import type { BufferPool } from "../util/buffer_pool.ts";
import type { Logger } from "../util/log.ts";
import {
  BASE_ALLOCATION_ID,
  commandName,
  EINVAL,
  EIO,
  ENOMEM,
  ENOSPC,
  ENOTSUP,
  EOVERFLOW,
  EPERM,
  ESHUTDOWN,
  REPLY_FLAG_DONE,
  REPLY_TYPE_BLOCK_STATUS,
  REPLY_TYPE_BLOCK_STATUS_EXT,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_DATA,
  REPLY_TYPE_OFFSET_HOLE,
  SIMPLE_REPLY_SIZE,
  STATE_HOLE,
  STATE_ZERO,
} from "./constants.ts";
import {
  chunkHeaderSize,
  errorPayload,
  put32,
  put64,
  putChunkHeader,
  putSimpleReply,
  ReplyMode,
} from "./reply.ts";
import type { StreamWriter } from "./stream.ts";

const ERRNO: Record<BlockErrorCode, number> = {
  EPERM,
  EIO,
  ENOMEM,
  EINVAL,
  ENOSPC,
  EOVERFLOW,
  ENOTSUP,
  ESHUTDOWN,
  ETIMEDOUT: EIO,
  EFENCED: EIO,
};

/** Zero runs shorter than this are sent as data: a hole chunk would not save anything. */
export const MIN_HOLE = 4096;
/** Most descriptors in one block status reply; the client asks again for the rest. */
export const MAX_EXTENTS = 2048;

export class ReplySender {
  readonly #writer: StreamWriter;
  readonly #mode: ReplyMode;
  readonly #pool: BufferPool;
  readonly #log: Logger;
  readonly #done: (cost: number) => void;

  constructor(
    writer: StreamWriter,
    mode: ReplyMode,
    pool: BufferPool,
    log: Logger,
    done: (cost: number) => void,
  ) {
    this.#writer = writer;
    this.#mode = mode;
    this.#pool = pool;
    this.#log = log;
    this.#done = done;
  }

  /** A payload-free success. */
  ok(hHi: number, hLo: number, offset: number, cost: number): void {
    const buffer = this.#pool.get(64);
    let n: number;
    if (this.#mode === ReplyMode.Extended) {
      n = putChunkHeader(
        buffer,
        0,
        this.#mode,
        REPLY_FLAG_DONE,
        REPLY_TYPE_NONE,
        hHi,
        hLo,
        offset,
        0,
      );
    } else {
      // A simple reply is allowed for any payload-free success, even with structured replies.
      n = putSimpleReply(buffer, 0, 0, hHi, hLo);
    }
    this.#writer.send(buffer.subarray(0, n), () => {
      this.#pool.put(buffer, true);
      this.#done(cost);
    });
  }

  /**
   * Sends the reply header at `buffer[from, headroom)` and the data: one write with no copy
   * when the data landed right behind the header, otherwise the header and the data as two
   * segments. The pooled buffer goes back once both are written.
   */
  withData(buffer: Uint8Array, from: number, headroom: number, data: Uint8Array, cost: number) {
    const release = () => {
      this.#pool.put(buffer, true);
      this.#done(cost);
    };
    if (landedIn(data, buffer.subarray(headroom))) {
      this.#writer.send(buffer.subarray(from, headroom + data.length), release);
      return;
    }
    this.#writer.send(buffer.subarray(from, headroom));
    this.#writer.send(data, release);
  }

  /** Data runs as OFFSET_DATA chunks, zero runs as OFFSET_HOLE, then a final NONE chunk. */
  sparse(
    hHi: number,
    hLo: number,
    offset: number,
    length: number,
    extents: Extent[],
    buffer: Uint8Array,
    data: Uint8Array,
    cost: number,
  ): void {
    let at = 0;
    let dataStart = 0;
    const flushData = (end: number) => {
      if (end <= dataStart) return;
      const header = new Uint8Array(chunkHeaderSize(this.#mode) + 8);
      const n = putChunkHeader(
        header,
        0,
        this.#mode,
        0,
        REPLY_TYPE_OFFSET_DATA,
        hHi,
        hLo,
        offset,
        8 + end - dataStart,
      );
      put64(header, n, offset + dataStart);
      this.#writer.send(header);
      this.#writer.send(data.subarray(dataStart, end));
    };
    for (const extent of extents) {
      if (at >= length) break;
      const n = Math.min(extent.length, length - at);
      if (extent.zero && n >= MIN_HOLE) {
        flushData(at);
        this.hole(hHi, hLo, offset, offset + at, n, 0);
        dataStart = at + n;
      }
      at += n;
    }
    flushData(length);
    const done = new Uint8Array(chunkHeaderSize(this.#mode));
    putChunkHeader(done, 0, this.#mode, REPLY_FLAG_DONE, REPLY_TYPE_NONE, hHi, hLo, offset, 0);
    this.#writer.send(done, () => {
      this.#pool.put(buffer, true);
      this.#done(cost);
    });
  }

  /** One OFFSET_HOLE chunk; `release` runs once it is written (the final one gives the budget). */
  hole(
    hHi: number,
    hLo: number,
    reqOffset: number,
    at: number,
    size: number,
    flags: number,
    release?: () => void,
  ): void {
    const chunk = new Uint8Array(chunkHeaderSize(this.#mode) + 12);
    const n = putChunkHeader(
      chunk,
      0,
      this.#mode,
      flags,
      REPLY_TYPE_OFFSET_HOLE,
      hHi,
      hLo,
      reqOffset,
      12,
    );
    put64(chunk, n, at);
    put32(chunk, n + 8, size);
    this.#writer.send(chunk, release);
  }

  /** `extents` as one block status reply, clipped to `length` and to `max` descriptors. */
  blockStatus(
    hHi: number,
    hLo: number,
    offset: number,
    length: number,
    extents: readonly Extent[],
    max: number,
    cost: number,
  ): void {
    const extended = this.#mode === ReplyMode.Extended;
    const descriptorSize = extended ? 16 : 8;
    // Clip to the request: the sum never exceeds the length asked for.
    const lengths: number[] = [];
    const states: number[] = [];
    let covered = 0;
    for (const extent of extents) {
      if (covered >= length || lengths.length >= max) break;
      if (extent.length <= 0) break;
      const n = Math.min(extent.length, length - covered);
      const state = (extent.hole ? STATE_HOLE : 0) | (extent.zero ? STATE_ZERO : 0);
      const last = lengths.length - 1;
      if (last >= 0 && states[last] === state) lengths[last]! += n;
      else {
        lengths.push(n);
        states.push(state);
      }
      covered += n;
    }
    if (lengths.length === 0) throw new BlockError("EIO", "the device reported no extents");
    const prefix = extended ? 8 : 4;
    const payloadLength = prefix + descriptorSize * lengths.length;
    const headerSize = chunkHeaderSize(this.#mode);
    const buffer = this.#pool.get(headerSize + payloadLength);
    const type = extended ? REPLY_TYPE_BLOCK_STATUS_EXT : REPLY_TYPE_BLOCK_STATUS;
    putChunkHeader(buffer, 0, this.#mode, REPLY_FLAG_DONE, type, hHi, hLo, offset, payloadLength);
    let at = headerSize;
    put32(buffer, at, BASE_ALLOCATION_ID);
    if (extended) put32(buffer, at + 4, lengths.length);
    at += prefix;
    for (let i = 0; i < lengths.length; i++) {
      if (extended) {
        put64(buffer, at, lengths[i]!);
        put64(buffer, at + 8, states[i]!);
      } else {
        put32(buffer, at, lengths[i]!);
        put32(buffer, at + 4, states[i]!);
      }
      at += descriptorSize;
    }
    this.#writer.send(buffer.subarray(0, at), () => {
      this.#pool.put(buffer, true);
      this.#done(cost);
    });
  }

  /** The reply to a request that failed on the device: its errno and message. */
  failure(hHi: number, hLo: number, offset: number, error: unknown, type: number, cost: number) {
    let code = EIO;
    let message: string;
    if (error instanceof BlockError) {
      code = ERRNO[error.code] ?? EIO;
      message = error.message;
    } else {
      message = error instanceof Error ? error.message : String(error);
      this.#log.log("warn", "nbd request failed unexpectedly", {
        command: commandName(type),
        error: message,
      });
    }
    this.error(hHi, hLo, offset, code, `${commandName(type)}: ${message}`, cost);
  }

  /** An error reply; its request's budget (`cost`) returns once it is written. */
  error(
    hHi: number,
    hLo: number,
    offset: number,
    error: number,
    message: string,
    cost: number,
  ): void {
    const release = () => this.#done(cost);
    if (this.#mode === ReplyMode.Simple) {
      const out = new Uint8Array(SIMPLE_REPLY_SIZE);
      putSimpleReply(out, 0, error, hHi, hLo);
      this.#writer.send(out, release);
      return;
    }
    const payload = errorPayload(error, message);
    const headerSize = chunkHeaderSize(this.#mode);
    const out = new Uint8Array(headerSize + payload.length);
    putChunkHeader(
      out,
      0,
      this.#mode,
      REPLY_FLAG_DONE,
      REPLY_TYPE_ERROR,
      hHi,
      hLo,
      offset,
      payload.length,
    );
    out.set(payload, headerSize);
    this.#writer.send(out, release);
  }
}
