/**
 * Owner claims on a real node over a Unix socket: a node nobody claimed admits anyone; once
 * claimed, changes from any other link fail with EFENCED naming the owner (reads go on); a
 * higher claim wins and fences the old owner, an equal one of another owner is refused; the
 * grant is durable across a node restart; a proxy claims again on every new link (its claim
 * survives reconnects, a stale one learns it is fenced); a claim is answered only after the
 * old owner's changes in flight have finished, and writes pipelined behind a claim are judged
 * under it.
 */
import assert from "node:assert/strict";
import { type BlockDevice, BlockError } from "../block/contract.ts";
import { FileBlockDevice } from "../block/file.ts";
import { guard } from "../block/guard.ts";
import { MemoryBlockDevice } from "../block/memory.ts";
import type { OwnerGrant } from "../block/owner_grant.ts";
import { RemoteNode } from "./proxy.ts";
import { serveNode } from "./server.ts";

const MiB = 1024 * 1024;
const quick = { backoff: { initialMs: 10, maxMs: 50 }, connectTimeoutMs: 5000 };

const grant = (epoch: number, who: string): OwnerGrant => ({
  epoch,
  owner: who.repeat(32).slice(0, 32),
  label: `exporter-${who}`,
});
const A1 = grant(1, "a");
const B2 = grant(2, "b");

const isFenced = (pattern?: RegExp) => (e: unknown) =>
  e instanceof BlockError && e.code === "EFENCED" && (pattern?.test(e.message) ?? true);

