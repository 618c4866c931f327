/**
 * The mirror's write-intent bitmap and activity log: one bit per chunk that some leg may lack (a
 * leg's misses, or a chunk written since the legs last flushed, which a crash could leave on some
 * legs only). It owns the bits, which pages changed, and which version of them is durable on the
 * legs that take writes, so a write is never sent before its bit is stored, and a bit is never
 * cleared while a leg still lacks its chunk.
 */
import { BlockError } from "../block/contract.ts";
import { MEDIA_PAGE } from "../block/media.ts";
import { ChunkBits } from "./chunk_bits.ts";
import { describe } from "./errors.ts";
import { InvariantError } from "./invariants.ts";
import { type Leg, takesWrites } from "./leg.ts";

/** What the bitmap needs from its mirror: the legs, and how to talk to (and fail) one. */
export interface BitmapHost {
  legs(): readonly Leg[];
  timed<T>(leg: Leg, op: Promise<T>): Promise<T>;
  /** Fails `leg` if it is still at `epoch`. */
  fail(leg: Leg, epoch: number, why: string): void;
}

/** One chunk in the activity log: writes in flight, last write, and the version storing its bit. */
interface Activity {
  inFlight: number;
  last: number;
  version: number;
}

/** Bytes of bitmap a mirror of `chunks` chunks stores on each leg. */
export function bitmapBytesFor(chunks: number): number {
  return Math.ceil(chunks / 8);
}

export class WriteIntentBitmap {
  /** Persisted bits: a superset of every leg's need and of the activity log. */
  readonly bits: ChunkBits;
  /**
   * Activity log: chunk -> writes in flight, when it was last written, and the bitmap version
   * whose store makes its bit durable (no write to the chunk goes out before that). A chunk
   * leaves the log only after a flush on every leg that takes writes made its writes durable.
   */
  readonly #active = new Map<number, Activity>();
  readonly #dirtyPages = new Set<number>();
  readonly #host: BitmapHost;
  #version = 0;
  #durableVersion = 0;
  #storing: Promise<void> | undefined;

  constructor(chunks: number, host: BitmapHost) {
    this.bits = new ChunkBits(chunks);
    this.#host = host;
  }

  /** Sets chunk `chunk`'s bit; true when it was clear (the change is stored by `store`). */
  setBit(chunk: number): boolean {
    if (!this.bits.set(chunk)) return false;
    this.#dirtyPages.add(chunk >> 15);
    this.#version++;
    return true;
  }

  /** Sets every bit of `more` as one change. */
  setAll(more: ChunkBits): void {
    let changed = false;
    for (let c = more.next(0); c >= 0; c = more.next(c + 1)) {
      if (this.bits.set(c)) {
        this.#dirtyPages.add(c >> 15);
        changed = true;
      }
    }
    if (changed) this.#version++;
  }

