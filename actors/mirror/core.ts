/**
 * The mirror's core: the one owner of its legs' state, its bitmap and its generations. Every
 * event that can change a leg goes through `dispatch`, which runs the one transition function
 * (leg_machine.ts), bumps the leg's epoch, runs the move's effects and asserts the invariants;
 * work started under an older epoch can no longer change the leg. The core runs inside the
 * mirror's actor (actor.ts): events from outside arrive there as messages.
 *
 * Client I/O: reads go to one in-sync leg and fail over; changes go through writes.ts.
 *
 * Fencing (fencing.ts): once a leg answers EFENCED, or the exporter learns it lost ownership,
 * the mirror is fenced for good: every client request fails at once, no leg moves, nothing is
 * stamped. Invariant: a fenced mirror acknowledges nothing (invariants.ts).
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
import { HISTORY_SLOTS, newGenerationId, NO_GENERATION } from "../block/media.ts";
import type { Clock } from "../../util/clock.ts";
import type { Logger } from "../../util/log.ts";
import type { Random } from "../../util/random.ts";
import { type Layout, mirrorLayout } from "./layout.ts";
import { ChunkBits } from "./chunk_bits.ts";
import { isInconsistent, isMember } from "./generations.ts";
import { noLegsError } from "./errors.ts";
import { GenerationStamps } from "./generation_stamps.ts";
import { checkLegs, invariant, InvariantError } from "./invariants.ts";
import type { DownRecord, JudgeHost } from "./judge.ts";
import { runEffect } from "./effects.ts";
import { cacheOnLeg, extentsFromLeg, readFromLegs } from "./reads.ts";
import { type Leg, newLeg } from "./leg.ts";
import { FenceAwareDevice, fenceAwareMedia, fencedError, type FenceRecord } from "./fencing.ts";
import { type LegEvent, type NeedChange, type Outcome, transition } from "./leg_machine.ts";
import { withDeadline } from "./leg_deadline.ts";
import { InFlight, TrackedDevice, trackedMedia } from "./in_flight.ts";
import { RangeLock } from "../block/range_lock.ts";
import { ReadPolicy, type ReadPolicyName } from "./read_policy.ts";
import type { ResyncPace } from "./resync_copy.ts";
import { type LegStatus, legStatus } from "./status.ts";
import type { VerifyReport } from "./verify.ts";
import { everyLeg, type WriteHost, writeToLegs } from "./writes.ts";
import { WriteIntentBitmap } from "./write_intent_bitmap.ts";

export interface MirrorOptions {
  /** Names for logs and status; defaults to leg0, leg1, ... */
  readonly names?: readonly string[];
  /** A leg that has not answered within this many milliseconds is failed (default 10 s). */
  readonly legTimeoutMs?: number;
  /** How reads pick among in-sync legs (default round robin; see read_policy.ts). */
  readonly readPolicy?: ReadPolicyName;
  /** Each leg's media operations (undefined for a leg without media); enables persistence. */
  readonly media?: readonly (MediaDevice | undefined)[];
  /** Bytes per bitmap bit (a power of two, default 1 MiB). */
  readonly chunkSize?: number;
  /** The storage id ("age"); default: what the member legs carry, else a new one. */
  readonly storageId?: string;
  readonly pace?: ResyncPace;
  /** An idle chunk leaves the activity log after this long, once the legs flushed (5 s). */
  readonly activityIdleMs?: number;
  /** How often legs that are out are tried again (default 2 s; 0 never). */
  readonly probeMs?: number;
  /** Start even when an unreachable leg is not known to be outdated (see start.ts). */
  readonly force?: boolean;
  /** Called after a leg changed state. */
  readonly onLegState?: (status: LegStatus) => void;
  /** Called once when the mirror is fenced (a newer exporter owns its legs). */
  readonly onFenced?: (record: FenceRecord) => void;
  /** How data lies on the legs (default: mirrored; see layout.ts). */
  readonly layout?: Layout;
}

