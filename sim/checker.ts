/**
 * The checker: a model of what each block may hold, fed by the workload's operations and the
 * faults, judging every read. Writes are self-describing (offset, writer, sequence), so a read
 * names the write it returns. A read must return the latest acknowledged write of its block or
 * one still in flight (or one that failed: its outcome is unknown); a crash may undo only writes
 * that were not durable (no FUA, no acknowledged flush after them) and that no replica kept
 * (see `Durability`). Once a read saw a value, later reads see it too until something changes.
 */
import { checkBlock, isZero } from "../drill/block_stamps.ts";
import { BLOCK } from "./topology.ts";

/** Whether a storage can still hold what was written when: answered from the topology. */
export interface Durability {
  /** Some replica of `block` kept everything acknowledged at or before `since`. */
  preserved(block: number, since: number): boolean;
  /** Some replica of `block` kept its durable data since `since` (media replaced elsewhere). */
  preservedDurable(block: number, since: number): boolean;
}

interface Version {
  readonly value: number;
  /** Logical time of its acknowledgement; undefined while in flight or after a failure. */
  ack: number | undefined;
  durable: boolean;
  failed: boolean;
}

/** What one read may return for each of its blocks, grown by what happens while it runs. */
export interface ReadWatch {
  readonly offset: number;
  readonly blocks: readonly number[];
  readonly acceptable: Set<number>[];
  /** The block's model was widened by a crash while the read ran (no narrowing after it). */
  readonly widened: boolean[];
  /** Each block's change count when the read began: it narrows only if nothing changed. */
  readonly changes: number[];
  /** Any stamped write of the block is acceptable (its media and every replica were lost). */
  readonly anything: boolean[];
  readonly narrows: boolean;
  readonly what: string;
}

class BlockModel {
  /** [0] is the newest durable version; later ones since, in order. */
  versions: Version[] = [{ value: 0, ack: 0, durable: true, failed: false }];
  possible = new Set<number>([0]);
  anything = false;
  inFlight = 0;
  /** A write failed since the last acknowledged one: its outcome may show late. */
  uncertain = false;
  /** Bumped by every write start and end and every crash: a read narrows only across none. */
  changes = 0;
  readonly readers = new Set<{ watch: ReadWatch; index: number }>();

  add(value: number): void {
    this.changes++;
    this.possible.add(value);
    for (const r of this.readers) r.watch.acceptable[r.index]!.add(value);
  }

  widen(values: Iterable<number>, anything: boolean): void {
    this.changes++;
    for (const v of values) this.possible.add(v);
    if (anything) this.anything = true;
    for (const r of this.readers) {
      for (const v of this.possible) r.watch.acceptable[r.index]!.add(v);
      r.watch.widened[r.index] = true;
      if (anything) r.watch.anything[r.index] = true;
    }
  }
}

export class Checker {
  readonly failures: string[] = [];
  readonly #blocks: BlockModel[];
  /** Writer of each write's value, to tell a forged stamp. */
  readonly #writers = new Map<number, number>();
  #seq = 0;
  stats = { reads: 0, writes: 0, flushes: 0, acked: 0, failedWrites: 0, legReads: 0 };

  constructor(blocks: number, readonly durability: Durability, readonly note: (s: string) => void) {
    this.#blocks = Array.from({ length: blocks }, () => new BlockModel());
  }

  get blocks(): number {
    return this.#blocks.length;
  }

  /** Logical time: every event the checker orders by takes the next one. */
  tick(): number {
    return ++this.#seq;
  }

  fail(what: string): void {
    if (this.failures.length < 20) this.failures.push(what);
    this.note(`FAIL ${what}`);
  }

  // ---- writes ----

  writeStart(blocks: readonly number[], value: number, writer: number): void {
    this.stats.writes++;
    this.#writers.set(value, writer);
    for (const b of blocks) {
      const m = this.#blocks[b]!;
      m.versions.push({ value, ack: undefined, durable: false, failed: false });
      m.inFlight++;
      m.add(value);
    }
  }

  writeDone(blocks: readonly number[], value: number, ok: boolean, fua: boolean): void {
    const at = this.tick();
    if (ok) this.stats.acked++;
    else this.stats.failedWrites++;
    for (const b of blocks) {
      const m = this.#blocks[b]!;
      m.inFlight--;
      m.changes++;
      let i = m.versions.length - 1; // the write just acknowledged is nearly always the last
      while (i > 0 && m.versions[i]!.value !== value) i--;
      const v = m.versions[i]!;
      if (!ok) {
        v.failed = true;
        m.uncertain = true;
        continue;
      }
      v.ack = at;
      v.durable = fua;
      m.uncertain = false;
      m.anything = false;
      // Writes to a block are one at a time: everything before this one is behind it now.
      m.possible = new Set([value]);
      if (fua) m.versions = m.versions.slice(i);
    }
  }