  /** Clears a bit no leg needs and no write holds; clearing a wanted bit is a broken invariant. */
  #clearBit(chunk: number): void {
    if (this.wanted(chunk)) {
      throw new InvariantError(`bitmap bit ${chunk} cleared while a leg still lacks that chunk`);
    }
    if (!this.bits.clear(chunk)) return;
    this.#dirtyPages.add(chunk >> 15);
    this.#version++;
  }

  /** Every page is to be stored again (bits set while no leg served were stored nowhere). */
  allPagesChanged(): void {
    for (let p = 0; p * MEDIA_PAGE < this.bits.bytes.length; p++) this.#dirtyPages.add(p);
    this.#version++;
  }

  /** Is chunk `c` still lacked by some leg, or written and not yet flushed everywhere? */
  wanted(c: number): boolean {
    return this.#active.has(c) ||
      this.#host.legs().some((l) =>
        l.state !== "in-sync" && l.state !== "removed" && l.need?.has(c) === true
      );
  }

  /** Chunks in the activity log: written lately, maybe not durable on every leg. */
  activeChunks(): number[] {
    return [...this.#active.keys()];
  }

  /** Clears every bit no leg needs and no write holds. True if a bit changed. */
  recompute(): boolean {
    const before = this.#version;
    for (let c = this.bits.next(0); c >= 0; c = this.bits.next(c + 1)) {
      if (!this.wanted(c)) this.#clearBit(c);
    }
    return this.#version !== before;
  }

  /** A resync landed `chunks` on its target: their bits go where no leg lacks them any more. */
  retireLanded(chunks: readonly number[]): boolean {
    const before = this.#version;
    for (const c of chunks) if (this.bits.has(c) && !this.wanted(c)) this.#clearBit(c);
    return this.#version !== before;
  }

  /**
   * A write to chunks [first, last] begins: idle chunks get their bit set. Returns the bitmap
   * version that must be durable before the write reaches any leg.
   */
  beginWrite(first: number, last: number, now: number): number {
    let durableAt = 0;
    for (let c = first; c <= last; c++) {
      let a = this.#active.get(c);
      if (a === undefined) {
        this.setBit(c);
        // A bit set earlier (a leg needs the chunk) may not be durable yet either.
        a = { inFlight: 0, last: now, version: this.#version };
        this.#active.set(c, a);
      }
      a.inFlight++;
      durableAt = Math.max(durableAt, a.version);
    }
    return durableAt;
  }

  /** The write to chunks [first, last] that `beginWrite` counted has ended at `now`. */
  endWrite(first: number, last: number, now: number): void {
    for (let c = first; c <= last; c++) {
      const a = this.#active.get(c);
      if (a !== undefined) {
        a.inFlight--;
        a.last = now;
      }
    }
  }

  isDurable(version: number): boolean {
    return this.#durableVersion >= version;
  }

  /** Chunks with no write in flight and none since `before`: candidates to leave the log. */
  idleSince(before: number): number[] {
    const idle: number[] = [];
    for (const [c, a] of this.#active) if (a.inFlight === 0 && a.last <= before) idle.push(c);
    return idle;
  }

  /**
   * A flush that started at `flushedAt` succeeded on every leg that takes writes: the chunks of
   * `idle` not written since leave the log, and their bits go where no leg needs them. True if
   * a bit changed.
   */
  retire(idle: readonly number[], flushedAt: number): boolean {
    const before = this.#version;
    for (const c of idle) {
      const a = this.#active.get(c);
      if (a === undefined || a.inFlight > 0 || a.last > flushedAt) continue;
      this.#active.delete(c);
      if (!this.wanted(c)) this.#clearBit(c);
    }
    return this.#version !== before;
  }

  /**
   * Stores changed bitmap pages on every leg that takes writes and keeps media; resolves once
   * durable. A leg that fails the store (or whose media cannot hold a page) is failed; the store
   * fails only when no leg holds it.
   */
  async store(target = this.#version): Promise<void> {
    while (this.#durableVersion < target) {
      if (this.#storing !== undefined) {
        await this.#storing;
        continue;
      }
      this.#storing = this.#storePages().finally(() => (this.#storing = undefined));
      await this.#storing;
    }
  }

  async #storePages(): Promise<void> {
    const version = this.#version;
    const pages = [...this.#dirtyPages];
    this.#dirtyPages.clear();
    const legs = this.#host.legs().filter((l) => takesWrites(l) && l.media !== undefined);
    const epochs = legs.map((l) => l.epoch);
    const results = await Promise.allSettled(legs.map(async (l) => {
      for (const page of pages) {
        const from = page * MEDIA_PAGE;
        const bytes = this.bits.bytes.subarray(
          from,
          Math.min(from + MEDIA_PAGE, this.bits.bytes.length),
        );
        const room = l.known?.bitmapBytes ?? 0;
        if (from + bytes.length > room) {
          throw new BlockError(
            "ENOSPC",
            `its media keeps ${room} bytes of bitmap; this mirror needs ${this.bits.bytes.length}`,
          );
        }
        await this.#host.timed(l, l.media!.storeBitmap(from, bytes));
      }
    }));
    let ok = 0;
    results.forEach((r, i) => {
      if (r.status === "fulfilled") ok++;
      else this.#host.fail(legs[i]!, epochs[i]!, `bitmap store failed: ${describe(r.reason)}`);
    });
    if (ok === 0 && legs.length > 0) {
      for (const p of pages) this.#dirtyPages.add(p);
      throw new BlockError("EIO", "the write-intent bitmap could not be stored on any leg");
    }
    this.#durableVersion = Math.max(this.#durableVersion, version);
  }
}
