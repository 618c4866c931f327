/**
 * The one transition function of a mirror leg: where a leg stands, every event that can move it,
 * and what each move must set off. Pure: it reads a state, an event and a few facts about the
 * other legs and answers with an outcome; the mirror's core (core.ts) applies it, bumps the
 * leg's epoch and runs the effects. Every (state, event) pair is spelled out and tested.
 */
import type { ChunkBits } from "./chunk_bits.ts";

/**
 * Where a leg stands. Only `in-sync` legs are read; writes go to `in-sync` and `rebuilding`
 * legs. `out`: failed or unreachable, its misses tracked; `judging`: its media is being read and
 * judged (it came back, or the mirror is starting); `suspended`: taken out by the administrator;
 * `split-brain`: refused on return (see its reason), never written or read; `removed`: gone.
 */
export type LegState =
  | "in-sync"
  | "out"
  | "judging"
  | "rebuilding"
  | "suspended"
  | "split-brain"
  | "removed";

export const LEG_STATES: readonly LegState[] = [
  "in-sync",
  "out",
  "judging",
  "rebuilding",
  "suspended",
  "split-brain",
  "removed",
];

/** What judging a leg concluded (judge.ts, start.ts). */
export type Verdict =
  /** It lacks these chunks: a resync copies them (`adopt`: its media becomes a member after). */
  | { readonly kind: "resync"; readonly need: ChunkBits; readonly adopt: boolean }
  /** Split brain, newer or unrelated data: refused, never overwritten silently. */
  | { readonly kind: "refuse"; readonly why: string }
  /**
   * It stays out: unreachable, unfit for this mirror (too small, lacks a capability the mirror
   * promised), or nothing to judge it against yet.
   */
  | { readonly kind: "out"; readonly why: string }
  /** The mirror went down when this leg, its last in-sync one, left; it is back as itself. */
  | { readonly kind: "readmit" }
  /** At start: a reference leg (or a leg that keeps no media): in sync as it is. */
  | { readonly kind: "reference" };

/** Everything that can move a leg. */
export type LegEvent =
  /** An I/O error or timeout on the leg, or its link went down. */
  | { readonly t: "failed"; readonly why: string }
  /** Its link is up again, or a probe: a leg that is out is judged. */
  | { readonly t: "reachable" }
  | { readonly t: "judged"; readonly verdict: Verdict }
  /** Its resync copied every chunk, and the leg flushed and was stamped. */
  | { readonly t: "resynced" }
  | { readonly t: "resync-failed"; readonly why: string }
  | { readonly t: "suspend" }
  | { readonly t: "resume" }
  /** The administrator declares its data good; `force` when it may lack writes. */
  | { readonly t: "clean"; readonly force: boolean }
  /** The administrator declares its data bad: a full resync. */
  | { readonly t: "dirty" }
  /** Verify found chunks where it differs from the leg the operator trusts. */
  | { readonly t: "mismatch"; readonly chunks: ChunkBits; readonly why: string }
  | { readonly t: "remove" };

/** What the transition needs to know beyond the leg itself. */
export interface MirrorFacts {
  /** In-sync legs other than this one. */
  readonly othersInSync: number;
  /** Legs other than this one (not removed). */
  readonly otherLegs: number;
  /** The leg's misses are tracked and it lacks no chunk (so `clean` loses nothing). */
  readonly lacksNothing: boolean;
  /**
   * In-sync legs the storage needs to serve, and to rebuild a leg from (default 1: a mirror;
   * parity needs every leg but one, see layout.ts).
   */
  readonly needInSync?: number;
}

/** Are there too few other in-sync legs to serve without this one (or to rebuild it from)? */
function tooFew(facts: MirrorFacts): boolean {
  return facts.othersInSync < (facts.needInSync ?? 1);
}

/** What "the last in-sync leg" means for this storage, in a refusal. */
function last(facts: MirrorFacts): string {
  const need = facts.needInSync ?? 1;
  return need === 1 ? "it is the last in-sync leg" : `the storage needs ${need} in-sync legs`;
}

/** How the leg's needed chunks change with a move. */
export type NeedChange =
  /** As they are. */
  | "keep"
  /** Start tracking (from empty when untracked) and add the chunks being written now. */
  | "track"
  /** In sync: it lacks nothing. */
  | "none"
  /** Every chunk (its data is not trusted). */
  | "full"
  /** Add the verdict's chunks. */
  | "verdict"
  /** Add the event's chunks. */
  | "event";

/** Work a move sets off; the core runs them in this order after the state changed. */
export type Effect =
  /** The serving legs take a new current generation: a leg left them. */
  | "rotate"
  /** Stop the leg's resync actor. */
  | "stop-resync"
  /** Read its media and judge it (it is `judging` now). */
  | "judge"
  /** Mark its media a resync target and start its resync actor (it is `rebuilding` now). */
  | "start-resync"
  /** Stamp its media a member at the current generations. */
  | "stamp"
  /** Clear its member flag (its data is not trusted), then judge it. */
  | "forget-media"
  /** Close its device (removed). */
  | "close"
  /** Clear the bitmap bits no leg needs any more, and store it. */
  | "settle-bitmap";

export type Outcome =
  | {
    readonly kind: "move";
    readonly to: LegState;
    readonly reason: string | undefined;
    readonly need: NeedChange;
    /** Its media must become a member once it holds every chunk. */
    readonly adopt?: boolean;
    readonly effects: readonly Effect[];
  }
  /** The event changes nothing in this state. */
  | { readonly kind: "ignore" }
  /** A control action that cannot be done now; `why` says why and what to do. */
  | { readonly kind: "refuse"; readonly why: string }
  /** An event that can never happen in this state: the mirror's bookkeeping is broken. */
  | { readonly kind: "invalid"; readonly why: string };