async function withNode(
  device: BlockDevice,
  fn: (url: string, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dst-claim-" });
  const server = await serveNode(`unix://${dir}/n.sock`, device, { node: "leg" });
  try {
    await fn(server.url, dir);
  } finally {
    await server.close();
    await device.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const page = (b: number) => new Uint8Array(4096).fill(b);

Deno.test("claim: once claimed, changes from other links are fenced; a higher claim wins", async () => {
  await withNode(new MemoryBlockDevice({ size: MiB }), async (url) => {
    const a = await RemoteNode.connect(url, { node: "a", ...quick });
    const b = await RemoteNode.connect(url, { node: "b", ...quick });
    try {
      await b.write(0, page(1), false); // nobody claimed it: anyone may write
      assert.deepEqual(await a.claim(A1), { granted: true, current: A1 });
      await a.write(0, page(2), false);
      await assert.rejects(b.write(0, page(3), false), isFenced(/exporter-a/));
      assert.equal((await b.read(0, 4096))[0], 2, "reads go on for anyone");
      assert.deepEqual(await b.claim(B2), { granted: true, current: B2 });
      await b.write(0, page(4), true);
      for (
        const [what, op] of [
          ["write", () => a.write(0, page(5), false)],
          ["flush", () => a.flush()],
          ["trim", () => a.trim(0, 4096, false)],
          ["zero", () => a.zero(0, 4096, { fua: false, fastZero: false, mayTrim: false })],
          ["setmedia", () => a.updateMedia({ flags: 7 })],
          ["wbitmap", () => a.storeBitmap(0, new Uint8Array(8))],
        ] as const
      ) {
        await assert.rejects(op(), isFenced(/belongs to epoch 2 \(owner exporter-b\)/), what);
      }
      assert.equal((await a.read(0, 4096))[0], 4, "nothing of the fenced owner landed");
      const equal = await a.claim({ ...B2, owner: A1.owner, label: "a again" });
      assert.equal(equal.granted, false, "an equal epoch of another owner is refused");
      assert.deepEqual(equal.current, B2);
      assert.equal((await a.claim(A1)).granted, false, "a lower epoch is refused");
    } finally {
      await a.close();
      await b.close();
    }
  });
});

Deno.test("claim: the grant is kept on file media across a node restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dst-claim-" });
  const path = `${dir}/m.img`;
  try {
    await withNode(guard(await FileBlockDevice.create({ path, size: MiB })), async (url) => {
      const b = await RemoteNode.connect(url, { node: "b", ...quick });
      assert.equal((await b.claim(B2)).granted, true);
      await b.close();
    });
    await withNode(guard(await FileBlockDevice.open({ path })), async (url) => {
      const a = await RemoteNode.connect(url, { node: "a", ...quick });
      assert.deepEqual((await a.claim(A1)).current, B2, "the restarted node remembers epoch 2");
      await assert.rejects(a.write(0, page(1), false), isFenced());
      const b = await RemoteNode.connect(url, { node: "b", ...quick });
      assert.equal((await b.claim(B2)).granted, true, "its owner claims it again");
      await b.write(0, page(1), true);
      await a.close();
      await b.close();
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("claim: a proxy claims again on a new link; a stale one is told it is fenced", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dst-claim-" });
  const path = `${dir}/m.img`;
  const url = `unix://${dir}/n.sock`;
  let device = await FileBlockDevice.create({ path, size: MiB });
  let server = await serveNode(url, guard(device), { node: "leg" });
  /** The node process "restarts": server and media closed, opened again. */
  const restart = async () => {
    await server.close();
    await device.close();
    device = await FileBlockDevice.open({ path });
    server = await serveNode(url, guard(device), { node: "leg" });
  };
  const fenced: string[] = [];
  const a = await RemoteNode.connect(url, { node: "a", ...quick, onFenced: (w) => fenced.push(w) });
  const b = await RemoteNode.connect(url, { node: "b", ...quick });
  try {
    assert.equal((await a.claim(A1)).granted, true);
    await restart(); // both proxies reconnect on their own
    await a.write(0, page(1), true); // waits for the link, claims again first, then writes
    assert.equal(a.grant, A1);
    assert.equal((await b.claim(B2)).granted, true);
    await restart();
    await assert.rejects(a.write(0, page(2), true), isFenced());
    assert.ok(fenced.some((w) => /belongs to epoch 2/.test(w)), `told: ${fenced.join("; ")}`);
    assert.ok(a.fenced !== undefined);
    await b.write(0, page(3), true);
    assert.equal((await b.read(0, 4096))[0], 3);
  } finally {
    await a.close();
    await b.close();
    await server.close();
    await device.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A device whose writes wait at a gate the test opens. */
class GatedDevice extends MemoryBlockDevice {
  gate = Promise.withResolvers<void>();
  entered = Promise.withResolvers<void>();
  override async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    this.entered.resolve();
    await this.gate.promise;
    return super.write(offset, data, fua);
  }
}

Deno.test("claim: answered only once the old owner's writes in flight have finished", async () => {
  const device = new GatedDevice({ size: MiB });
  await withNode(device, async (url) => {
    const a = await RemoteNode.connect(url, { node: "a", ...quick });
    const b = await RemoteNode.connect(url, { node: "b", ...quick });
    try {
      assert.equal((await a.claim(A1)).granted, true);
      const slow = a.write(0, page(9), false);
      await device.entered.promise;
      let answered = false;
      const claimed = b.claim(B2).then((r) => (answered = true, r));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(answered, false, "the claim waits for the write admitted before it");
      await assert.rejects(a.write(4096, page(8), false), isFenced(), "new writes are refused");
      device.gate.resolve();
      await slow;
      assert.equal((await claimed).granted, true);
      assert.equal((await b.read(0, 4096))[0], 9, "the old write landed before the claim");
    } finally {
      device.gate.resolve();
      await a.close();
      await b.close();
    }
  });
});

Deno.test("claim: writes pipelined right behind a claim on the same link are judged under it", async () => {
  await withNode(new MemoryBlockDevice({ size: MiB }), async (url) => {
    const a = await RemoteNode.connect(url, { node: "a", ...quick });
    const b = await RemoteNode.connect(url, { node: "b", ...quick });
    try {
      assert.equal((await a.claim(A1)).granted, true);
      const claim = b.claim(B2);
      const writes = [0, 1, 2, 3].map((i) => b.write(i * 4096, page(i + 1), false));
      assert.equal((await claim).granted, true);
      await Promise.all(writes);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