/** How the core starts and stops resync actors (the actor provides it). */
export interface ResyncSpawner {
  start(leg: string, epoch: number): void;
  stop(leg: string): void;
}

/** A control action was refused; `why` says why and what to do. */
export class ControlRefused extends Error {
  constructor(why: string) {
    super(why);
    this.name = "ControlRefused";
  }
}

type MutableLeg = { -readonly [K in keyof Leg]: Leg[K] };

export class MirrorCore implements BlockDevice, JudgeHost, WriteHost {
  readonly legs: Leg[];
  readonly #info: BlockInfo;
  readonly layout: Layout;
  /** Bytes of each leg the device uses (the mirror: its size). */
  readonly legBytes: number;
  readonly chunkSize: number;
  readonly chunks: number;
  readonly bitmap: WriteIntentBitmap;
  readonly gen: GenerationStamps;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Source of generation and storage ids; undefined: the system's secure random. */
  readonly random: Random | undefined;
  readonly pace: ResyncPace;
  readonly timeoutMs: number;
  readonly idleMs: number;
  readonly probeMs: number;
  readonly force: boolean;
  readonly #writes = new RangeLock();
  readonly #readPolicy: ReadPolicy;
  readonly #onLegState: ((status: LegStatus) => void) | undefined;
  readonly #onFenced: ((record: FenceRecord) => void) | undefined;
  /** Set once the mirror is fenced; never cleared (see `fence`). */
  fenced: FenceRecord | undefined;
  /** Set when the last in-sync leg left (the mirror went down); cleared once one is back. */
  down: DownRecord | undefined;
  persist = false;
  closed = false;
  clientOps = 0;
  lastVerify: VerifyReport | undefined;
  resyncs: ResyncSpawner = { start: () => {}, stop: () => {} };
  /** Told when background work broke an invariant: the actor stops the mirror (actor.ts). */
  onBroken: (error: InvariantError) => void = () => {};

