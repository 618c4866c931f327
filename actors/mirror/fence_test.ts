/**
 * A fenced mirror: its legs are real node servers (in-memory transport) that exporter A claimed;
 * exporter B claims one of them. A's next write hears EFENCED from that leg: the write fails,
 * no leg is marked out (the leg is not at fault), and from then on every client request fails
 * at once, reaching no leg; closing stamps nothing. The exporter can also fence its mirror
 * itself (a lost lease), and an acknowledgement after fencing breaks an invariant.
 */
import assert from "node:assert/strict";
import { type BlockDevice, BlockError } from "../block/contract.ts";
import { MemoryBlockDevice } from "../block/memory.ts";
import type { OwnerGrant } from "../block/owner_grant.ts";
import { RemoteNode } from "../node/proxy.ts";
import { type NodeServer, serveNode } from "../node/server.ts";
import { ActorSystem } from "../runtime/system.ts";
import { MemoryTransport } from "../../transport/memory.ts";
import { MemoryLogger } from "../../util/log.ts";
import { checkAcknowledged, InvariantError } from "./invariants.ts";
import { type Mirror, spawnMirror } from "./mod.ts";
import { newLeg } from "./leg.ts";

const MiB = 1024 * 1024;
const transports = [new MemoryTransport()];
const grant = (epoch: number, who: string): OwnerGrant => ({
  epoch,
  owner: who.repeat(32).slice(0, 32),
  label: `exporter-${who}`,
});
const page = (b: number) => new Uint8Array(4096).fill(b);
const isFenced = (e: unknown) => e instanceof BlockError && e.code === "EFENCED";

interface Rig {
  nodes: MemoryBlockDevice[];
  servers: NodeServer[];
  remotes: RemoteNode[];
  mirror: Mirror;
  system: ActorSystem;
  logger: MemoryLogger;
  fenced: string[];
  close(): Promise<void>;
}

async function rig(): Promise<Rig> {
  const nodes = [0, 1, 2].map(() => new MemoryBlockDevice({ size: MiB }));
  const servers = await Promise.all(
    nodes.map((d, i) =>
      serveNode(`mem://fence-${crypto.randomUUID()}`, d, { node: `leg${i}`, transports })
    ),
  );
  const remotes = await Promise.all(
    servers.map((s) => RemoteNode.connect(s.url, { node: "a", transports, ioTimeoutMs: 0 })),
  );
  for (const r of remotes) assert.equal((await r.claim(grant(1, "a"))).granted, true);
  const logger = new MemoryLogger();
  const system = new ActorSystem({ node: "a", log: logger });
  const fenced: string[] = [];
  const mirror = await spawnMirror(system, remotes, {
    media: remotes,
    logger,
    probeMs: 0,
    activityIdleMs: 50,
    chunkSize: 64 * 1024,
    onFenced: (r) => fenced.push(r.why),
  });
  return {
    nodes,
    servers,
    remotes,
    mirror,
    system,
    logger,
    fenced,
    close: async () => {
      await mirror.close();
      await system.shutdown();
      for (const s of servers) await s.close();
    },
  };
}

Deno.test("fence: a leg claimed by another exporter fences the mirror, not the leg", async () => {
  const r = await rig();
  try {
    const device: BlockDevice = r.mirror.device;
    await device.write(0, page(1), true);
    // Exporter B takes leg1 over.
    const b = await RemoteNode.connect(r.servers[1]!.url, { node: "b", transports });
    assert.equal((await b.claim(grant(2, "b"))).granted, true);
    await assert.rejects(device.write(0, page(2), true), isFenced);
    assert.equal(r.mirror.fenced()?.why.includes("exporter-b"), true, r.mirror.fenced()?.why);
    assert.deepEqual(r.fenced.length, 1, "told once");
    assert.deepEqual(
      r.mirror.legs().map((l) => l.state),
      ["in-sync", "in-sync", "in-sync"],
      "no leg was marked out for being fenced",
    );
    // From now on nothing reaches any leg: data on the legs B does not own stays as it was.
    const before = await Promise.all(r.nodes.map((n) => n.read(0, 8192)));
    for (
      const op of [
        () => device.write(4096, page(3), false),
        () => device.flush(),
        () => device.trim(0, 4096, false),
        () => device.zero(0, 4096, { fua: false, fastZero: false, mayTrim: false }),
        () => device.read(0, 4096),
      ]
    ) await assert.rejects(op(), isFenced);
    const after = await Promise.all(r.nodes.map((n) => n.read(0, 8192)));
    assert.deepEqual(after, before);
    const media = await Promise.all(r.nodes.map((n) => n.media()));
    await r.mirror.close();
    assert.deepEqual(await Promise.all(r.nodes.map((n) => n.media())), media, "nothing stamped");
    assert.ok(r.logger.entries.some((e) => /mirror fenced/.test(e.message)));
    await b.close();
  } finally {
    await r.close();
  }
});

Deno.test("fence: the exporter fences its mirror itself when it loses ownership", async () => {
  const r = await rig();
  try {
    await r.mirror.device.write(0, page(1), true);
    r.mirror.fence("the election lease was lost");
    await assert.rejects(
      r.mirror.device.write(0, page(2), true),
      (e: unknown) => isFenced(e) && /election lease was lost/.test((e as Error).message),
    );
    assert.equal((await r.nodes[0]!.read(0, 4096))[0], 1);
  } finally {
    await r.close();
  }
});

Deno.test("fence: an acknowledgement after fencing is a broken invariant", () => {
  const leg = newLeg("leg0", new MemoryBlockDevice({ size: MiB }), undefined, 0);
  checkAcknowledged([leg], new Set(), "write");
  assert.throws(
    () => checkAcknowledged([], new Set(), "write", { why: "claimed by b" }),
    (e: unknown) => e instanceof InvariantError && /after fencing \(claimed by b\)/.test(String(e)),
  );
});
