/**
 * Mirror mapping over N legs. Writes go to every in-sync and rebuilding leg and are acknowledged
 * only when each in-sync one has the data; reads are spread over in-sync legs and fail over on
 * error. A leg that fails or times out leaves the in-sync set at once and the mirror runs
 * degraded, without failing client I/O while one in-sync leg remains. A leg that left is never
 * read again until a resync has brought it back.
 *
 * With media (`options.media` and `start()`), the mirror keeps DRBD-style state on every leg:
 * generation ids (rotated when legs start taking writes another leg misses), the storage's age,
 * and a write-intent bitmap per chunk. A bit is set durably on the serving legs before a write
 * that some leg missed is acknowledged, and before the first write to a chunk that was idle (the
 * activity log: after a crash of the mirror itself, only those chunks can differ). A leg that
 * comes back is judged by the decision table (actors/resync/generations.ts) and resynced by a
 * resync job (actors/resync/resync.ts), or refused as split brain. Maintenance (suspend,
 * resume, clean, dirty, add/remove a leg, verify) are methods here.
 *
 * This file is the BlockDevice surface (reads and their failover, leg state changes) and the
 * wiring; each concern lives beside it: mirror_writes.ts (write path), write_intent_bitmap.ts
 * (bitmap and activity log), mirror_generations.ts (generation ids and stamping),
 * mirror_maintenance.ts, mirror_sweeper.ts, mirror_status.ts, and in actors/resync/
 * start_judgment.ts, leg_judge.ts and leg_resync.ts.
 */
import {
  type BlockDevice,
  BlockError,
  type BlockInfo,
  type Extent,
  type MediaDevice,
  type MediaGenerations,
  type ZeroOptions,
} from "../block/contract.ts";
import { NO_GENERATION } from "../block/media.ts";
import type { Clock } from "../../util/clock.ts";
import { coarseSystemClock } from "../../util/coarse_clock.ts";
import { type Logger, silentLogger } from "../../util/log.ts";
import { ChunkBits } from "../resync/bitmap.ts";
import type { ResyncPace } from "../resync/resync.ts";
import { judgeLeg } from "../resync/leg_judge.ts";
import { type LegResyncHost, resyncLeg } from "../resync/leg_resync.ts";
import { judgeAtStart, type StartHost } from "../resync/start_judgment.ts";
import { combineInfo } from "./info.ts";
import { withDeadline } from "./leg_deadline.ts";
import { describe, isRequestError, noLegsError } from "./mirror_errors.ts";
import { MirrorGenerations } from "./mirror_generations.ts";
import { type Leg, type LegState, newLeg } from "./mirror_leg.ts";
import * as maintenance from "./mirror_maintenance.ts";
import type { MaintenanceHost } from "./mirror_maintenance.ts";
import { type LegStatus, legStatus } from "./mirror_status.ts";
import { MirrorSweeper } from "./mirror_sweeper.ts";
import { everyLeg, type WriteHost, writeToLegs } from "./mirror_writes.ts";
import { RangeLock } from "./range_lock.ts";
import { ReadPolicy, type ReadPolicyName } from "./read_policy.ts";
import { WriteIntentBitmap } from "./write_intent_bitmap.ts";

export type { LegState } from "./mirror_leg.ts";
export type { LegStatus, ResyncStatus } from "./mirror_status.ts";

export interface MirrorOptions {
  /** Names for logs and status; defaults to leg0, leg1, ... */
  readonly names?: readonly string[];
  /** A leg that has not answered within this many milliseconds is failed (default 10 s). */
  readonly legTimeoutMs?: number;
  /** How reads pick among in-sync legs (default round robin; see read_policy.ts). */
  readonly readPolicy?: ReadPolicyName;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Called when a leg changes state. */
  readonly onLegState?: (index: number, status: LegStatus) => void;
  /** Each leg's media operations (undefined for a leg without media); enables persistence. */
  readonly media?: readonly (MediaDevice | undefined)[];
  /** Bytes per bitmap bit (a power of two, default 1 MiB). */
  readonly chunkSize?: number;
  /** The storage id ("age"); default: what the member legs carry, else a new one. */
  readonly storageId?: string;
  readonly pace?: ResyncPace;
  /** An idle chunk's activity-log bit is cleared after this long (default 5 s). */
  readonly activityIdleMs?: number;
  /** How often legs that are out are tried again (default 2 s; 0 never). */
  readonly probeMs?: number;
}

