/**
 * The mirror's write-intent bitmap and activity log: one bit per chunk that some leg may lack
 * (a leg's misses, or a chunk written recently enough that a crash of the mirror could leave it
 * on some legs only). It owns the bits, which pages changed, and which version of them is
 * durable on the serving legs, so a write is never sent before its bit is stored.
 */
import { BlockError } from "../block/contract.ts";
import { MEDIA_PAGE } from "../block/media.ts";
import { ChunkBits } from "../resync/bitmap.ts";
import { describe } from "./mirror_errors.ts";
import type { Leg } from "./mirror_leg.ts";

/** What the bitmap needs from its mirror: the legs, and how to talk to (and fail) one. */
export interface BitmapHost {
  legs(): readonly Leg[];
  timed<T>(leg: Leg, op: Promise<T>): Promise<T>;
  fail(leg: Leg, why: string): void;
}

/** One chunk in the activity log: writes in flight, last write, and the version storing its bit. */
interface Activity {
  inFlight: number;
  last: number;
  version: number;
}

export class WriteIntentBitmap {
  /** Persisted bits: OR of every leg's need and the activity log. */
  readonly bits: ChunkBits;
  /**
   * Activity log: chunk -> writes in flight, when it was last written, and the bitmap version
   * whose store makes its bit durable (no write to the chunk goes out before that).
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

  clearBit(chunk: number): void {
    if (!this.bits.clear(chunk)) return;
    this.#dirtyPages.add(chunk >> 15);
    this.#version++;
  }

  /** Sets every bit of `more` (a leg found differing) as one change. */
  orChanged(more: ChunkBits): void {
    this.bits.or(more);
    for (let c = more.next(0); c >= 0; c = more.next(c + 1)) this.#dirtyPages.add(c >> 15);
    this.#version++;
  }

  /** Every page is to be stored again (bits set while no leg served were stored nowhere). */
  allPagesChanged(): void {
    for (let p = 0; p * MEDIA_PAGE < this.bits.bytes.length; p++) this.#dirtyPages.add(p);
    this.#version++;
  }

  /** Is chunk `c` still needed by some leg or written right now? */
  wanted(c: number): boolean {
    return this.#active.has(c) ||
      this.#host.legs().some((l) => l.state !== "in-sync" && l.need?.has(c) === true);
  }

  /** Clears every bit no leg needs and no write holds. */
  recompute(): void {
    for (let c = this.bits.next(0); c >= 0; c = this.bits.next(c + 1)) {
      if (!this.wanted(c)) this.clearBit(c);
    }
  }

  /**
   * A write to chunks [first, last] begins: idle chunks get their bit set. Returns the bitmap
   * version that must be durable before the write reaches any leg.
   */
  beginWrite(first: number, last: number): number {
    let durableAt = 0;
    for (let c = first; c <= last; c++) {
      let a = this.#active.get(c);
      if (a === undefined) {
        this.setBit(c);
        // A bit set earlier (a leg needs the chunk) may not be durable yet either.
        a = { inFlight: 0, last: 0, version: this.#version };
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

  /**
   * Drops from the activity log the chunks with no write in flight (idle for `idleMs` before
   * `now`, when given); their bits are cleared where no leg needs them. True if a bit changed.
   */
  dropIdle(now: number, idleMs: number): boolean {
    let changed = false;
    for (const [c, a] of this.#active) {
      if (a.inFlight === 0 && now - a.last >= idleMs) {
        this.#active.delete(c);
        if (!this.wanted(c)) {
          this.clearBit(c);
          changed = true;
        }
      }
    }
    return changed;
  }

  /** Drops every chunk with no write in flight from the activity log (a clean stop). */
  dropAllIdle(): void {
    this.dropIdle(0, -Infinity);
  }

  /** Stores changed bitmap pages on every serving leg with media; resolves once durable. */
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
    const legs = this.#host.legs().filter((l) =>
      (l.state === "in-sync" || l.state === "rebuilding") && l.media !== undefined && !l.removed
    );
    const results = await Promise.allSettled(legs.map(async (l) => {
      for (const page of pages) {
        const from = page * MEDIA_PAGE;
        const bytes = this.bits.bytes.subarray(
          from,
          Math.min(from + MEDIA_PAGE, this.bits.bytes.length),
        );
        if (l.known !== undefined && from + bytes.length > l.known.bitmapBytes) continue;
        await this.#host.timed(l, l.media!.storeBitmap(from, bytes));
      }
    }));
    let ok = 0;
    results.forEach((r, i) => {
      if (r.status === "fulfilled") ok++;
      else this.#host.fail(legs[i]!, `bitmap store failed: ${describe(r.reason)}`);
    });
    if (ok === 0 && legs.length > 0) {
      for (const p of pages) this.#dirtyPages.add(p);
      throw new BlockError("EIO", "the write-intent bitmap could not be stored on any leg");
    }
    this.#durableVersion = Math.max(this.#durableVersion, version);
  }
}