  constructor(
    devices: readonly BlockDevice[],
    options: MirrorOptions,
    clock: Clock,
    logger: Logger,
    random?: Random,
  ) {
    if (devices.length === 0) throw new RangeError("a mirror needs at least one leg");
    this.clock = clock;
    this.logger = logger;
    this.random = random;
    this.legs = devices.map((device, i) =>
      this.newLeg(options.names?.[i] ?? `leg${i}`, device, options.media?.[i])
    );
    this.layout = options.layout ?? mirrorLayout;
    this.#info = this.layout.info(devices.map((l) => l.info()));
    this.legBytes = this.layout.legNeeds(this.#info).size;
    this.timeoutMs = options.legTimeoutMs ?? 10_000;
    this.#readPolicy = new ReadPolicy(options.readPolicy);
    this.#onLegState = options.onLegState;
    this.#onFenced = options.onFenced;
    this.chunkSize = options.chunkSize ?? 1024 * 1024;
    if (this.chunkSize < 4096 || (this.chunkSize & (this.chunkSize - 1)) !== 0) {
      throw new RangeError(
        `chunk size must be a power of two of at least 4096, got ${this.chunkSize}`,
      );
    }
    this.chunks = Math.max(1, Math.ceil(this.legBytes / this.chunkSize));
    const host = {
      legs: () => this.legs,
      timed: <T>(leg: Leg, op: Promise<T>) => this.timed(leg, op),
      fail: (leg: Leg, epoch: number, why: string) => this.fail(leg, epoch, why),
    };
    this.bitmap = new WriteIntentBitmap(this.chunks, host);
    this.gen = new GenerationStamps(options.storageId, this.chunkSize, host, random);
    this.pace = options.pace ?? {};
    this.idleMs = options.activityIdleMs ?? 5000;
    this.probeMs = options.probeMs ?? 2000;
    this.force = options.force ?? false;
  }

  info(): BlockInfo {
    return this.#info;
  }

  /** What every leg must offer (layout.ts). */
  legNeeds(): BlockInfo {
    return this.layout.legNeeds(this.#info);
  }

  get size(): number {
    return this.#info.size;
  }

  get bits(): ChunkBits {
    return this.bitmap.bits;
  }

  inSyncCount(): number {
    let n = 0;
    for (const l of this.legs) if (l.state === "in-sync") n++;
    return n;
  }

  /** A leg record over `device` and `media`, seen through the fencing wrappers. */
  newLeg(name: string, device: BlockDevice, media: MediaDevice | undefined): Leg {
    // Every request is counted below the fencing wrappers (in_flight.ts); an EFENCED answer to
    // one sent before the leg last left fences nothing (fencing.ts).
    const flight = new InFlight();
    const sent = () => {
      const left = flight.left;
      return () => flight.left === left;
    };
    const fence = (why: string, current: boolean) => {
      if (current) this.fence(why);
      else this.logger.log("warn", "a late answer to a request given up on says EFENCED", { why });
    };
    return newLeg(
      name,
      new FenceAwareDevice(new TrackedDevice(device, flight), fence, sent),
      media === undefined ? undefined : fenceAwareMedia(trackedMedia(media, flight), fence, sent),
      this.clock.now(),
      flight,
    );
  }

  leg(name: string): Leg {
    const leg = this.legs.find((l) => l.name === name);
    if (leg === undefined) {
      throw new ControlRefused(
        `no leg named "${name}" in this mirror (legs: ${this.legs.map((l) => l.name).join(", ")})`,
      );
    }
    return leg;
  }

  // ---- the one place leg state changes --------------------------------------------------

  /**
   * Runs `event` through the transition function for `leg`. With `epoch`, an event from work
   * started under an older epoch is dropped. Throws InvariantError when the bookkeeping broke.
   */
  dispatch(leg: Leg, event: LegEvent, epoch?: number): Outcome {
    if (epoch !== undefined && epoch !== leg.epoch) return { kind: "ignore" };
    // A fenced mirror no longer owns its legs: what they do says nothing about them.
    if (this.fenced !== undefined) return { kind: "ignore" };
    const othersInSync = this.legs.filter((l) => l !== leg && l.state === "in-sync").length;
    const outcome = transition(leg.state, event, {
      othersInSync,
      otherLegs: this.legs.filter((l) => l !== leg && l.state !== "removed").length,
      lacksNothing: leg.need !== undefined && leg.need.isEmpty(),
      needInSync: this.layout.needInSync(this.legs.length),
    });
    if (outcome.kind === "invalid") throw new InvariantError(`${leg.name}: ${outcome.why}`);
    if (outcome.kind !== "move") return outcome;
    const m = leg as MutableLeg;
    const from = m.state;
    const lacked = m.need?.copy();
    this.#changeNeed(m, outcome.need, event);
    if (outcome.adopt) m.adopt = true;
    m.state = outcome.to;
    // Its resync's progress ends with the rebuilding (a clean or a failure ends it too).
    if (from === "rebuilding") m.resync = undefined;
    m.epoch++;
    m.reason = outcome.reason;
    m.since = this.clock.now();
    // Out of the sets: nothing waits on what was sent to it (it is judged once that settled).
    if (outcome.to !== "in-sync" && outcome.to !== "rebuilding") {
      m.flight.leave(m.name, outcome.reason ?? outcome.to);
    }
    if (outcome.to === "in-sync") {
      m.rejoined = { at: m.since, errors: m.errors };
      this.down = undefined;
      // The administrator picked this leg's data as the truth while none served.
      if (event.t === "clean" && othersInSync === 0) this.#adoptAsReference(m);
      if (event.t === "judged" && event.verdict.kind === "readmit") this.#readmitted(m);
      // It is the truth now: where it lacked writes, the others may hold them; they differ.
      if (othersInSync === 0 && lacked !== undefined) this.#spreadNeed(m, lacked);
    } else if (from === "in-sync" && othersInSync === 0) {
      this.#wentDown(m);
    }
    this.logger.log(
      outcome.to === "in-sync" || from !== "in-sync" ? "info" : "warn",
      "mirror leg moved",
      {
        leg: leg.name,
        from,
        to: outcome.to,
        ...(outcome.reason === undefined ? {} : { reason: outcome.reason }),
        inSync: this.inSyncCount(),
      },
    );
    for (const effect of outcome.effects) runEffect(this, effect, m);
    // A leg stamped with the serving generation (a resync about to finish) that leaves now
    // must be left behind it, as an in-sync leg that leaves is: else, after a restart, it
    // would pass for a peer of the legs that went on taking writes.
    if (from === "rebuilding" && outcome.to !== "in-sync" && this.#carriesCurrent(m)) {
      runEffect(this, "rotate", m);
    }
    checkLegs(this.legs, this.bitmap.bits);
    this.#onLegState?.(this.status(leg));
    if (event.t === "judged" && event.verdict.kind === "readmit") {
      // The others can be judged against it now.
      for (const l of this.legs) {
        if (l.state === "out" && l.media !== undefined) this.dispatch(l, { t: "reachable" });
      }
    }
    return outcome;
  }

  /**
   * The mirror is fenced: a newer exporter owns its legs. One way, once: client requests fail
   * from now on, resyncs stop, no leg moves, nothing more is stamped.
   */
  fence(why: string): void {
    if (this.fenced !== undefined) return;
    this.fenced = { why, at: this.clock.now() };
    this.logger.log(
      "error",
      "mirror fenced: a newer exporter owns its legs; acknowledging nothing more",
      {
        why,
      },
    );
    for (const l of this.legs) this.resyncs.stop(l.name);
    this.#onFenced?.(this.fenced);
  }

  /** Throws the fenced refusal of `what` when the mirror is fenced. */
  refuseIfFenced(what: string): void {
    if (this.fenced !== undefined) throw fencedError(what, this.fenced);
  }

  /** An I/O error or timeout on `leg` (at `epoch`): it leaves the sets at once. */
  fail(leg: Leg, epoch: number, why: string): void {
    leg.errors++;
    this.dispatch(leg, { t: "failed", why }, epoch);
  }

  /** Marks chunks [first, last] lacking on each of `legs`; true when a bitmap bit was set. */
  recordMisses(legs: readonly Leg[], first: number, last: number): boolean {
    let newBits = false;
    for (const leg of legs) {
      invariant(
        leg.state !== "in-sync",
        () => `${leg.name} missed chunks ${first}..${last} while it is in sync`,
      );
      const need = leg.need!;
      for (let c = first; c <= last; c++) {
        need.set(c);
        if (this.bitmap.setBit(c)) newBits = true;
      }
    }
    return newBits;
  }

  #changeNeed(leg: MutableLeg, change: NeedChange, event: LegEvent): void {
    switch (change) {
      case "keep":
        return;
      case "none":
        leg.need = undefined;
        return;
      case "track":
        // What it lacks from now on, and what was written lately: those writes may not be
        // durable on it (the activity log holds every chunk not yet flushed everywhere).
        leg.need ??= new ChunkBits(this.chunks);
        for (const c of this.bitmap.activeChunks()) leg.need.set(c);
        return;
      case "full":
        leg.need = ChunkBits.full(this.chunks);
        break;
      case "verdict":
        invariant(event.t === "judged" && event.verdict.kind === "resync", () => "verdict need");
        leg.need ??= new ChunkBits(this.chunks);
        leg.need.or(event.verdict.need);
        break;
      case "event":
        invariant(event.t === "mismatch", () => "event need");
        leg.need ??= new ChunkBits(this.chunks);
        leg.need.or(event.chunks);
        break;
    }
    this.bitmap.setAll(leg.need);
  }

  /** Does `leg`'s media say it is a consistent member at the mirror's current generation? */
  #carriesCurrent(leg: Leg): boolean {
    const known = leg.known;
    return known !== undefined && this.gen.current !== undefined &&
      known.generations.current === this.gen.current.current && !isInconsistent(known) &&
      isMember(known, this.gen.storageId);
  }

