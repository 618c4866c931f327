/**
 * Mirror mapping over N legs. Writes go to every in-sync leg and are acknowledged only when each
 * of them has the data; reads are spread over in-sync legs and fail over on error. A leg that
 * fails or times out leaves the in-sync set at once and the mirror runs degraded, without failing
 * client I/O while one in-sync leg remains. A leg that left is never read again until it has been
 * brought back in sync (the resync task does that).
 */
import {
  type BlockDevice,
  BlockError,
  type BlockErrorCode,
  type BlockInfo,
  type Extent,
  type ZeroOptions,
} from "../block/contract.ts";
import { type Clock, systemClock } from "../../util/clock.ts";
import { type Logger, silentLogger } from "../../util/log.ts";
import { combineInfo } from "./info.ts";
import { RangeLock } from "./range_lock.ts";

/** Where a leg stands. Only `in-sync` legs are read; writes go to `in-sync` legs. */
export type LegState = "in-sync" | "out";

export interface LegStatus {
  readonly name: string;
  readonly state: LegState;
  /** Why the leg left the in-sync set, when it did. */
  readonly reason?: string;
  readonly reads: number;
  readonly writes: number;
  readonly errors: number;
}

export interface MirrorOptions {
  /** Names for logs and status; defaults to leg0, leg1, ... */
  readonly names?: readonly string[];
  /** A leg that has not answered within this many milliseconds is failed (default 10 s). */
  readonly legTimeoutMs?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Called when a leg changes state. */
  readonly onLegState?: (index: number, status: LegStatus) => void;
}

/** Errors that describe the request, not the leg: when every leg says so, the client hears it. */
const requestErrors: ReadonlySet<BlockErrorCode> = new Set([
  "EINVAL",
  "EPERM",
  "ENOSPC",
  "EOVERFLOW",
  "ENOTSUP",
]);

interface Leg {
  readonly device: BlockDevice;
  readonly name: string;
  state: LegState;
  reason?: string;
  reads: number;
  writes: number;
  errors: number;
}

export class MirrorMapping implements BlockDevice {
  readonly #legs: Leg[];
  readonly #info: BlockInfo;
  readonly #timeoutMs: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #onLegState: ((index: number, status: LegStatus) => void) | undefined;
  readonly #writes = new RangeLock();
  #nextRead = 0;

