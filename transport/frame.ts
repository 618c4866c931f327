/**
 * The wire frame and its incremental decoder. A frame is an 8-byte prefix (u32 BE header length,
 * u32 BE payload length), a msgpack header map with a string `t`, then the raw payload. Block data
 * never goes through msgpack, and a received payload is a view into the read buffer, not a copy.
 */

import type { Frame, Header } from "./types.ts";
import { decodeFlatMap, encodeFlatMap, packr, unpackr } from "./codec.ts";

/** Bytes of the length prefix. */
export const PREFIX_BYTES = 8;
/** Largest header accepted or sent. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Default largest payload accepted. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;
/** Default read chunk: frames that fit are handed out as views into it. */
export const DEFAULT_CHUNK_BYTES = 256 * 1024;

const EMPTY = new Uint8Array(0);

/** The byte stream broke the framing rules; the link it came from cannot be trusted further. */
export class FrameError extends Error {
  override readonly name = "FrameError";
}

/** Where flat headers are encoded by hand (any header fits, or msgpackr takes it). */
const headerScratch = new Uint8Array(1024);

/** Packs a header; the result is short-lived (the buffer is reused), so copy it. */
export function encodeHeader(header: Header): Uint8Array {
  const flat = encodeFlatMap(header, headerScratch);
  if (flat !== undefined) return headerScratch.subarray(0, flat);
  const bytes = packr.pack(header) as Uint8Array;
  if (bytes.length > MAX_HEADER_BYTES) {
    throw new FrameError(
      `frame header of ${bytes.length} bytes is over the ${MAX_HEADER_BYTES} byte limit`,
    );
  }
  return bytes;
}

/** Writes the 8-byte length prefix at `at`. */
export function writePrefix(
  into: Uint8Array,
  at: number,
  headerBytes: number,
  payloadBytes: number,
): void {
  into[at] = headerBytes >>> 24;
  into[at + 1] = headerBytes >>> 16;
  into[at + 2] = headerBytes >>> 8;
  into[at + 3] = headerBytes;
  into[at + 4] = payloadBytes >>> 24;
  into[at + 5] = payloadBytes >>> 16;
  into[at + 6] = payloadBytes >>> 8;
  into[at + 7] = payloadBytes;
}

/** One whole frame in a fresh buffer (handshakes and tests; the link's data path stages frames). */
export function encodeFrame(header: Header, payload: Uint8Array = EMPTY): Uint8Array {
  const head = encodeHeader(header);
  const out = new Uint8Array(PREFIX_BYTES + head.length + payload.length);
  writePrefix(out, 0, head.length, payload.length);
  out.set(head, PREFIX_BYTES);
  out.set(payload, PREFIX_BYTES + head.length);
  return out;
}

/** Reused bounds for decoding in place: msgpackr then caches one DataView per chunk. */
const bounds = { start: 0, end: 0 };

/** Decodes a header and checks it is a map with a string `t`. */
export function decodeHeader(bytes: Uint8Array): Header {
  return decodeHeaderAt(bytes, 0, bytes.length);
}

/** Decodes the header in `bytes[start, end)` without making a view of it. */
export function decodeHeaderAt(bytes: Uint8Array, start: number, end: number): Header {
  // The usual flat header decodes by hand; anything else goes through msgpackr.
  const flat = decodeFlatMap(bytes, start, end);
  if (flat !== undefined && typeof flat.t === "string") return flat as Header;
  let value: unknown;
  try {
    bounds.start = start;
    bounds.end = end;
    value = unpackr.unpack(bytes, bounds);
  } catch (error) {
    // msgpackr may quote what it decoded: the peer's bytes stay out of logs beyond a glimpse.
    const why = String((error as Error).message).slice(0, 120);
    throw new FrameError(`undecodable frame header: ${why}`);
  }
  if (
    typeof value !== "object" || value === null || Array.isArray(value) ||
    typeof (value as { t?: unknown }).t !== "string"
  ) {
    throw new FrameError("frame header is not a map with a string `t`");
  }
  return value as Header;
}

