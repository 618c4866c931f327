/**
 * Byte-stream plumbing for one NBD connection: a buffered reader that hands out views of whole
 * headers and reads large payloads straight into their destination, and a writer that batches
 * small replies into one write while large payloads go out from their own buffers, uncopied.
 * Both count their progress so the server can tell an idle client from a busy one and a client
 * that stopped reading from a slow one, without a timer per request.
 */

/** What a connection must offer; `Deno.Conn` fits. */
export interface ByteStream {
  read(into: Uint8Array): Promise<number | null>;
  /** May write only part of `data`; resolves the count written. */
  write(data: Uint8Array): Promise<number>;
  close(): void;
}

/** The peer closed the stream in the middle of a message. */
export class TruncatedError extends Error {
  override name = "TruncatedError";
}

/** Buffers start this small, so an idle connection costs little, and grow for busy ones. */
const INITIAL_BUFFER = 16 * 1024;

export class StreamReader {
  readonly #stream: ByteStream;
  readonly #maxBuffer: number;
  #buffer: Uint8Array;
  #start = 0;
  #end = 0;
  #reads = 0;

  /** @param bufferSize the size the buffer may grow to while the client keeps it full. */
  constructor(stream: ByteStream, bufferSize = 256 * 1024) {
    this.#stream = stream;
    this.#maxBuffer = bufferSize;
    this.#buffer = new Uint8Array(Math.min(INITIAL_BUFFER, bufferSize));
  }

  /** Reads from the stream that returned bytes so far: it changes whenever the client sends. */
  get progress(): number {
    return this.#reads;
  }

