/**
 * The mirror's generation ids and storage age, and stamping them on its legs: a new current
 * generation once after a leg left (before the next ack), settling the bitmap generation once
 * every leg holds every chunk. Every stamp also records which legs are outdated (DRBD's "outdate
 * peer"), so a later start may go on without a leg that is unreachable only when a leg that kept
 * serving says that one left. It owns the rotation and settling in progress, so no write is
 * acknowledged under a generation the serving legs do not carry yet. Stamps are compare-and-swap:
 * a leg whose current generation is none this mirror wrote or read was stamped by another
 * exporter, and refuses (EFENCED).
 */
import { BlockError, type MediaGenerations } from "../block/contract.ts";
import { newGenerationId, NO_GENERATION } from "../block/media.ts";
import { describe } from "./errors.ts";
import type { Random } from "../../util/random.ts";
import { FLAG_CLEAN_STOP, legId, memberFlags, rotate, settle } from "./generations.ts";
import type { Leg } from "./leg.ts";

/** What the generations need of the mirror: its legs, and how to talk to (and fail) one. */
export interface GenerationsHost {
  legs(): readonly Leg[];
  timed<T>(leg: Leg, op: Promise<T>): Promise<T>;
  /** Fails `leg` if it is still at `epoch`. */
  fail(leg: Leg, epoch: number, why: string): void;
}

export class GenerationStamps {
  /** The generations every in-sync leg carries. */
  current: MediaGenerations | undefined;
  /** The storage id ("age") stamped on every member leg. */
  storageId: string | undefined;
  /** Set when a leg left and the serving legs have not rotated since. */
  mustRotate = false;
  #rotating: Promise<void> | undefined;
  #settling: Promise<void> | undefined;
  readonly #chunkSize: number;
  readonly #host: GenerationsHost;
  readonly #random: Random | undefined;

  /** `random`: the source of new ids (default: the system's secure random). */
  constructor(
    storageId: string | undefined,
    chunkSize: number,
    host: GenerationsHost,
    random?: Random,
  ) {
    this.storageId = storageId;
    this.#chunkSize = chunkSize;
    this.#host = host;
    this.#random = random;
  }

  /** A rotation or settling being stamped, if any. */
  get pending(): Promise<void> | undefined {
    return this.#rotating ?? this.#settling;
  }

  /** Is the bitmap generation settled, durably (no leg can be at an older tracked one)? */
  settled(): boolean {
    return this.current !== undefined && this.current.bitmap === NO_GENERATION &&
      this.#settling === undefined && this.#rotating === undefined;
  }

  /** New current generation on the serving legs, once after a leg left (before the next ack). */
  async ensureRotated(): Promise<void> {
    if (this.#settling !== undefined) await this.#settling;
    for (;;) {
      // A rotation still being stamped counts too: until it landed on every serving leg (or
      // failed the ones it did not reach), a write acknowledged now would be under a
      // generation some serving leg lacks.
      if (this.#rotating !== undefined) {
        await this.#rotating;
        continue;
      }
      if (!this.mustRotate) return;
      this.mustRotate = false;
      this.#rotating = (async () => {
        const before = this.current ??
          { current: newGenerationId(this.#random), bitmap: NO_GENERATION, history: [] };
        this.current = rotate(before, newGenerationId(this.#random));
        await this.stampReference();
      })().finally(() => (this.#rotating = undefined));
      await this.#rotating;
    }
  }

  /**
   * Every leg holds every chunk: the bitmap generation can go (a leg still older than the
   * current generation is then judged for a full resync, never a partial one). Starts the
   * settling in the background when it is due.
   */
  settleIfDue(allInSync: boolean): void {
    if (
      allInSync && this.current !== undefined && this.current.bitmap !== NO_GENERATION &&
      this.#rotating === undefined && this.#settling === undefined && !this.mustRotate
    ) {
      this.current = settle(this.current);
      this.#settling = this.stampReference().catch(() => {}).finally(() =>
        this.#settling = undefined
      );
    }
  }

  /**
   * A clean stop: the in-sync legs `flushed` hold every write they took. With every leg in
   * sync the generations settle too. Each is stamped as stopped cleanly (see FLAG_CLEAN_STOP).
   */
  async stampAtClose(flushed: readonly Leg[], allInSync: boolean): Promise<void> {
    for (let p = this.pending; p !== undefined; p = this.pending) await p.catch(() => {});
    if (this.current === undefined) return;
    if (allInSync && this.current.bitmap !== NO_GENERATION) this.current = settle(this.current);
    const stamped = await Promise.allSettled(flushed.map((l) => this.stamp(l, true)));
    if (stamped.some((r) => r.status === "rejected") && allInSync) this.current = undefined;
  }

  /** Writes the storage id, member flag, generations and outdated legs on every in-sync leg. */
  async stampReference(): Promise<void> {
    const legs = this.#host.legs().filter((l) => l.state === "in-sync" && l.media !== undefined);
    const epochs = legs.map((l) => l.epoch);
    const results = await Promise.allSettled(legs.map((l) => this.stamp(l)));
    results.forEach((r, i) => {
      if (r.status === "rejected") {
        this.#host.fail(legs[i]!, epochs[i]!, `metadata update failed: ${describe(r.reason)}`);
      }
    });
    if (legs.length > 0 && results.every((r) => r.status === "rejected")) {
      throw new BlockError("EIO", "generation ids could not be stored on any leg");
    }
  }

  /**
   * The current generations `leg`'s media may hold while only this mirror stamps it: what was
   * last read or written there, and this mirror's generations (a stamp of this mirror may have
   * landed unanswered). Undefined when nothing was read off the leg yet (no check).
   */
  expectedOn(leg: Leg): string[] | undefined {
    const known = leg.known?.generations.current;
    if (known === undefined) return undefined;
    const g = this.current;
    const ids = g === undefined ? [known] : [known, g.current, g.bitmap, ...g.history];
    return [...new Set(ids)];
  }

  /** Legs not in sync now: a later start may go on without them (see start.ts). */
  outdated(): string[] {
    return this.#host.legs().filter((l) => l.state !== "in-sync" && l.state !== "removed").map(
      (l) => legId(l.name),
    );
  }

  /**
   * Stamps `leg`'s media as a member at the current generations (`cleanStop`: the mirror is
   * stopping cleanly, every write this leg took flushed).
   */
  async stamp(leg: Leg, cleanStop = false): Promise<void> {
    if (leg.media === undefined || this.current === undefined) return;
    const expectCurrent = this.expectedOn(leg);
    leg.known = await this.#host.timed(
      leg,
      leg.media.updateMedia({
        ...(expectCurrent === undefined ? {} : { expectCurrent }),
        ...(this.storageId === undefined ? {} : { storageId: this.storageId }),
        generations: this.current,
        flags: memberFlags(this.#chunkSize) | (cleanStop ? FLAG_CLEAN_STOP : 0),
        outdated: this.outdated().filter((id) => id !== legId(leg.name)),
      }),
    );
    leg.adopt = false;
  }
}