/** Where a reader gets bytes: a Duplex or anything with its `read`. */
export interface ByteSource {
  read(into: Uint8Array): Promise<number | null>;
}

export interface FrameReaderOptions {
  /** Largest payload accepted; a longer one is a FrameError. */
  readonly maxPayloadBytes?: number;
  /** Largest header accepted (default and most {@link MAX_HEADER_BYTES}). */
  readonly maxHeaderBytes?: number;
  /** Size of the read chunks. At least one header plus prefix. */
  readonly chunkBytes?: number;
}

function u32(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>>
    0;
}

/** A read chunk and how many frames handed out from it the receiver still holds. */
class Chunk {
  held = 0;
  /** The reader still reads into it; a retired chunk with nothing held can be reused. */
  current = true;
  constructor(readonly bytes: Uint8Array) {}
}

/** What a received frame keeps alive: the chunk it views, or its own payload buffer. */
type Lease = Chunk | Uint8Array;

/**
 * A frame as the reader hands it out. It remembers the buffer it views, so that a receiver that
 * is done with it can give it back ({@link FrameReader.recycle}); once only.
 */
export class ReceivedFrame implements Frame {
  #lease: Lease | undefined;
  /** `lease` undefined: the payload is in a buffer the reader does not own (a target's). */
  constructor(readonly header: Header, readonly payload: Uint8Array, lease: Lease | undefined) {
    this.#lease = lease;
  }

  /** The same frame with a validated header; the lease moves to the new frame. */
  withHeader(header: Header): ReceivedFrame {
    const lease = this.#lease;
    this.#lease = undefined;
    return new ReceivedFrame(header, this.payload, lease);
  }

  /** Takes the lease (undefined when it was already taken). */
  takeLease(): Lease | undefined {
    const lease = this.#lease;
    this.#lease = undefined;
    return lease;
  }
}

/** Retired chunks kept for reuse once every frame viewing them came back. */
const SPARE_CHUNKS = 2;
/** Large payload buffers kept for reuse, by count and by bytes. */
const SPARE_LARGE = 8;
const SPARE_LARGE_BYTES = 32 * 1024 * 1024;

/**
 * Where a large frame's payload should land, asked once its header is decoded (not yet
 * validated): a view of exactly `payloadBytes` bytes (a caller's buffer waiting for this reply),
 * or undefined for the reader's own buffer. What lands there is only the wire's bytes: the
 * receiver still checks the frame before it trusts them.
 */
export type PayloadTarget = (header: Header, payloadBytes: number) => Uint8Array | undefined;

/**
 * Reads frames from a byte source into chunk buffers. Frames that fit a chunk come out as views
 * into it; a frame larger than a chunk gets its own buffer that the source fills directly. The
 * receiver owns what it is handed: a chunk that frames were handed out from is never written
 * again while any of them is held, and the reader moves to a fresh chunk, carrying the partial
 * tail over. A receiver that gives frames back with {@link FrameReader.recycle} lets the reader
 * reuse their chunk (and large payload buffers) instead of allocating fresh, zeroed memory.
 */
export class FrameReader {
  readonly #source: ByteSource;
  #maxPayload = 0;
  #maxHeader = 0;
  #chunkBytes = 0;
  #chunk: Chunk;
  #start = 0;
  #end = 0;
  #spareChunks: Chunk[] = [];
  #spareLarge: Uint8Array[] = [];
  #spareLargeBytes = 0;
  /** Bytes read from the source so far (keepalive watches it instead of a clock per read). */
  received = 0;
  /** Where large payloads go instead of the reader's own buffers (see {@link PayloadTarget}). */
  payloadTarget: PayloadTarget | undefined;

  constructor(source: ByteSource, options: FrameReaderOptions = {}) {
    this.#source = source;
    this.#limit(options);
    this.#chunk = new Chunk(new Uint8Array(this.#chunkBytes));
  }