export class MirrorMapping implements BlockDevice {
  readonly #legs: Leg[];
  readonly #info: BlockInfo;
  readonly #timeoutMs: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #onLegState: ((index: number, status: LegStatus) => void) | undefined;
  readonly #writes = new RangeLock();
  readonly #chunkSize: number;
  readonly #chunks: number;
  readonly #pace: ResyncPace;
  readonly #readPolicy: ReadPolicy;
  #clientOps = 0;
  /** Persisted bits (every leg's need and the activity log), stored on the serving legs. */
  readonly #bitmap: WriteIntentBitmap;
  /** The internals the write path, maintenance, start, judging and resync act through. */
  readonly #core: MaintenanceHost & LegResyncHost & StartHost & WriteHost;
  #persist = false;
  /** The generation ids and storage age the serving legs carry, and their stamping. */
  readonly #gen: MirrorGenerations;
  /**
   * Set when the last in-sync leg left (the mirror went down): that leg, and the current
   * generation ids its media may carry (the mirror's, and the last one confirmed on the leg,
   * which differ only while a rotation was being stamped). Cleared once a leg is in sync.
   */
  #down: { leg: Leg; currents: ReadonlySet<string> } | undefined;
  /** Idle activity-log bits, settling and probing, on a timer. */
  readonly #sweeper: MirrorSweeper;
  #closed = false;

