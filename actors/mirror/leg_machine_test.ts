/**
 * The leg transition function, pair by pair: every (state, event) with the other legs in sync
 * and with none, written out as a table so a changed cell is a visible change.
 */
import assert from "node:assert/strict";
import { ChunkBits } from "./chunk_bits.ts";
import {
  LEG_STATES,
  type LegEvent,
  type LegState,
  type MirrorFacts,
  transition,
} from "./leg_machine.ts";

const bits = new ChunkBits(8);
const EVENTS: Record<string, LegEvent> = {
  failed: { t: "failed", why: "EIO" },
  reachable: { t: "reachable" },
  "judged:resync": { t: "judged", verdict: { kind: "resync", need: bits, adopt: false } },
  "judged:refuse": { t: "judged", verdict: { kind: "refuse", why: "split brain" } },
  "judged:out": { t: "judged", verdict: { kind: "out", why: "unreachable" } },
  "judged:readmit": { t: "judged", verdict: { kind: "readmit" } },
  "judged:reference": { t: "judged", verdict: { kind: "reference" } },
  resynced: { t: "resynced" },
  "resync-failed": { t: "resync-failed", why: "target failed" },
  suspend: { t: "suspend" },
  resume: { t: "resume" },
  clean: { t: "clean", force: false },
  "clean!": { t: "clean", force: true },
  dirty: { t: "dirty" },
  mismatch: { t: "mismatch", chunks: bits, why: "verify" },
  remove: { t: "remove" },
};

/** Cell: "-" ignore, "R" refuse, "X" invalid, else the state moved to. */
type Row = Record<keyof typeof EVENTS, string>;

/** Other legs in sync; the leg's misses tracked and it lacks nothing (clean is then safe). */
const WITH_OTHERS: Record<LegState, Row> = {
  "in-sync": row(
    "out",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "suspended",
    "-",
    "-",
    "-",
    "judging",
    "judging",
    "removed",
  ),
  out: row(
    "-",
    "judging",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "suspended",
    "judging",
    "in-sync",
    "in-sync",
    "judging",
    "-",
    "removed",
  ),
  judging: row(
    "out",
    "-",
    "rebuilding",
    "split-brain",
    "out",
    "X",
    "in-sync",
    "-",
    "-",
    "suspended",
    "-",
    "in-sync",
    "in-sync",
    "judging",
    "-",
    "removed",
  ),
  rebuilding: row(
    "out",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "in-sync",
    "out",
    "suspended",
    "-",
    "in-sync",
    "in-sync",
    "judging",
    "-",
    "removed",
  ),
  suspended: row(
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "judging",
    "in-sync",
    "in-sync",
    "judging",
    "-",
    "removed",
  ),
  "split-brain": row(
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "suspended",
    "judging",
    "R",
    "in-sync",
    "judging",
    "-",
    "removed",
  ),
  removed: row("-", "-", "-", "-", "-", "-", "-", "-", "-", "R", "R", "R", "R", "R", "-", "-"),
};

/** No other leg in sync; the leg may lack writes (its misses are not known to be none). */
const ALONE: Record<LegState, Row> = {
  "in-sync": row("out", "-", "-", "-", "-", "-", "-", "-", "-", "R", "-", "-", "-", "R", "R", "R"),
  out: row(
    "-",
    "judging",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "suspended",
    "judging",
    "R",
    "in-sync",
    "R",
    "-",
    "removed",
  ),
  judging: row(
    "out",
    "-",
    "out",
    "split-brain",
    "out",
    "in-sync",
    "in-sync",
    "-",
    "-",
    "suspended",
    "-",
    "R",
    "in-sync",
    "R",
    "-",
    "removed",
  ),
  rebuilding: row(
    "out",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "in-sync",
    "out",
    "suspended",
    "-",
    "R",
    "in-sync",
    "R",
    "-",
    "removed",
  ),
  suspended: row(
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "judging",
    "R",
    "in-sync",
    "R",
    "-",
    "removed",
  ),
  "split-brain": row(
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "suspended",
    "judging",
    "R",
    "in-sync",
    "R",
    "-",
    "removed",
  ),
  removed: row("-", "-", "-", "-", "-", "-", "-", "-", "-", "R", "R", "R", "R", "R", "-", "-"),
};

function row(...cells: string[]): Row {
  const keys = Object.keys(EVENTS);
  assert.equal(cells.length, keys.length);
  return Object.fromEntries(keys.map((k, i) => [k, cells[i]!])) as Row;
}

function cell(state: LegState, event: LegEvent, facts: MirrorFacts): string {
  const o = transition(state, event, facts);
  return o.kind === "move" ? o.to : o.kind === "ignore" ? "-" : o.kind === "refuse" ? "R" : "X";
}

for (
  const [title, table, facts] of [
    ["with other legs in sync", WITH_OTHERS, { othersInSync: 1, otherLegs: 1, lacksNothing: true }],
    ["with no other leg in sync", ALONE, { othersInSync: 0, otherLegs: 1, lacksNothing: false }],
  ] as const
) {
  Deno.test(`leg machine: every (state, event) ${title}`, () => {
    for (const state of LEG_STATES) {
      for (const [name, event] of Object.entries(EVENTS)) {
        assert.equal(
          cell(state, event, facts),
          table[state][name as keyof Row],
          `${state} + ${name} ${title}`,
        );
      }
    }
  });
}

Deno.test("leg machine: a leg that left in-sync takes a rotation and tracks what it lacks", () => {
  const o = transition("in-sync", { t: "failed", why: "EIO" }, {
    othersInSync: 1,
    otherLegs: 1,
    lacksNothing: true,
  });
  assert.ok(o.kind === "move");
  assert.equal(o.need, "track");
  assert.deepEqual(o.effects, ["rotate"]);
});

Deno.test("leg machine: a rebuilding leg that fails stops its resync", () => {
  const o = transition("rebuilding", { t: "failed", why: "EIO" }, {
    othersInSync: 1,
    otherLegs: 1,
    lacksNothing: false,
  });
  assert.ok(o.kind === "move" && o.effects.includes("stop-resync"));
});

Deno.test("leg machine: clean of a leg that may lack writes names --force and the risk", () => {
  const o = transition("out", { t: "clean", force: false }, {
    othersInSync: 1,
    otherLegs: 1,
    lacksNothing: false,
  });
  assert.ok(o.kind === "refuse");
  assert.match(o.why, /--force/);
  assert.match(o.why, /old data/);
});

Deno.test("leg machine: the last leg standing is never suspended, dirtied or removed", () => {
  const facts = { othersInSync: 0, otherLegs: 2, lacksNothing: true };
  for (const t of ["suspend", "dirty", "remove"] as const) {
    const o = transition("in-sync", { t } as LegEvent, facts);
    assert.equal(o.kind, "refuse", t);
  }
  assert.equal(
    transition("out", { t: "remove" }, { othersInSync: 1, otherLegs: 0, lacksNothing: true })
      .kind,
    "refuse",
  );
});
