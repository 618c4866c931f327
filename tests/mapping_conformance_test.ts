/**
 * Mappings meet the same block contract as nodes: the conformance suite runs against linear,
 * mirror, linear-of-mirrors and mirror-of-linears, each composed of block actors reached by ref.
 */
import { ActorSystem } from "../actors/runtime/system.ts";
import { BlockClient, spawnBlockActor } from "../actors/block/actor.ts";
import { composed } from "./support/composed_conformance.ts";
import type { BlockDevice } from "../actors/block/contract.ts";
import { guard } from "../actors/block/guard.ts";
import { LinearMapping } from "../actors/linear/linear.ts";
import { spawnMirror } from "../actors/mirror/mod.ts";

const MiB = 1024 * 1024;

const asActor = async (system: ActorSystem, device: BlockDevice) =>
  BlockClient.connect(system, spawnBlockActor(system, guard(device)));

composed(
  "linear",
  async (_s, leaf) =>
    new LinearMapping([await leaf(5 * MiB), await leaf(3 * MiB), await leaf(8 * MiB)]),
);

/** A mirror actor over `legs`; the caller gets its block client. */
const mirror = async (system: ActorSystem, legs: BlockDevice[]) =>
  (await spawnMirror(system, legs, { probeMs: 0 })).device;

composed(
  "mirror",
  async (system, leaf) =>
    mirror(system, [await leaf(16 * MiB), await leaf(16 * MiB), await leaf(16 * MiB)]),
);

composed("linear-of-mirrors", async (system, leaf) =>
  new LinearMapping([
    await mirror(system, [await leaf(8 * MiB), await leaf(8 * MiB)]),
    await mirror(system, [await leaf(8 * MiB), await leaf(9 * MiB)]),
  ]));

composed("mirror-of-linears", async (system, leaf) =>
  mirror(system, [
    await asActor(system, new LinearMapping([await leaf(6 * MiB), await leaf(10 * MiB)])),
    await asActor(system, new LinearMapping([await leaf(12 * MiB), await leaf(4 * MiB)])),
  ]));