  /** Bytes buffered and not yet consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * Resolves a view of the next `n` bytes, valid until the next call; null at a clean end of
   * stream (nothing buffered). Throws {@link TruncatedError} mid-message.
   */
  async take(n: number): Promise<Uint8Array | null> {
    if (n > this.#buffer.length) this.#resize(Math.max(n, this.#buffer.length * 2));
    while (this.#end - this.#start < n) {
      if (this.#start > 0 && this.#buffer.length - this.#start < n) this.#compact();
      const got = await this.#stream.read(this.#buffer.subarray(this.#end));
      if (got === null) {
        if (this.#end === this.#start) return null;
        throw new TruncatedError(`stream ended ${this.#end - this.#start} bytes into a message`);
      }
      this.#reads++;
      this.#end += got;
      // A read that filled the buffer means the client has more queued: take more at a time.
      if (this.#end === this.#buffer.length && this.#buffer.length < this.#maxBuffer) {
        this.#resize(Math.min(this.#maxBuffer, this.#buffer.length * 2));
      }
    }
    const at = this.#start;
    this.#start += n;
    return this.#buffer.subarray(at, at + n);
  }

  /** Like {@link take} but only from what is already buffered: null when not enough is there. */
  takeBuffered(n: number): Uint8Array | null {
    if (this.#end - this.#start < n) return null;
    const at = this.#start;
    this.#start += n;
    return this.#buffer.subarray(at, at + n);
  }

  /** Fills all of `into`: first from the buffer, then by reading the stream directly into it. */
  async readInto(into: Uint8Array): Promise<void> {
    const fromBuffer = Math.min(into.length, this.#end - this.#start);
    if (fromBuffer > 0) {
      into.set(this.#buffer.subarray(this.#start, this.#start + fromBuffer));
      this.#start += fromBuffer;
    }
    let done = fromBuffer;
    while (done < into.length) {
      const got = await this.#stream.read(into.subarray(done));
      if (got === null) throw new TruncatedError(`stream ended ${done} bytes into a payload`);
      this.#reads++;
      done += got;
    }
  }

  /** Discards `n` bytes (a payload we refuse but must step over). */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const have = this.#end - this.#start;
      if (have === 0) {
        this.#start = this.#end = 0;
        const got = await this.#stream.read(this.#buffer);
        if (got === null) throw new TruncatedError(`stream ended ${n - left} bytes into a payload`);
        this.#reads++;
        this.#end = got;
        continue;
      }
      const step = Math.min(have, left);
      this.#start += step;
      left -= step;
    }
  }

  #compact(): void {
    this.#buffer.copyWithin(0, this.#start, this.#end);
    this.#end -= this.#start;
    this.#start = 0;
  }

  #resize(size: number): void {
    const next = new Uint8Array(size);
    next.set(this.#buffer.subarray(this.#start, this.#end));
    this.#end -= this.#start;
    this.#start = 0;
    this.#buffer = next;
  }
}

/** Segments at least this long are written from their own buffer instead of being batched. */
const DIRECT_WRITE = 64 * 1024;

/**
 * Queues outgoing segments. While one write is in flight, later small segments gather and go
 * out together in the next write, so a burst of replies costs one syscall, not one each.
 * A segment's `release` runs only once its bytes are written to the stream (or dropped because
 * writing failed): callers tie buffers and budgets to it, so a client that stops reading holds
 * what its unwritten replies hold and nothing more.
 */
export class StreamWriter {
  readonly #stream: ByteStream;
  readonly #maxBatch: number;
  /** Grows while bursts fill it, so an idle connection holds only a small one. */
  #batch: Uint8Array;
  readonly #segments: Uint8Array[] = [];
  readonly #releases: ((() => void) | undefined)[] = [];
  /** Releases of segments copied into the batch being written. */
  readonly #batched: (() => void)[] = [];
  #queued = 0;
  #writes = 0;
  #writing = false;
  #pumping = false;
  #failed: Error | null = null;
  #idle: (() => void)[] = [];

  /** @param batchSize the size the batch may grow to while bursts of replies fill it. */
  constructor(stream: ByteStream, batchSize = 256 * 1024) {
    this.#stream = stream;
    this.#maxBatch = batchSize;
    this.#batch = new Uint8Array(Math.min(INITIAL_BUFFER, batchSize));
  }

  /** The error that stopped writing, if any; later sends are dropped (and released). */
  get failed(): Error | null {
    return this.#failed;
  }

  /** Bytes queued and not yet written. */
  get queued(): number {
    return this.#queued;
  }

  /** True while a write to the stream is waiting: the client is not taking what we send. */
  get writing(): boolean {
    return this.#writing;
  }

  /** Writes to the stream that completed so far: unchanged while the client reads nothing. */
  get progress(): number {
    return this.#writes;
  }

  /** Queues `data`; `release` runs once the bytes have been written to the stream (or dropped). */
  send(data: Uint8Array, release?: () => void): void {
    if (this.#failed) {
      release?.();
      return;
    }
    this.#segments.push(data);
    this.#releases.push(release);
    this.#queued += data.length;
    if (!this.#pumping) this.#pump();
  }

  /** Resolves when everything queued so far has been written (or writing failed). */
  drained(): Promise<void> {
    if (!this.#pumping) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#segments.length > 0) {
        const first = this.#segments[0]!;
        if (
          first.length >= DIRECT_WRITE || this.#segments.length === 1 ||
          first.length > this.#batch.length
        ) {
          this.#segments.shift();
          const release = this.#releases.shift();
          try {
            await this.#writeAll(first);
          } finally {
            this.#queued -= first.length;
            release?.();
          }
          continue;
        }
        const batch = this.#batch;
        let used = 0;
        while (this.#segments.length > 0) {
          const next = this.#segments[0]!;
          if (next.length >= DIRECT_WRITE) break;
          if (used + next.length > batch.length) {
            if (batch.length < this.#maxBatch) {
              this.#batch = new Uint8Array(Math.min(this.#maxBatch, batch.length * 2));
            }
            break;
          }
          batch.set(next, used);
          used += next.length;
          this.#segments.shift();
          const release = this.#releases.shift();
          if (release !== undefined) this.#batched.push(release);
        }
        try {
          await this.#writeAll(batch.subarray(0, used));
        } finally {
          this.#queued -= used;
          this.#releaseBatched();
        }
      }
    } catch (error) {
      this.#failed = error instanceof Error ? error : new Error(String(error));
      this.#segments.length = 0;
      this.#queued = 0;
      for (const release of this.#releases.splice(0)) release?.();
    } finally {
      this.#pumping = false;
      for (const resolve of this.#idle.splice(0)) resolve();
    }
  }

  #releaseBatched(): void {
    if (this.#batched.length === 0) return;
    for (const release of this.#batched.splice(0)) release();
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      this.#writing = true;
      try {
        done += await this.#stream.write(data.subarray(done));
      } finally {
        this.#writing = false;
      }
      this.#writes++;
    }
  }
}