  constructor(legs: readonly BlockDevice[], options: MirrorOptions = {}) {
    if (legs.length === 0) throw new RangeError("a mirror needs at least one leg");
    this.#legs = legs.map((device, i) =>
      newLeg(device, options.media?.[i], options.names?.[i] ?? `leg${i}`)
    );
    const infos = legs.map((l) => l.info());
    this.#info = { ...combineInfo(infos), size: Math.min(...infos.map((i) => i.size)) };
    this.#timeoutMs = options.legTimeoutMs ?? 10_000;
    this.#readPolicy = new ReadPolicy(options.readPolicy);
    this.#clock = options.clock ?? coarseSystemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#onLegState = options.onLegState;
    this.#chunkSize = options.chunkSize ?? 1024 * 1024;
    if (this.#chunkSize < 4096 || (this.#chunkSize & (this.#chunkSize - 1)) !== 0) {
      throw new RangeError(
        `chunk size must be a power of two of at least 4096, got ${this.#chunkSize}`,
      );
    }
    this.#chunks = Math.max(1, Math.ceil(this.#info.size / this.#chunkSize));
    this.#bitmap = new WriteIntentBitmap(this.#chunks, {
      legs: () => this.#legs,
      timed: (leg, op) => this.#timed(leg, op),
      fail: (leg, why) => this.#fail(leg, why),
    });
    this.#pace = options.pace ?? {};
    this.#gen = new MirrorGenerations(options.storageId, this.#chunkSize, {
      legs: () => this.#legs,
      timed: (leg, op) => this.#timed(leg, op),
      fail: (leg, why) => this.#fail(leg, why),
    });
    // deno-lint-ignore no-this-alias
    const mirror = this;
    this.#core = {
      legs: this.#legs,
      size: this.#info.size,
      chunks: this.#chunks,
      chunkSize: this.#chunkSize,
      get inSync() {
        return mirror.inSync;
      },
      bitmap: this.#bitmap,
      logger: this.#logger,
      clock: this.#clock,
      pace: this.#pace,
      get clientOps() {
        return mirror.#clientOps;
      },
      get closed() {
        return mirror.#closed;
      },
      get persist() {
        return mirror.#persist;
      },
      set persist(value: boolean) {
        mirror.#persist = value;
      },
      startSweeper: () => this.#sweeper.start(),
      gen: this.#gen,
      get down() {
        return mirror.#down;
      },
      resync: (leg) => this.#resync(leg, undefined),
      lock: (offset, length, fn) => this.#writes.run(offset, length, fn),
      setState: (leg, state, reason) => this.#setState(leg, state, reason),
      judge: (leg) => judgeLeg(this.#core, leg, false),
      timed: (leg, op) => this.#timed(leg, op),
      fail: (leg, why) => this.#fail(leg, why),
      noLegs: (what, cause) => this.#noLegs(what, cause),
    };
    this.#sweeper = new MirrorSweeper(
      this.#core,
      options.activityIdleMs ?? 5000,
      options.probeMs ?? 2000,
    );
  }

  info(): BlockInfo {
    return this.#info;
  }

  get chunkSize(): number {
    return this.#chunkSize;
  }

  get storageId(): string | undefined {
    return this.#gen.storageId;
  }

  /** The generations the serving legs carry. */
  get generations(): MediaGenerations | undefined {
    return this.#gen.current;
  }

  /** A snapshot of every leg, in order. */
  legs(): LegStatus[] {
    return this.#legs.map((l) => this.#status(l));
  }

  /** Number of legs currently in sync. */
  get inSync(): number {
    return this.#legs.filter((l) => l.state === "in-sync").length;
  }

  /**
   * Reads every leg's media, runs the decision table and starts what it calls for (resyncs,
   * refusals), before the mirror serves. Without media the mirror keeps no state (all in sync).
   */
  start(): Promise<void> {
    return judgeAtStart(this.#core);
  }

  /** A leg's link is down: it leaves the sets now, before it could come back as other media. */
  legLost(index: number, why: string): void {
    const leg = this.#legs[index];
    if (leg !== undefined) this.#fail(leg, why);
  }

  /** A leg's link is back (or it may be): judge it and resync it, if it is out. */
  legReachable(index: number): void {
    const leg = this.#legs[index];
    if (leg !== undefined && leg.state === "out") void judgeLeg(this.#core, leg, false);
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#check(offset, length);
    this.#clientOps++;
    let lastError: unknown;
    // Each attempt picks the next in-sync leg; a failed leg leaves the set, so this ends.
    for (let attempt = 0; attempt < this.#legs.length; attempt++) {
      const leg = this.#pickReadLeg(offset, length);
      if (leg === undefined) break;
      try {
        // The leg reads into a buffer of its own, never into the caller's: a leg that times out
        // is abandoned but may still answer later, and must not write into `into` after the
        // caller has it back (from another leg) and reused it.
        const data = await this.#timed(leg, leg.device.read(offset, length));
        leg.reads++;
        if (into === undefined) return data;
        const view = into.subarray(0, length);
        view.set(data);
        return view;
      } catch (error) {
        if (isRequestError(error)) throw error;
        lastError = error;
        this.#fail(leg, `read failed: ${describe(error)}`);
      }
    }
    throw this.#noLegs("read", lastError);
  }

  async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    this.#check(offset, data.length);
    this.#clientOps++;
    return writeToLegs(this.#core, offset, data.length, "write", (d) => d.write(offset, data, fua));
  }

  async flush(): Promise<void> {
    this.#clientOps++;
    return everyLeg(this.#core, "flush", (d) => d.flush()).then(() => {});
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.#check(offset, length);
    this.#clientOps++;
    return writeToLegs(this.#core, offset, length, "trim", (d) => d.trim(offset, length, fua));
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    this.#check(offset, length);
    this.#clientOps++;
    return writeToLegs(this.#core, offset, length, "zero", (d) => d.zero(offset, length, options));
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.#check(offset, length);
    const leg = this.#pickReadLeg();
    if (leg === undefined) throw this.#noLegs("extents", undefined);
    try {
      return await this.#timed(leg, leg.device.extents(offset, length));
    } catch (error) {
      if (isRequestError(error)) throw error;
      this.#fail(leg, `extents failed: ${describe(error)}`);
      // Allocation state is advisory: report plain data rather than fail the client.
      return [{ length, hole: false, zero: false }];
    }
  }

  async cache(offset: number, length: number): Promise<void> {
    this.#check(offset, length);
    const leg = this.#pickReadLeg();
    if (leg !== undefined) await leg.device.cache(offset, length).catch(() => {});
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#sweeper.stop();
    if (this.#persist && this.#legs.every((l) => l.state === "in-sync")) {
      // A clean stop with every leg in sync: settle the generations, then the activity log
      // can go, except where a write is still in flight.
      await this.#gen.settleAtClose();
      if (this.#gen.settled()) this.#bitmap.dropAllIdle();
      await this.#bitmap.store().catch(() => {});
    }
    for (const l of this.#legs) l.removed = true;
    await Promise.allSettled(this.#legs.map((l) => l.device.close()));
  }

  // ---- maintenance -------------------------------------------------------------------------

  hasLeg(name: string): boolean {
    return this.#legs.some((l) => l.name === name);
  }

  /** Takes a leg out of service: writes go on to the others and its misses are tracked. */
  suspend(name: string): Promise<void> {
    return maintenance.suspend(this.#core, name);
  }

  /** Brings a suspended or refused leg back: it is judged again and resynced. */
  resume(name: string): Promise<void> {
    return maintenance.resume(this.#core, name);
  }

  /** Declares a leg's data good as it is: it joins the in-sync set without a copy. */
  markClean(name: string): Promise<void> {
    return maintenance.markClean(this.#core, name);
  }

  /** Declares a leg's data bad: it is resynced in full (never the last in-sync leg). */
  markDirty(name: string): Promise<void> {
    return maintenance.markDirty(this.#core, name);
  }

  /** Adds a leg while serving; it is resynced in full before it is read. */
  addLeg(name: string, device: BlockDevice, media: MediaDevice | undefined): Promise<void> {
    return maintenance.addLeg(this.#core, name, device, media);
  }

  /** Removes a leg while serving (never the last in-sync one); its device is closed. */
  removeLeg(name: string): Promise<void> {
    return maintenance.removeLeg(this.#core, name);
  }

  /**
   * Online verify: compares digests of every in-sync leg chunk by chunk (under the range lock);
   * a leg that disagrees with the majority is marked for those chunks and resynced.
   */
  verify(): Promise<{ mismatches: number }> {
    return maintenance.verify(this.#core);
  }

  // ---- plumbing ----------------------------------------------------------------------------

  /** Runs a resync job for `leg` until it holds every chunk, then lets it rejoin. */
  #resync(leg: Leg, fixedSource: Leg | undefined): Promise<void> {
    return resyncLeg(this.#core, leg, fixedSource);
  }

  /** An in-sync leg for a read, chosen by the read policy. */
  #pickReadLeg(offset = 0, length = 0): Leg | undefined {
    const legs = this.#legs;
    const i = this.#readPolicy.pick(
      legs.length,
      (i) => legs[i]!.state === "in-sync",
      offset,
      length,
    );
    return legs[i];
  }

  /** Rejects with ETIMEDOUT when a leg does not answer in time (the leg is failed by the caller). */
  #timed<T>(leg: Leg, op: Promise<T>): Promise<T> {
    return withDeadline(this.#clock, this.#timeoutMs, leg.name, op);
  }

  #fail(leg: Leg, reason: string): void {
    leg.errors++;
    if (leg.state !== "in-sync" && leg.state !== "rebuilding") return;
    const wasInSync = leg.state === "in-sync";
    if (wasInSync) this.#gen.mustRotate = true;
    leg.need ??= new ChunkBits(this.#chunks);
    this.#setState(leg, "out", reason);
    if (wasInSync && this.inSync === 0 && this.#persist && this.#gen.current !== undefined) {
      // The mirror is down: this leg holds every acknowledged write (see readmit, leg_judge.ts).
      const currents = new Set([this.#gen.current.current]);
      const confirmed = leg.known?.generations.current;
      if (confirmed !== undefined && confirmed !== NO_GENERATION) currents.add(confirmed);
      this.#down = { leg, currents };
    }
    this.#logger.log("warn", "mirror leg left the in-sync set", {
      leg: leg.name,
      reason,
      inSync: this.inSync,
    });
  }

  #setState(leg: Leg, state: LegState, reason: string | undefined): void {
    leg.state = state;
    if (state === "in-sync") this.#down = undefined;
    if (reason === undefined) delete leg.reason;
    else leg.reason = reason;
    this.#onLegState?.(this.#legs.indexOf(leg), this.#status(leg));
  }

  #noLegs(what: string, cause: unknown): BlockError {
    return noLegsError(this.#legs, this.inSync, what, cause);
  }

  #check(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.#info.size) {
      throw new BlockError(
        "EINVAL",
        `range ${offset}+${length} is outside the device (${this.#info.size})`,
      );
    }
  }

  #status(leg: Leg): LegStatus {
    return legStatus(leg, this.#chunkSize, this.#info.size);
  }
}
