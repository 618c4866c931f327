/**
 * What a mirror has sent a leg and not heard back from yet. A request the mirror gave up on (its
 * deadline, or the leg left) may still land: the device below may hold it and send it again
 * after a reconnect (a remote node proxy with an I/O timeout), or a hung disk may finish it
 * late. Such a request must never land over what a later judgment or resync put there, so a leg
 * is judged only once every request sent to it before has settled (effects.ts), and waits that
 * the mirror makes on a leg end as soon as the leg leaves its sets (core.ts `timed`).
 */
import {
  type BlockDevice,
  BlockError,
  type BlockInfo,
  type Extent,
  type MediaDevice,
  type MediaPatch,
  type MediaState,
  type ZeroOptions,
} from "../block/contract.ts";
import type { Clock } from "../../util/clock.ts";

/** A leg's requests in flight, and the waits to end when it leaves. */
export class InFlight {
  #next = 0;
  /** Each request in flight, settled either way (never rejects). */
  readonly #running = new Map<number, Promise<void>>();
  /** Waits on this leg that end when it leaves its sets (see `leave`). */
  readonly #waits = new Set<(error: BlockError) => void>();
  /** Told once nothing is in flight (one at a time). */
  #idle: (() => void) | undefined;
  /** How many times the leg left its sets. */
  #left = 0;

  get left(): number {
    return this.#left;
  }

  /** Requests sent and not settled. */
  get count(): number {
    return this.#running.size;
  }

  /** Counts `op` until it settles; returns it as it is. */
  track<T>(op: Promise<T>): Promise<T> {
    const id = this.#next++;
    const settled = op.then(() => {}, () => {});
    this.#running.set(id, settled);
    void settled.then(() => {
      this.#running.delete(id);
      if (this.#running.size > 0) return;
      const idle = this.#idle;
      this.#idle = undefined;
      idle?.();
    });
    return op;
  }

  /** Calls `then` (once) when no request is in flight any more; replaces an earlier one. */
  whenIdle(then: () => void): void {
    this.#idle = this.#running.size === 0 ? undefined : then;
    if (this.#idle === undefined) then();
  }

  /**
   * Resolves true once every request sent before this call has settled, or false when some
   * are still in flight after `withinMs`.
   */
  settled(clock: Clock, withinMs: number): Promise<boolean> {
    const before = [...this.#running.values()];
    if (before.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = clock.setTimeout(() => resolve(false), withinMs);
      void Promise.all(before).then(() => {
        timer.cancel();
        resolve(true);
      });
    });
  }

  /** `end` is called (once) if the leg leaves before `forget` is; returns `forget`. */
  onLeave(end: (error: BlockError) => void): () => void {
    this.#waits.add(end);
    return () => this.#waits.delete(end);
  }

  /** The leg left its sets: every wait on it ends now with `why`. */
  leave(name: string, why: string): void {
    this.#left++;
    if (this.#waits.size === 0) return;
    const error = new BlockError("EIO", `${name} left the mirror (${why}) before it answered`);
    const waits = [...this.#waits];
    this.#waits.clear();
    for (const end of waits) end(error);
  }
}

/** A leg's device with every request counted in `flight`. */
export class TrackedDevice implements BlockDevice {
  constructor(readonly inner: BlockDevice, readonly flight: InFlight) {}

  info(): BlockInfo {
    return this.inner.info();
  }
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.flight.track(this.inner.read(offset, length, into));
  }
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    return this.flight.track(this.inner.write(offset, data, fua));
  }
  flush(): Promise<void> {
    return this.flight.track(this.inner.flush());
  }
  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.flight.track(this.inner.trim(offset, length, fua));
  }
  zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    return this.flight.track(this.inner.zero(offset, length, options));
  }
  extents(offset: number, length: number): Promise<Extent[]> {
    return this.flight.track(this.inner.extents(offset, length));
  }
  cache(offset: number, length: number): Promise<void> {
    return this.flight.track(this.inner.cache(offset, length));
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A leg's media operations with every request counted in `flight`. */
export function trackedMedia(media: MediaDevice, flight: InFlight): MediaDevice {
  return {
    media: (): Promise<MediaState> => flight.track(media.media()),
    updateMedia: (patch: MediaPatch) => flight.track(media.updateMedia(patch)),
    readBitmap: () => flight.track(media.readBitmap()),
    storeBitmap: (at: number, bytes: Uint8Array) => flight.track(media.storeBitmap(at, bytes)),
    digest: (offset: number, length: number, chunk: number) =>
      flight.track(media.digest(offset, length, chunk)),
  };
}