  // ---- flushes ----

  flushStart(): number {
    this.stats.flushes++;
    return this.tick();
  }

  /** A flush begun at `start` succeeded: every write acknowledged before it is durable. */
  flushDone(start: number): void {
    for (const m of this.#blocks) {
      let newest = 0;
      m.versions.forEach((v, i) => {
        if (v.ack !== undefined && v.ack < start) {
          v.durable = true;
          newest = i;
        }
      });
      if (newest > 0) m.versions = m.versions.slice(newest);
    }
  }

  // ---- crashes ----

  /**
   * A node holding `blocks` lost what it had not synced (`media`: everything): where no replica
   * kept the newest acknowledged write, the block may hold any version since the durable one.
   */
  lost(blocks: Iterable<number>, media: boolean): void {
    this.tick();
    for (const b of blocks) {
      const m = this.#blocks[b];
      if (m === undefined) continue;
      const base = m.versions[0]!;
      if (media && !this.durability.preservedDurable(b, base.ack ?? 0)) {
        m.widen([0, ...m.versions.map((v) => v.value)], true);
        continue;
      }
      const acked = m.versions.filter((v) => v.ack !== undefined);
      const newest = acked[acked.length - 1]!;
      if (newest.durable || this.durability.preserved(b, newest.ack!)) continue;
      m.widen(m.versions.map((v) => v.value), false);
    }
  }

  // ---- reads ----

  /** A read of whole blocks at `offset` begins; `narrows`: a client read (it settles values). */
  readStart(offset: number, length: number, what: string, narrows: boolean): ReadWatch {
    const first = offset / BLOCK;
    const blocks = Array.from({ length: length / BLOCK }, (_, i) => first + i)
      .filter((b) => b < this.#blocks.length);
    const watch: ReadWatch = {
      offset,
      blocks,
      acceptable: blocks.map((b) => new Set(this.#blocks[b]!.possible)),
      widened: blocks.map(() => false),
      changes: blocks.map((b) => this.#blocks[b]!.changes),
      anything: blocks.map((b) => this.#blocks[b]!.anything),
      narrows,
      what,
    };
    blocks.forEach((b, index) => this.#blocks[b]!.readers.add({ watch, index }));
    return watch;
  }

  /** The read ended; with data, every block is judged. */
  readEnd(watch: ReadWatch, data: Uint8Array | undefined): void {
    watch.blocks.forEach((b, index) => {
      const m = this.#blocks[b]!;
      for (const r of m.readers) if (r.watch === watch) m.readers.delete(r);
      if (data === undefined) return;
      const at = (b - watch.blocks[0]!) * BLOCK;
      const got = this.#value(data.subarray(at, at + BLOCK), b);
      if (got instanceof Error) {
        this.fail(`${watch.what}: block ${b}: ${got.message}`);
        return;
      }
      if (!watch.acceptable[index]!.has(got) && !watch.anything[index]) {
        this.fail(
          `${watch.what}: block ${b} returned write ${got}, expected one of ` +
            `${[...watch.acceptable[index]!].sort((x, y) => x - y).join(",")}`,
        );
        return;
      }
      if (
        watch.narrows && !watch.widened[index] && m.changes === watch.changes[index] &&
        m.inFlight === 0 && !m.uncertain && !m.anything
      ) {
        m.possible = new Set([got]);
      }
    });
  }

  /** The write a block holds (0: never written), or what is wrong with it. */
  #value(block: Uint8Array, b: number): number | Error {
    if (isZero(block)) return 0;
    const stamp = checkBlock(block, b * BLOCK);
    if (stamp instanceof Error) return stamp;
    const writer = this.#writers.get(stamp.seq);
    if (writer === undefined || writer !== stamp.writer) {
      return new Error(`holds write ${stamp.seq} of writer ${stamp.writer}, which never happened`);
    }
    return stamp.seq;
  }

  /** What block `b` may hold now (for the final report). */
  expected(b: number): number[] {
    return [...this.#blocks[b]!.possible];
  }

  /** The newest acknowledged write of each block, when no write to it is uncertain. */
  settled(b: number): number | undefined {
    const m = this.#blocks[b]!;
    if (m.uncertain || m.inFlight > 0 || m.anything || m.possible.size !== 1) return undefined;
    return [...m.possible][0];
  }
}
