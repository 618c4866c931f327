/** A block device hosted as an actor and reached through BlockClient passes the same suite. */
import assert from "node:assert/strict";
import { ActorSystem } from "../runtime/system.ts";
import { BlockClient, spawnBlockActor } from "./actor.ts";
import { runBlockConformance } from "../../tests/support/block_conformance.ts";
import { BlockError } from "./contract.ts";
import { MemoryBlockDevice } from "./memory.ts";

const SIZE = 16 * 1024 * 1024;

runBlockConformance("actor(memory)", async ({ readOnly }) => {
  const system = new ActorSystem({ node: "test" });
  const ref = spawnBlockActor(system, new MemoryBlockDevice({ size: SIZE, readOnly }));
  const client = await BlockClient.connect(system, ref);
  return { device: client, dispose: () => system.shutdown() };
});

Deno.test("a stopped block actor fails its callers with ESHUTDOWN, not a hang", async () => {
  const system = new ActorSystem({ node: "test" });
  try {
    const ref = spawnBlockActor(system, new MemoryBlockDevice({ size: SIZE }));
    const client = await BlockClient.connect(system, ref, 1000);
    await client.close();
    await assert.rejects(
      client.read(0, 4096),
      (e) => e instanceof BlockError && e.code === "ESHUTDOWN" && /not running/.test(e.message),
    );
  } finally {
    await system.shutdown();
  }
});
