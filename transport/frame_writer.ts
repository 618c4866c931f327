/**
 * The write side of a link: frames are staged into a reused buffer and written in batches (one
 * write per batch of small frames, large payloads written from the caller's buffer), with a bound
 * on bytes queued. Bytes count as queued until the medium took them, so a peer that stops reading
 * shows as queued bytes that stop moving ({@link FrameWriter.progress}).
 */

import { hold, type Release } from "../util/buffer_lease.ts";
import { encodeHeader, PREFIX_BYTES, writePrefix } from "./frame.ts";
import type { Duplex, Header } from "./types.ts";

/** A send on a link that is closed or whose queue is full. */
export class LinkSendError extends Error {
  override readonly name = "LinkSendError";
}

const EMPTY = new Uint8Array(0);
/** Payloads up to this size are copied into the staging buffer; larger ones are written as is. */
const INLINE_PAYLOAD_BYTES = 64 * 1024;
/** Staging buffer size once the link carries data. */
export const STAGING_BYTES = 256 * 1024;

interface Batch {
  staging: Uint8Array;
  segments: Uint8Array[];
  bytes: number;
  /** Holds on the payloads written from their owners' buffers, let go once written. */
  holds: Release[];
}

export interface FrameWriterOptions {
  readonly maxPayloadBytes: number;
  readonly maxQueuedBytes: number;
  /** Staging buffer size to start with (small while the handshake runs). */
  readonly stagingBytes: number;
  /** The medium failed a write; the writer stops. */
  readonly onError: (error: Error) => void;
}

export class FrameWriter {
  readonly #duplex: Duplex;
  readonly #options: FrameWriterOptions;
  #stagingBytes: number;
  // Frames are staged into `#staging` while the previous batch is being written from the other
  // staging buffer; a batch is a list of segments written in order.
  #staging: Uint8Array;
  #spare: Uint8Array | undefined;
  #stagedAt = 0;
  #segmentStart = 0;
  #segments: Uint8Array[] = [];
  #holds: Release[] = [];
  #pendingBytes = 0;
  #queuedBytes = 0;
  #writing = false;
  #flushQueued = false;
  #drainWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  #failed: Error | undefined;
  /** Resolves when the current write loop ends. */
  done: Promise<void> = Promise.resolve();
  /** Segments handed to the medium so far: a stall check watches it move. */
  progress = 0;

  constructor(duplex: Duplex, options: FrameWriterOptions) {
    this.#duplex = duplex;
    this.#options = options;
    this.#stagingBytes = options.stagingBytes;
    this.#staging = new Uint8Array(options.stagingBytes);
  }

  /** Bytes queued and not yet handed to the medium. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Staging buffers made from now on have this size (the handshake ends: full size). */
  set stagingBytes(bytes: number) {
    this.#stagingBytes = bytes;
  }

  enqueue(header: Header, payload: Uint8Array = EMPTY): void {
    if (payload.length > this.#options.maxPayloadBytes) {
      throw new LinkSendError(
        `payload of ${payload.length} bytes is over the link's ` +
          `${this.#options.maxPayloadBytes} byte limit`,
      );
    }
    const head = encodeHeader(header);
    const size = PREFIX_BYTES + head.length + payload.length;
    const max = this.#options.maxQueuedBytes;
    if (this.#queuedBytes > 0 && this.#queuedBytes + size > max) {
      throw new LinkSendError(
        `send queue full (${this.#queuedBytes} bytes queued, limit ${max}): ` +
          "await link.drain() before sending more",
      );
    }
    const inline = payload.length <= INLINE_PAYLOAD_BYTES;
    const staged = PREFIX_BYTES + head.length + (inline ? payload.length : 0);
    if (this.#stagedAt + staged > this.#staging.length) {
      // The staging buffer is full: keep what is staged as a segment and start a fresh one.
      this.#cutSegment();
      this.#staging = new Uint8Array(Math.max(this.#stagingBytes, staged));
      this.#stagedAt = this.#segmentStart = 0;
    }
    const at = this.#stagedAt;
    writePrefix(this.#staging, at, head.length, payload.length);
    this.#staging.set(head, at + PREFIX_BYTES);
    if (inline && payload.length > 0) this.#staging.set(payload, at + PREFIX_BYTES + head.length);
    this.#stagedAt = at + staged;
    if (!inline) {
      this.#cutSegment();
      this.#segments.push(payload);
      // Written from the owner's buffer: it stays the link's until the medium took it.
      this.#holds.push(hold(payload));
    }
    this.#pendingBytes += size;
    this.#queuedBytes += size;
    if (!this.#writing && !this.#flushQueued && this.#failed === undefined) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#startWriting());
    }
  }

  /** Resolves once nothing is queued; rejects with `closed()` when the writer is failed. */
  drain(closed: () => Error): Promise<void> {
    if (this.#queuedBytes === 0) return Promise.resolve();
    if (this.#failed !== undefined) return Promise.reject(closed());
    return new Promise((resolve, reject) => this.#drainWaiters.push({ resolve, reject }));
  }

  /** Fails every drain waiter (the link closed); what was queued will never be written. */
  fail(error: Error): void {
    this.#failed ??= error;
    if (!this.#writing) this.#letGoQueued();
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const waiter of waiters) waiter.reject(error);
  }

  /** Lets go of the payloads queued and never to be written. */
  #letGoQueued(): void {
    const holds = this.#holds;
    this.#holds = [];
    for (const release of holds) release();
  }

  #cutSegment(): void {
    if (this.#stagedAt > this.#segmentStart) {
      this.#segments.push(this.#staging.subarray(this.#segmentStart, this.#stagedAt));
    }
    this.#segmentStart = this.#stagedAt;
  }

  #takeBatch(): Batch | undefined {
    this.#cutSegment();
    if (this.#segments.length === 0) return undefined;
    const batch = {
      staging: this.#staging,
      segments: this.#segments,
      bytes: this.#pendingBytes,
      holds: this.#holds,
    };
    this.#segments = [];
    this.#holds = [];
    this.#pendingBytes = 0;
    // Stage new frames in the other buffer while this batch is written.
    this.#staging = this.#spare ?? new Uint8Array(this.#stagingBytes);
    this.#spare = undefined;
    this.#stagedAt = this.#segmentStart = 0;
    return batch;
  }

  #startWriting(): void {
    this.#flushQueued = false;
    if (this.#writing) return;
    this.#writing = true;
    this.done = this.#writeLoop();
  }

  async #writeLoop(): Promise<void> {
    let batch: Batch | undefined;
    try {
      for (;;) {
        batch = this.#takeBatch();
        if (batch === undefined) break;
        if (this.#duplex.writev !== undefined) {
          await this.#duplex.writev(batch.segments);
          this.progress++;
        } else {
          for (const segment of batch.segments) {
            await this.#duplex.write(segment);
            this.progress++;
          }
        }
        for (const release of batch.holds) release();
        this.#queuedBytes -= batch.bytes;
        if (batch.staging.length === this.#stagingBytes) this.#spare = batch.staging;
      }
    } catch (error) {
      for (const release of batch?.holds ?? []) release();
      this.#writing = false;
      this.#failed ??= error as Error;
      this.#letGoQueued();
      this.#options.onError(error as Error);
      return;
    }
    this.#writing = false;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const waiter of waiters) waiter.resolve();
  }
}