  constructor(legs: readonly BlockDevice[], options: MirrorOptions = {}) {
    if (legs.length === 0) throw new RangeError("a mirror needs at least one leg");
    this.#legs = legs.map((device, i) => ({
      device,
      name: options.names?.[i] ?? `leg${i}`,
      state: "in-sync",
      reads: 0,
      writes: 0,
      errors: 0,
    }));
    const infos = legs.map((l) => l.info());
    this.#info = { ...combineInfo(infos), size: Math.min(...infos.map((i) => i.size)) };
    this.#timeoutMs = options.legTimeoutMs ?? 10_000;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#onLegState = options.onLegState;
  }

  info(): BlockInfo {
    return this.#info;
  }

  /** A snapshot of every leg, in order. */
  legs(): LegStatus[] {
    return this.#legs.map((l) => this.#status(l));
  }

  /** Number of legs currently in sync. */
  get inSync(): number {
    return this.#legs.filter((l) => l.state === "in-sync").length;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#check(offset, length);
    let lastError: unknown;
    // Each attempt picks the next in-sync leg; a failed leg leaves the set, so this ends.
    for (let attempt = 0; attempt < this.#legs.length; attempt++) {
      const leg = this.#pickReadLeg();
      if (leg === undefined) break;
      try {
        const data = await this.#timed(leg, leg.device.read(offset, length, into));
        leg.reads++;
        return data;
      } catch (error) {
        if (this.#isRequestError(error)) throw error;
        lastError = error;
        this.#fail(leg, `read failed: ${describe(error)}`);
      }
    }
    throw this.#noLegs("read", lastError);
  }

  async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    this.#check(offset, data.length);
    return this.#writes.run(
      offset,
      data.length,
      () => this.#everyLeg("write", (d) => d.write(offset, data, fua)),
    );
  }

  async flush(): Promise<void> {
    return this.#everyLeg("flush", (d) => d.flush());
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.#check(offset, length);
    return this.#writes.run(
      offset,
      length,
      () => this.#everyLeg("trim", (d) => d.trim(offset, length, fua)),
    );
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    this.#check(offset, length);
    return this.#writes.run(
      offset,
      length,
      () => this.#everyLeg("zero", (d) => d.zero(offset, length, options)),
    );
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.#check(offset, length);
    const leg = this.#pickReadLeg();
    if (leg === undefined) throw this.#noLegs("extents", undefined);
    try {
      return await this.#timed(leg, leg.device.extents(offset, length));
    } catch (error) {
      if (this.#isRequestError(error)) throw error;
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
    await Promise.allSettled(this.#legs.map((l) => l.device.close()));
  }

  /**
   * Runs `op` on every in-sync leg and resolves once each has answered. Legs that fail leave the
   * set; the operation succeeds while at least one in-sync leg succeeded.
   */
  async #everyLeg(what: string, op: (device: BlockDevice) => Promise<void>): Promise<void> {
    const targets = this.#legs.filter((l) => l.state === "in-sync");
    if (targets.length === 0) throw this.#noLegs(what, undefined);
    const results = await Promise.allSettled(
      targets.map((leg) => this.#timed(leg, op(leg.device))),
    );
    let ok = 0;
    let requestError: unknown;
    let lastError: unknown;
    results.forEach((result, i) => {
      const leg = targets[i]!;
      if (result.status === "fulfilled") {
        ok++;
        leg.writes++;
      } else if (this.#isRequestError(result.reason)) {
        requestError = result.reason;
      } else {
        lastError = result.reason;
        this.#fail(leg, `${what} failed: ${describe(result.reason)}`);
      }
    });
    if (requestError !== undefined && ok === 0) throw requestError;
    if (ok === 0) throw this.#noLegs(what, lastError);
  }

  /** Round robin over in-sync legs. */
  #pickReadLeg(): Leg | undefined {
    const n = this.#legs.length;
    for (let i = 0; i < n; i++) {
      const leg = this.#legs[(this.#nextRead + i) % n]!;
      if (leg.state === "in-sync") {
        this.#nextRead = (this.#nextRead + i + 1) % n;
        return leg;
      }
    }
    return undefined;
  }

  /** Rejects with ETIMEDOUT when a leg does not answer in time (the leg is failed by the caller). */
  #timed<T>(leg: Leg, op: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = this.#clock.setTimeout(
        () => reject(new BlockError("ETIMEDOUT", `${leg.name} did not answer in time`)),
        this.#timeoutMs,
      );
      op.then(
        (value) => {
          timer.cancel();
          resolve(value);
        },
        (error) => {
          timer.cancel();
          reject(error);
        },
      );
    });
  }

  #fail(leg: Leg, reason: string): void {
    leg.errors++;
    if (leg.state !== "in-sync") return;
    leg.state = "out";
    leg.reason = reason;
    this.#logger.log("warn", "mirror leg left the in-sync set", {
      leg: leg.name,
      reason,
      inSync: this.inSync,
    });
    this.#onLegState?.(this.#legs.indexOf(leg), this.#status(leg));
  }

  #isRequestError(error: unknown): boolean {
    return error instanceof BlockError && requestErrors.has(error.code);
  }

  #noLegs(what: string, cause: unknown): BlockError {
    const why = cause === undefined ? "" : ` (last error: ${describe(cause)})`;
    return new BlockError("EIO", `${what}: no in-sync leg left${why}`);
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
    const { name, state, reads, writes, errors } = leg;
    return leg.reason === undefined
      ? { name, state, reads, writes, errors }
      : { name, state, reason: leg.reason, reads, writes, errors };
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
