/**
 * The event history of one process, for the dashboard and `GET /api/events`: legs leaving and
 * joining, resyncs starting and ending, a mirror going down and serving again, verify results and
 * the operator's control actions. A bounded ring (1000 by default): the oldest fall out, and a
 * reader polling with `since` learns how many it missed. Fed by the mirror's leg moves
 * ({@link legMoves}) and by wrapping the storage control ({@link recordedControl}).
 */
import type { LegStatus } from "../actors/mirror/status.ts";
import {
  ControlError,
  type ControlResult,
  type LegSpec,
  type StorageControl,
} from "../storage/control.ts";

export type EventLevel = "info" | "warn" | "error";

/** What an event is about. */
export type EventKind = "process" | "leg" | "resync" | "mirror" | "verify" | "control";

export interface StatusEvent {
  /** Increases by one per event, from 1; `since` takes the last one a reader saw. */
  readonly id: number;
  /** Milliseconds since the epoch. */
  readonly time: number;
  readonly level: EventLevel;
  readonly kind: EventKind;
  /** The node it is about (a leg, a mirror). */
  readonly node?: string;
  /** The mirror a leg belongs to. */
  readonly mirror?: string;
  /** A leg's state before and after. */
  readonly from?: string;
  readonly to?: string;
  readonly message: string;
}

export type NewEvent = Omit<StatusEvent, "id" | "time">;

/** What `since` answers: the events after the given id, oldest first. */
export interface EventPage {
  readonly events: readonly StatusEvent[];
  /** The id of the newest event (0 when there is none): poll again with it. */
  readonly latest: number;
  /** Events after `since` that fell out of the ring before they were read. */
  readonly missed: number;
}

export const EVENT_CAPACITY = 1000;

export class EventLog {
  readonly #ring: (StatusEvent | undefined)[];
  readonly #now: () => number;
  #latest = 0;

  constructor(capacity = EVENT_CAPACITY, now: () => number = Date.now) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(`an event log holds at least one event, got ${capacity}`);
    }
    this.#ring = new Array(capacity);
    this.#now = now;
  }

  get latest(): number {
    return this.#latest;
  }

  add(event: NewEvent): StatusEvent {
    const stored: StatusEvent = { id: ++this.#latest, time: this.#now(), ...event };
    this.#ring[stored.id % this.#ring.length] = stored;
    return stored;
  }

  /** Events with an id above `since` (at most `limit`, the oldest first). */
  since(since = 0, limit = this.#ring.length): EventPage {
    const oldest = Math.max(1, this.#latest - this.#ring.length + 1);
    const first = Math.max(since + 1, oldest);
    const last = Math.min(this.#latest, first + Math.max(0, limit) - 1);
    const events: StatusEvent[] = [];
    for (let id = first; id <= last; id++) events.push(this.#ring[id % this.#ring.length]!);
    return { events, latest: this.#latest, missed: Math.max(0, oldest - since - 1) };
  }
}

/**
 * A recorder for one process's mirrors' leg moves, for the mirror's `onLegState`: turns each
 * move into an event, and notices a mirror losing its last in-sync leg and getting one back.
 */
export function legMoves(log: EventLog): (mirror: string, leg: LegStatus) => void {
  /** Each mirror's legs as last seen; a leg starts out being judged. */
  const seen = new Map<string, Map<string, string>>();
  return (mirror, leg) => {
    // Called inside the mirror's transition: recording must never disturb it.
    try {
      record(mirror, leg);
    } catch {
      // an event less
    }
  };

  function record(mirror: string, leg: LegStatus): void {
    let legs = seen.get(mirror);
    if (legs === undefined) seen.set(mirror, legs = new Map());
    const from = legs.get(leg.name) ?? "judging";
    const to = leg.state;
    if (from === to) return;
    const servedBefore = [...legs.values()].includes("in-sync");
    legs.set(leg.name, to);
    if (to === "removed") legs.delete(leg.name);
    log.add(describeMove(mirror, leg, from));
    const serves = [...legs.values()].includes("in-sync");
    if (servedBefore && !serves) {
      log.add({
        level: "error",
        kind: "mirror",
        node: mirror,
        message: `${mirror} is down: no leg is in sync (${leg.name} was the last)`,
      });
    } else if (!servedBefore && serves && from !== "judging") {
      log.add({
        level: "info",
        kind: "mirror",
        node: mirror,
        message: `${mirror} serves again: ${leg.name} is in sync`,
      });
    }
  }
}

function describeMove(mirror: string, leg: LegStatus, from: string): NewEvent {
  const to = leg.state;
  const base = { node: leg.name, mirror, from, to };
  const why = leg.reason === undefined ? "" : `: ${leg.reason}`;
  if (to === "rebuilding") {
    return {
      ...base,
      level: "info",
      kind: "resync",
      message: `resync of ${leg.name} started (was ${from})${why}`,
    };
  }
  if (to === "in-sync" && from === "rebuilding") {
    return {
      ...base,
      level: "info",
      kind: "resync",
      message: `resync of ${leg.name} done: in sync (${bytes(leg.resyncedBytes)} resynced)`,
    };
  }
  if (to === "in-sync") {
    return { ...base, level: "info", kind: "leg", message: `${leg.name} is in sync (was ${from})` };
  }
  const level: EventLevel = to === "split-brain" ? "error" : from === "in-sync" ? "warn" : "info";
  const verb = from === "in-sync" ? "left the in-sync set" : "moved";
  return { ...base, level, kind: "leg", message: `${leg.name} ${verb}: ${from} → ${to}${why}` };
}

/** The control, with every action (and what a verify found) recorded as an event. */
export function recordedControl(control: StorageControl, log: EventLog): StorageControl {
  const record = async (
    node: string,
    what: string,
    action: () => Promise<ControlResult>,
  ): Promise<ControlResult> => {
    try {
      const result = await action();
      log.add(
        result.verify === undefined
          ? { level: "info", kind: "control", node, message: `${what}: ${result.message}` }
          : {
            level: result.verify.unresolvedBytes > 0
              ? "error"
              : result.verify.mismatchedBytes > 0
              ? "warn"
              : "info",
            kind: "verify",
            node,
            message: `${what}: ${result.message}`,
          },
      );
      return result;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const refused = error instanceof ControlError && error.code !== "failed";
      log.add({
        level: refused ? "warn" : "error",
        kind: "control",
        node,
        message: `${what} ${refused ? "refused" : "failed"}: ${message}`,
      });
      throw error;
    }
  };
  return {
    nodes: () => control.nodes(),
    suspend: (node) => record(node, `suspend ${node}`, () => control.suspend(node)),
    resume: (node) => record(node, `resume ${node}`, () => control.resume(node)),
    clean: (node, force) =>
      record(node, `clean ${node}${force ? " (forced)" : ""}`, () => control.clean(node, force)),
    dirty: (node) => record(node, `dirty ${node}`, () => control.dirty(node)),
    addLeg: (mirror: string, name: string, spec: LegSpec) =>
      record(mirror, `add ${name} to ${mirror}`, () => control.addLeg(mirror, name, spec)),
    removeLeg: (mirror, leg) =>
      record(mirror, `remove ${leg} from ${mirror}`, () => control.removeLeg(mirror, leg)),
    verify: (mirror, repairFrom) =>
      record(
        mirror,
        `verify ${mirror}${repairFrom === undefined ? "" : ` trusting ${repairFrom}`}`,
        () => control.verify(mirror, repairFrom),
      ),
  };
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

function bytes(n: number): string {
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${UNITS[i]}`;
}