const IGNORE: Outcome = { kind: "ignore" };

function move(
  to: LegState,
  reason: string | undefined,
  need: NeedChange,
  effects: readonly Effect[],
  adopt?: boolean,
): Outcome {
  return adopt ? { kind: "move", to, reason, need, effects, adopt } : {
    kind: "move",
    to,
    reason,
    need,
    effects,
  };
}

/** The effect that stops a resync, only where one runs. */
function stopping(state: LegState): Effect[] {
  return state === "rebuilding" ? ["stop-resync"] : [];
}

/** Where `event` takes a leg in `state`. */
export function transition(state: LegState, event: LegEvent, facts: MirrorFacts): Outcome {
  if (state === "removed") {
    return event.t === "suspend" || event.t === "resume" || event.t === "clean" ||
        event.t === "dirty"
      ? { kind: "refuse", why: "the leg was removed from the mirror" }
      : IGNORE;
  }
  switch (event.t) {
    case "failed":
      if (state === "in-sync") return move("out", event.why, "track", ["rotate"]);
      if (state === "rebuilding") return move("out", event.why, "track", ["stop-resync"]);
      if (state === "judging") return move("out", event.why, "keep", []);
      return IGNORE;

    case "reachable":
      return state === "out" ? move("judging", "judging its media", "keep", ["judge"]) : IGNORE;

    case "judged":
      return judged(state, event.verdict, facts);

    case "resynced":
      return state === "rebuilding"
        ? move("in-sync", undefined, "none", ["stop-resync", "settle-bitmap"])
        : IGNORE;

    case "resync-failed":
      return state === "rebuilding" ? move("out", event.why, "track", ["stop-resync"]) : IGNORE;

    case "suspend":
      if (state === "suspended") return IGNORE;
      if (state === "in-sync") {
        if (tooFew(facts)) {
          return {
            kind: "refuse",
            why: `${last(facts)}: suspending it would stop the storage`,
          };
        }
        return move("suspended", "suspended by the administrator", "track", ["rotate"]);
      }
      return move(
        "suspended",
        "suspended by the administrator",
        state === "rebuilding" ? "track" : "keep",
        stopping(state),
      );

    case "resume":
      return state === "suspended" || state === "out" || state === "split-brain"
        ? move("judging", "judging its media", "keep", ["judge"])
        : IGNORE;

    case "clean":
      if (state === "in-sync") return IGNORE;
      if (!event.force && (state === "split-brain" || !facts.lacksNothing)) {
        return {
          kind: "refuse",
          why: state === "split-brain"
            ? "its data was written apart from the others (split brain): marking it clean " +
              "serves its writes and hides theirs; to do that anyway use --force, or mark the " +
              "side to discard dirty"
            : "it missed writes the other legs hold (or they are not known): marking it clean " +
              "would serve old data where it missed them; let its resync finish, or use " +
              "--force to accept its data as it is",
        };
      }
      return move("in-sync", undefined, "none", [...stopping(state), "stamp", "rotate"], true);

    case "dirty":
      if (tooFew(facts)) {
        return {
          kind: "refuse",
          why: state === "in-sync"
            ? `${last(facts)}: there is nothing to resync it from`
            : (facts.needInSync ?? 1) === 1
            ? "no leg is in sync to resync it from: mark the leg to keep clean first"
            : "too few legs are in sync to resync it from: mark the legs to keep clean first",
        };
      }
      return move(
        "judging",
        "marked dirty by the administrator",
        "full",
        [...(state === "in-sync" ? ["rotate" as const] : stopping(state)), "forget-media"],
        true,
      );

    case "mismatch":
      if (state !== "in-sync") return IGNORE;
      if (tooFew(facts)) {
        return {
          kind: "refuse",
          why: `${last(facts)}: there is nothing to repair it from`,
        };
      }
      return move("judging", event.why, "event", ["rotate", "judge"]);

    case "remove":
      if (state === "in-sync" && tooFew(facts)) {
        return {
          kind: "refuse",
          why: `${last(facts)}: removing it would stop the storage`,
        };
      }
      if (facts.otherLegs === 0) return { kind: "refuse", why: "a mirror keeps at least one leg" };
      return move("removed", "removed by the administrator", "keep", [
        ...(state === "in-sync" ? ["rotate" as const] : stopping(state)),
        "close",
      ]);
  }
}

function judged(state: LegState, verdict: Verdict, facts: MirrorFacts): Outcome {
  if (state !== "judging") return IGNORE;
  switch (verdict.kind) {
    case "resync":
      if (tooFew(facts)) {
        return move("out", "waiting for an in-sync leg to copy from", "verdict", [], verdict.adopt);
      }
      return move("rebuilding", undefined, "verdict", ["start-resync"], verdict.adopt);
    case "refuse":
      return move("split-brain", verdict.why, "keep", []);
    case "out":
      return move("out", verdict.why, "keep", []);
    case "readmit":
      if (facts.othersInSync > 0) {
        return { kind: "invalid", why: "a leg was taken back while other legs were in sync" };
      }
      // The others are not in sync: the next write takes a new generation, as after any leave.
      return move("in-sync", undefined, "none", ["rotate"]);
    case "reference":
      return move("in-sync", undefined, "none", []);
  }
}
