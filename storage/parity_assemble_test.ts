/**
 * A topology of kind "parity" assembles into a working storage: over file legs (its data kept
 * across a restart, its tree and state shown like a mirror's), as a leg of a mirror and over
 * mirrors as its legs, and legs of different sizes give K units per row of the smallest.
 */
import assert from "node:assert/strict";
import { ActorSystem } from "../actors/runtime/system.ts";
import { assemble } from "./assemble.ts";
import { parseTopology } from "./topology.ts";

const MiB = 1024 * 1024;

function bytes(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return out;
}

async function withStorage(
  json: unknown,
  dir: string,
  fn: (s: Awaited<ReturnType<typeof assemble>>) => Promise<void>,
) {
  const system = new ActorSystem({ node: "test" });
  const storage = await assemble(parseTopology(json), { system, node: "test", baseDir: dir });
  try {
    await fn(storage);
  } finally {
    await storage.close();
    await system.shutdown();
  }
}

Deno.test("parity over file legs: serves, keeps its data across a restart, shows its state", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dst-parity-" });
  const topology = {
    storage: "p",
    nodes: {
      p: { kind: "parity", legs: ["a", "b", "c", "d"], unit: "16K", chunkSize: "64K" },
      ...Object.fromEntries(
        ["a", "b", "c", "d"].map((n) => [n, { kind: "file", path: `${n}.img`, size: "4M" }]),
      ),
    },
  };
  const data = bytes(3, 3 * MiB + 12345);
  try {
    let size = 0;
    await withStorage(topology, dir, async (s) => {
      size = s.device.info().size;
      await s.device.write(777, data, false);
      await s.device.flush();
      assert.equal(s.tree.kind, "parity");
      assert.equal(s.tree.children.length, 4);
      assert.deepEqual(await s.device.read(777, data.length), data);
    });
    // Three units' worth of each leg's data area (the media keeps metadata at its start).
    assert.ok(size > 0 && size % (3 * 16 * 1024) === 0, `size ${size}`);
    await withStorage(topology, dir, async (s) => {
      assert.equal(s.device.info().size, size);
      assert.deepEqual(await s.device.read(777, data.length), data);
      for (let i = 0; i < 100 && s.tree.state().state !== "in-sync"; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(s.tree.state().state, "in-sync");
      // A leg marked dirty is rebuilt from the others; control reaches parity legs.
      await s.control.dirty("b");
      for (let i = 0; i < 250 && s.tree.state().state !== "in-sync"; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(s.tree.state().state, "in-sync");
      assert.match((await s.control.verify("p")).message, /every stripe's parity matches/);
      await assert.rejects(
        s.control.addLeg("p", "e", { kind: "memory", size: "4M" }),
        /a parity storage keeps its legs/,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parity as a mirror leg, and mirrors as parity legs", async () => {
  const mem = (size: string) => ({ kind: "memory", size });
  await withStorage(
    {
      storage: "m",
      nodes: {
        m: { kind: "mirror", legs: ["p", "z"] },
        p: { kind: "parity", legs: ["a", "b", "c"] },
        a: mem("2M"),
        b: mem("2M"),
        c: mem("2M"),
        z: mem("4M"),
      },
    },
    "/tmp",
    async (s) => {
      assert.equal(s.device.info().size, 4 * MiB);
      const data = bytes(1, 4 * MiB);
      await s.device.write(0, data, false);
      assert.deepEqual(await s.device.read(0, 4 * MiB), data);
    },
  );
  await withStorage(
    {
      storage: "p",
      nodes: {
        p: { kind: "parity", legs: ["m0", "m1", "m2"], unit: "4K" },
        m0: { kind: "mirror", legs: ["a", "b"] },
        m1: { kind: "mirror", legs: ["c", "d"] },
        m2: { kind: "mirror", legs: ["e", "f"] },
        ...Object.fromEntries(["a", "b", "c", "d", "e", "f"].map((n) => [n, mem("1M")])),
      },
    },
    "/tmp",
    async (s) => {
      assert.equal(s.device.info().size, 2 * MiB);
      const data = bytes(2, 2 * MiB - 5000);
      await s.device.write(5000, data, false);
      assert.deepEqual(await s.device.read(5000, data.length), data);
    },
  );
});

Deno.test("parity legs of different sizes give K units per row of the smallest", async () => {
  await withStorage(
    {
      storage: "p",
      nodes: {
        p: { kind: "parity", legs: ["a", "b", "c"] },
        a: { kind: "memory", size: 1 * MiB + 100 },
        b: { kind: "memory", size: "3M" },
        c: { kind: "memory", size: "2M" },
      },
    },
    "/tmp",
    (s) => {
      assert.equal(s.device.info().size, 2 * MiB);
      return Promise.resolve();
    },
  );
});
