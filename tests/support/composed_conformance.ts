/**
 * The block conformance suite over a composition (a mapping of mappings): every leaf a memory
 * device hosted as a block actor and reached by ref, the top guarded and hosted the same way, so
 * each level is crossed as it is in a running storage.
 */
import { ActorSystem } from "../../actors/runtime/system.ts";
import { BlockClient, spawnBlockActor } from "../../actors/block/actor.ts";
import type { BlockDevice } from "../../actors/block/contract.ts";
import { guard } from "../../actors/block/guard.ts";
import { MemoryBlockDevice } from "../../actors/block/memory.ts";
import { runBlockConformance } from "./block_conformance.ts";

/** A composition built from leaf sizes, every level hosted as an actor. */
export type Build = (
  system: ActorSystem,
  leaf: (size: number) => Promise<BlockDevice>,
) => Promise<BlockDevice>;

/** Runs the conformance suite as `name` over what `build` composes. */
export function composed(name: string, build: Build): void {
  runBlockConformance(name, async ({ readOnly }) => {
    const system = new ActorSystem({ node: "test" });
    const leaf = (size: number) =>
      BlockClient.connect(
        system,
        spawnBlockActor(system, new MemoryBlockDevice({ size, readOnly })),
      );
    const top = await build(system, leaf);
    const client = await BlockClient.connect(system, spawnBlockActor(system, guard(top)));
    return { device: client, dispose: () => system.shutdown() };
  });
}
