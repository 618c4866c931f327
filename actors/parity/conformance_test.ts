/**
 * A parity storage meets the block contract: the conformance suite over 3, 4 and 5 legs (legs
 * as block actors reached by ref), over odd stripe units, and as a leg of a mirror and over
 * mirrors as its legs.
 */
import type { ActorSystem } from "../runtime/system.ts";
import { composed } from "../../tests/support/composed_conformance.ts";
import type { BlockDevice } from "../block/contract.ts";
import { spawnMirror } from "../mirror/mod.ts";
import { spawnParity } from "./mod.ts";

const MiB = 1024 * 1024;

const parity = async (system: ActorSystem, legs: BlockDevice[], unit?: number) =>
  (await spawnParity(system, legs, { probeMs: 0, ...(unit === undefined ? {} : { unit }) }))
    .device;

const legs = (n: number, size: number, leaf: (size: number) => Promise<BlockDevice>) =>
  Promise.all(Array.from({ length: n }, () => leaf(size)));

composed("parity 3 legs", async (s, leaf) => parity(s, await legs(3, 8 * MiB, leaf)));
composed("parity 4 legs", async (s, leaf) => parity(s, await legs(4, 6 * MiB, leaf)));
composed(
  "parity 5 legs, 4 KiB unit",
  async (s, leaf) => parity(s, await legs(5, 4 * MiB, leaf), 4096),
);
composed(
  "parity of legs of different sizes",
  async (s, leaf) =>
    parity(s, [await leaf(8 * MiB), await leaf(9 * MiB + 12345), await leaf(10 * MiB)]),
);

composed("mirror of parities", async (system, leaf) => {
  const a = await parity(system, await legs(3, 8 * MiB, leaf));
  const b = await parity(system, await legs(3, 8 * MiB, leaf));
  return (await spawnMirror(system, [a, b], { probeMs: 0 })).device;
});

composed("parity of mirrors", async (system, leaf) => {
  const mirror = async () =>
    (await spawnMirror(system, [await leaf(8 * MiB), await leaf(8 * MiB)], { probeMs: 0 }))
      .device;
  return parity(system, [await mirror(), await mirror(), await mirror()]);
});