  /**
   * `leg` became the one in-sync leg, lacking `lacked` (writes that only other legs took, some
   * never acknowledged): every other leg now differs from it there, and needs those chunks.
   */
  #spreadNeed(leg: Leg, lacked: ChunkBits): void {
    if (lacked.isEmpty()) return;
    for (const l of this.legs) {
      if (l === leg || l.state === "removed" || l.state === "in-sync") continue;
      (l as MutableLeg).need ??= new ChunkBits(this.chunks);
      l.need!.or(lacked);
    }
    this.bitmap.setAll(lacked);
  }

  /** The mirror went down when `leg`, its last in-sync leg, left: remember it (readmit). */
  #wentDown(leg: Leg): void {
    if (!this.persist || this.gen.current === undefined) return;
    const currents = new Set([this.gen.current.current]);
    const confirmed = leg.known?.generations.current;
    if (confirmed !== undefined && confirmed !== NO_GENERATION) currents.add(confirmed);
    this.down = { leg, currents };
  }

  #adoptAsReference(leg: Leg): void {
    const g = leg.known?.generations;
    this.gen.current = g !== undefined && g.current !== NO_GENERATION
      ? g
      : { current: newGenerationId(this.random), bitmap: NO_GENERATION, history: [] };
  }

  /**
   * The mirror took back its last in-sync leg: like DRBD's last primary disk it holds every
   * acknowledged write (with no in-sync leg every write failed), so its generations lead. Bits
   * set while no leg served were stored nowhere: the whole bitmap goes to it.
   */
  #readmitted(leg: Leg): void {
    this.gen.current = abandoning(this.gen.current, leg.known!.generations);
    this.bitmap.allPagesChanged();
    if (this.persist) void this.bitmap.store().catch(() => {});
    this.logger.log("warn", "the mirror took back its last in-sync leg: serving again", {
      leg: leg.name,
      generation: this.gen.current.current,
    });
  }

  /** A resync landed `chunks` on `leg` (still rebuilding at the report's epoch). */
  landed(leg: Leg, chunks: readonly number[]): void {
    const need = leg.need!;
    for (const c of chunks) need.clear(c);
    if (this.bitmap.retireLanded(chunks) && this.persist) void this.bitmap.store().catch(() => {});
  }

  /**
   * Runs `work` that nobody awaits (a judgment, a stamp, a resync's end): a broken invariant
   * there stops the mirror (`onBroken`) instead of escaping as an unhandled rejection.
   */
  background(what: string, work: Promise<unknown>): void {
    work.catch((error) => {
      if (error instanceof InvariantError) this.onBroken(error);
      else this.logger.log("error", `mirror: ${what} failed`, { error: String(error) });
    });
  }

  // ---- client I/O ----------------------------------------------------------------------------

  timed<T>(leg: Leg, op: Promise<T>): Promise<T> {
    return withDeadline(this.clock, this.timeoutMs, leg.name, op, leg.flight);
  }

  lock<T>(offset: number, length: number, fn: () => Promise<T>): Promise<T> {
    return this.#writes.run(offset, length, fn);
  }

  noLegs(what: string, cause: unknown): BlockError {
    return noLegsError(this.legs, this.inSyncCount(), what, cause);
  }

  /**
   * Reads fail too once fenced: the new owner may have acknowledged writes since, so what the
   * legs return could be older than an acknowledged write (a stale read).
   */
  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.clientOps++;
    this.refuseIfFenced("read");
    const data = this.layout.io !== undefined
      ? await this.layout.io.read(this, offset, length, into)
      : await readFromLegs(this, this.#readPolicy, offset, length, into);
    this.refuseIfFenced("read");
    return data;
  }

  async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    this.clientOps++;
    this.refuseIfFenced("write");
    if (this.layout.io !== undefined) return await this.layout.io.write(this, offset, data, fua);
    return await writeToLegs(
      this,
      offset,
      data.length,
      "write",
      (d) => d.write(offset, data, fua),
    );
  }

  async flush(): Promise<void> {
    this.clientOps++;
    this.refuseIfFenced("flush");
    if (this.layout.io !== undefined) return await this.layout.io.flush(this);
    const spread = await everyLeg(this, "flush", (d) => d.flush());
    if (spread.kind === "refused") throw spread.error;
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.clientOps++;
    this.refuseIfFenced("trim");
    if (this.layout.io !== undefined) return await this.layout.io.trim(this, offset, length, fua);
    return await writeToLegs(this, offset, length, "trim", (d) => d.trim(offset, length, fua));
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    this.clientOps++;
    this.refuseIfFenced("zero");
    if (this.layout.io !== undefined) {
      return await this.layout.io.zero(this, offset, length, options);
    }
    return await writeToLegs(
      this,
      offset,
      length,
      "zero",
      (d) => d.zero(offset, length, options),
    );
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.refuseIfFenced("extents");
    if (this.layout.io !== undefined) return await this.layout.io.extents(this, offset, length);
    return await extentsFromLeg(this, this.#readPolicy, offset, length);
  }

  async cache(offset: number, length: number): Promise<void> {
    this.refuseIfFenced("cache");
    if (this.layout.io !== undefined) return await this.layout.io.cache(this, offset, length);
    return await cacheOnLeg(this, this.#readPolicy, offset, length);
  }

  /**
   * Stops: with every leg in sync, the legs flush, the generations settle and the activity log
   * empties, so the next start resyncs nothing. `broken`: after a broken invariant nothing is
   * stamped (the media keeps saying what it said), the devices only close.
   */
  async close(broken = false): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const l of this.legs) this.resyncs.stop(l.name);
    // A fenced mirror stamps nothing either: its legs belong to another exporter.
    if (!broken && this.fenced === undefined && this.persist) {
      // The writes in flight end first (each bounded by the leg deadline): then every write the
      // in-sync legs took is flushed and they are stamped as stopped cleanly.
      await this.lock(0, this.size, () => Promise.resolve());
      const inSync = this.legs.filter((l) => l.state === "in-sync");
      const results = await Promise.allSettled(
        inSync.map((l) => this.timed(l, l.device.flush())),
      );
      const flushed = inSync.filter((_, i) => results[i]!.status === "fulfilled");
      const allInSync = flushed.length === this.legs.length;
      await this.gen.stampAtClose(flushed, allInSync);
      if (allInSync && this.gen.settled()) {
        this.bitmap.retire(this.bitmap.idleSince(Infinity), Infinity);
      }
      await this.bitmap.store().catch(() => {});
    }
    await Promise.allSettled(this.legs.map((l) => l.device.close()));
  }

  // ---- status ----------------------------------------------------------------------------------

  status(leg: Leg): LegStatus {
    return legStatus(leg, this.chunkSize, this.size, this.clock.now());
  }
}

/**
 * The generations of a leg taken back as the last in-sync one (`own`), keeping in its history
 * the ones the mirror rotated to after it (`mine`) that never reached it. Those were stamped on
 * legs that left before it (they hold nothing acknowledged that it lacks): listed, such a leg is
 * judged behind, not written apart.
 */
function abandoning(
  mine: MediaGenerations | undefined,
  own: MediaGenerations,
): MediaGenerations {
  if (mine === undefined || mine.current === own.current) return own;
  const line = [mine.current, ...mine.history];
  const at = line.indexOf(own.current);
  const abandoned = (at < 0 ? line : line.slice(0, at)).filter((id) =>
    id !== NO_GENERATION && id !== own.bitmap && !own.history.includes(id)
  );
  if (abandoned.length === 0) return own;
  return { ...own, history: [...abandoned, ...own.history].slice(0, HISTORY_SLOTS) };
}