  #limit(options: FrameReaderOptions): void {
    this.#maxPayload = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.#maxHeader = Math.min(options.maxHeaderBytes ?? MAX_HEADER_BYTES, MAX_HEADER_BYTES);
    this.#chunkBytes = Math.max(
      options.chunkBytes ?? DEFAULT_CHUNK_BYTES,
      PREFIX_BYTES + this.#maxHeader,
    );
  }

  /**
   * Changes the limits, moving what is buffered and unread into a chunk of the new size. A link
   * reads its handshake with small limits (a stranger gets a few KiB of memory, not a full read
   * chunk) and sets the full ones once the peer is trusted.
   */
  setLimits(options: FrameReaderOptions): void {
    this.#limit(options);
    const old = this.#chunk;
    const unread = this.#end - this.#start;
    if (unread > this.#chunkBytes) {
      throw new FrameError(`${unread} unread bytes do not fit a ${this.#chunkBytes} byte chunk`);
    }
    old.current = false;
    const fresh = new Chunk(new Uint8Array(this.#chunkBytes));
    fresh.bytes.set(old.bytes.subarray(this.#start, this.#end));
    this.#chunk = fresh;
    this.#start = 0;
    this.#end = unread;
    this.#spareChunks = [];
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * The next frame already buffered, without reading; undefined when more bytes are needed.
   * Lets a caller handle every buffered frame in one synchronous turn.
   */
  poll(): ReceivedFrame | undefined {
    const chunk = this.#chunk;
    const bytes = chunk.bytes;
    const start = this.#start;
    if (this.#end - start < PREFIX_BYTES) return undefined;
    const headerBytes = u32(bytes, start);
    const payloadBytes = u32(bytes, start + 4);
    this.#check(headerBytes, payloadBytes);
    const total = PREFIX_BYTES + headerBytes + payloadBytes;
    if (this.#end - start < total) return undefined;
    const payloadAt = start + PREFIX_BYTES + headerBytes;
    const header = decodeHeaderAt(bytes, start + PREFIX_BYTES, payloadAt);
    this.#start = start + total;
    // Binary header fields are views into the chunk too, so any frame holds the chunk.
    chunk.held++;
    const payload = payloadBytes === 0
      ? EMPTY
      : bytes.subarray(payloadAt, payloadAt + payloadBytes);
    return new ReceivedFrame(header, payload, chunk);
  }

  /** The next frame, reading as needed; null at a clean end of stream between frames. */
  async next(): Promise<ReceivedFrame | null> {
    for (;;) {
      const frame = this.poll();
      if (frame !== undefined) return frame;
      const have = this.#end - this.#start;
      const length = this.#chunk.bytes.length;
      if (have >= PREFIX_BYTES) {
        const headerBytes = u32(this.#chunk.bytes, this.#start);
        const total = PREFIX_BYTES + headerBytes + u32(this.#chunk.bytes, this.#start + 4);
        if (total > this.#chunkBytes) return await this.#readLarge(headerBytes);
        if (this.#start + total > length) this.#relocate();
      } else if (have === 0 && this.#chunk.held === 0) {
        this.#start = this.#end = 0;
      } else if (length - this.#start < this.#chunkBytes / 4) {
        // Little room left: start a fresh chunk rather than read in small pieces.
        this.#relocate();
      }
      const got = await this.#source.read(this.#chunk.bytes.subarray(this.#end));
      if (got === null) {
        if (have === 0) return null;
        throw new FrameError(`truncated frame: the stream ended ${have} bytes into a frame`);
      }
      this.#end += got;
      this.received += got;
    }
  }

  /**
   * Gives back a frame this reader handed out: the receiver will not touch its payload or header
   * again, so the memory may be read into anew. A second call for the same frame, or a frame
   * from elsewhere, does nothing.
   */
  recycle(frame: Frame): void {
    if (!(frame instanceof ReceivedFrame)) return;
    const lease = frame.takeLease();
    if (lease === undefined) return;
    if (lease instanceof Chunk) {
      if (--lease.held === 0 && !lease.current && this.#spareChunks.length < SPARE_CHUNKS) {
        this.#spareChunks.push(lease);
      }
    } else if (
      this.#spareLarge.length < SPARE_LARGE &&
      this.#spareLargeBytes + lease.length <= SPARE_LARGE_BYTES
    ) {
      this.#spareLarge.push(lease);
      this.#spareLargeBytes += lease.length;
    }
  }

  #check(headerBytes: number, payloadBytes: number): void {
    if (headerBytes === 0) throw new FrameError("frame with an empty header");
    if (headerBytes > this.#maxHeader) {
      throw new FrameError(
        `frame header of ${headerBytes} bytes is over the ${this.#maxHeader} byte limit`,
      );
    }
    if (payloadBytes > this.#maxPayload) {
      throw new FrameError(
        `frame payload of ${payloadBytes} bytes is over the ${this.#maxPayload} byte limit`,
      );
    }
  }

  async #fill(): Promise<boolean> {
    const got = await this.#source.read(this.#chunk.bytes.subarray(this.#end));
    if (got === null) return false;
    this.#end += got;
    this.received += got;
    return true;
  }

  /** Moves the unread tail to the front, or into another chunk when frames still view this one. */
  #relocate(): void {
    const old = this.#chunk;
    if (old.held > 0) {
      old.current = false;
      const fresh = this.#spareChunks.pop() ?? new Chunk(new Uint8Array(this.#chunkBytes));
      fresh.current = true;
      fresh.bytes.set(old.bytes.subarray(this.#start, this.#end));
      this.#chunk = fresh;
    } else {
      old.bytes.copyWithin(0, this.#start, this.#end);
    }
    this.#end -= this.#start;
    this.#start = 0;
  }

  /** A buffer of at least `size` bytes for a large payload: a spare one, or fresh. */
  #largeBuffer(size: number): Uint8Array {
    const spares = this.#spareLarge;
    // Newest first: the buffer given back last is the likeliest to be in the CPU cache.
    for (let i = spares.length - 1; i >= 0; i--) {
      const spare = spares[i]!;
      // Reuse only when it does not waste more than half of the buffer.
      if (spare.length >= size && spare.length <= 2 * size) {
        spares.splice(i, 1);
        this.#spareLargeBytes -= spare.length;
        return spare;
      }
    }
    return new Uint8Array(size);
  }

  /** A frame bigger than a chunk: its payload gets its own buffer, filled by the source. */
  async #readLarge(headerBytes: number): Promise<ReceivedFrame> {
    const headEnd = PREFIX_BYTES + headerBytes;
    while (this.#end - this.#start < headEnd) {
      if (this.#start + headEnd > this.#chunk.bytes.length) this.#relocate();
      if (!(await this.#fill())) {
        throw new FrameError(
          `truncated frame: the stream ended ${this.#end - this.#start} bytes into a frame`,
        );
      }
    }
    const bytes = this.#chunk.bytes;
    const start = this.#start;
    const payloadBytes = u32(bytes, start + 4);
    // Decoded from a copy, so the frame holds its own buffer only, not the chunk.
    const head = bytes.slice(start + PREFIX_BYTES, start + headEnd);
    const header = decodeHeaderAt(head, 0, head.length);
    const target = this.payloadTarget?.(header, payloadBytes);
    const buffer = target !== undefined && target.length === payloadBytes
      ? target
      : this.#largeBuffer(payloadBytes);
    const payload = buffer.length === payloadBytes ? buffer : buffer.subarray(0, payloadBytes);
    const carried = Math.min(this.#end - start - headEnd, payloadBytes);
    payload.set(bytes.subarray(start + headEnd, start + headEnd + carried));
    this.#start = start + headEnd + carried;
    let filled = carried;
    while (filled < payloadBytes) {
      const got = await this.#source.read(payload.subarray(filled));
      if (got === null) {
        throw new FrameError(
          `truncated frame: the stream ended ${filled} of ${payloadBytes} payload bytes in`,
        );
      }
      filled += got;
      this.received += got;
    }
    // A payload read into its target is the caller's: the reader keeps no lease on it.
    return new ReceivedFrame(header, payload, buffer === target ? undefined : buffer);
  }
}
