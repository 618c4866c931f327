/** The invariants the mirror asserts, each shown to catch what it names. */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../block/memory.ts";
import { ChunkBits } from "./chunk_bits.ts";
import { checkAcknowledged, checkLegs, InvariantError } from "./invariants.ts";
import { type Leg, newLeg } from "./leg.ts";

function leg(name: string, state: Leg["state"], need?: ChunkBits): Leg {
  const l = newLeg(name, new MemoryBlockDevice({ size: 4096 }), undefined, 0);
  (l as { state: Leg["state"] }).state = state;
  l.need = need;
  return l;
}

const bits = (...set: number[]) => {
  const b = new ChunkBits(16);
  for (const c of set) b.set(c);
  return b;
};

Deno.test("invariant: an in-sync leg lacks nothing", () => {
  checkLegs([leg("a", "in-sync")], bits());
  assert.throws(
    () => checkLegs([leg("a", "in-sync", bits())], bits()),
    (e) => e instanceof InvariantError && /a is in sync while it lacks 0 chunk/.test(e.message),
  );
});

Deno.test("invariant: a leg that is not in sync tracks what it lacks, inside the bitmap", () => {
  checkLegs([leg("b", "out", bits(3))], bits(3, 4));
  assert.throws(
    () => checkLegs([leg("b", "out")], bits()),
    /b is out and its misses are untracked/,
  );
  assert.throws(
    () => checkLegs([leg("b", "rebuilding", bits(3, 9))], bits(3)),
    /b lacks chunk 9 that the bitmap does not mark/,
  );
  checkLegs([leg("c", "removed")], bits());
});

Deno.test("invariant: an acknowledged write is on every in-sync leg", () => {
  const a = leg("a", "in-sync");
  const b = leg("b", "in-sync");
  const c = leg("c", "out", bits(1));
  checkAcknowledged([a, b, c], new Set([a, b]), "write");
  assert.throws(
    () => checkAcknowledged([a, b, c], new Set([a]), "write"),
    /write acknowledged while in-sync leg b did not take it/,
  );
});
