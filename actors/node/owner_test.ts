/**
 * An exporter's Ownership over real node servers (in-memory transport): starting, it raises its
 * epoch past what a node holds and claims every node again (the last start wins); once it
 * holds, a refusal fences it. A storage served as a node passes its parent's epoch down to its
 * own nodes, so a newer parent fences an older one below too; a parent's claim that the nodes
 * refuse comes back as EFENCED.
 */
import assert from "node:assert/strict";
import { BlockError } from "../block/contract.ts";
import { MemoryBlockDevice } from "../block/memory.ts";
import { MemoryTransport } from "../../transport/memory.ts";
import { Ownership, parentGrants } from "./owner.ts";
import { RemoteNode } from "./proxy.ts";
import { type NodeServer, serveNode } from "./server.ts";

const transports = [new MemoryTransport()];
const MiB = 1024 * 1024;

async function nodes(n: number): Promise<NodeServer[]> {
  return await Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        serveNode(`mem://own-${crypto.randomUUID()}`, new MemoryBlockDevice({ size: MiB }), {
          node: `leg${i}`,
          transports,
        }),
    ),
  );
}

async function exporter(label: string, servers: NodeServer[]) {
  const ownership = new Ownership(label);
  const fenced: string[] = [];
  ownership.onFenced((why) => fenced.push(why));
  const remotes = await Promise.all(servers.map((s) =>
    RemoteNode.connect(s.url, {
      node: label,
      transports,
      owner: () => ownership.grant(),
      onFenced: (why) => ownership.fence(why),
    })
  ));
  for (const r of remotes) await ownership.attach(r);
  ownership.hold();
  return { ownership, remotes, fenced, close: () => Promise.all(remotes.map((r) => r.close())) };
}

Deno.test("ownership: the last exporter started raises past the nodes and fences the first", async () => {
  const servers = await nodes(3);
  try {
    const first = await exporter("first", servers);
    assert.equal(first.ownership.epoch, 1);
    const second = await exporter("second", servers);
    assert.equal(second.ownership.epoch, 2, "raised past the epoch the nodes hold");
    assert.deepEqual(servers.map((s) => s.grant.label), ["second", "second", "second"]);
    await assert.rejects(
      first.remotes[0]!.write(0, new Uint8Array(4096), true),
      (e: unknown) => e instanceof BlockError && e.code === "EFENCED",
    );
    assert.equal(first.fenced.length, 1, "the first learns it was fenced");
    assert.match(first.ownership.fenced!, /belongs to epoch 2 \(owner second\)/);
    await second.remotes[1]!.write(0, new Uint8Array(4096), true);
    await first.close();
    await second.close();
  } finally {
    for (const s of servers) await s.close();
  }
});

Deno.test("ownership: a storage served as a node passes its parent's epoch down", async () => {
  const legs = await nodes(2);
  const device = new MemoryBlockDevice({ size: MiB }); // stands for the middle storage
  const middles: NodeServer[] = [];
  try {
    const m1 = await exporter("middle-1", legs);
    const m2 = await exporter("middle-2", legs); // both over the same legs: m2 holds them
    assert.equal(m2.ownership.epoch, 2);
    for (const [m, name] of [[m1, "m1"], [m2, "m2"]] as const) {
      middles.push(
        await serveNode(`mem://mid-${name}-${crypto.randomUUID()}`, device, {
          node: name,
          transports,
          grants: parentGrants(m.ownership),
        }),
      );
    }
    // A parent claims the middle holding the legs with epoch 9: the legs now hold 9.
    const p9 = await RemoteNode.connect(middles[1]!.url, { node: "parent-9", transports });
    const grant9 = { epoch: 9, owner: "9".repeat(32), label: "parent-9" };
    assert.equal((await p9.claim(grant9)).granted, true);
    assert.deepEqual(legs.map((l) => l.grant.epoch), [9, 9]);
    assert.equal(m2.ownership.epoch, 9);
    // An older parent going through the other middle (fenced when m2 took the legs) is
    // refused, as EFENCED: it cannot reach the legs through a middle that lost them.
    const p5 = await RemoteNode.connect(middles[0]!.url, { node: "parent-5", transports });
    await assert.rejects(
      p5.claim({ epoch: 5, owner: "5".repeat(32), label: "parent-5" }),
      (e: unknown) => e instanceof BlockError && e.code === "EFENCED",
    );
    assert.ok(m1.ownership.fenced !== undefined, "the middle of the older parent is fenced");
    assert.deepEqual(legs.map((l) => l.grant.epoch), [9, 9], "the legs stay with the newer");
    await Promise.all([p9.close(), p5.close(), m1.close(), m2.close()]);
  } finally {
    for (const s of [...middles, ...legs]) await s.close();
  }
});
