/**
 * Parity with real processes: `dst serve` with a parity storage (RAID 5, 64 KiB units) over
 * three file-backed `dst node` processes, a real NBD client writing self-describing blocks. A
 * leg killed with SIGKILL: reads of its units are reconstructed, writes go on, and once it is
 * back it is rebuilt from the bitmap (only what it missed); a leg on new media is rebuilt in
 * full; `dst serve` killed mid-load repairs the stripes its writes left marked (the write hole)
 * at the next start. Afterwards each leg's media is read straight from its file: every stripe
 * adds up, and every acknowledged write reads back.
 */
import assert from "node:assert/strict";
import { xorInto } from "../actors/parity/xor.ts";
import { skipWithout } from "./support/nbd_harness.ts";
import {
  ackedWrites,
  assertStamps,
  copied,
  legData,
  MiB,
  mustFinish,
  readBack,
  type Rig,
  SIZE,
  startNode,
  startServe,
  waitInSync,
  waitState,
  withRig,
  writeRound,
} from "./support/mirror_rig.ts";

/** Three legs of SIZE: two legs' worth of data. */
const DEVICE = 2 * SIZE;
const UNIT = 64 * 1024;
const PARITY = { kind: "parity" } as const;

/** A rig whose storage is a parity over the three legs. */
function withParity(fn: (rig: Rig) => Promise<void>): Promise<void> {
  return withRig(async (rig) => {
    await waitInSync(rig);
    await fn(rig);
  }, PARITY);
}

/** Every stripe of the legs' data areas XORs to zero. */
function assertStripesAddUp(data: Uint8Array[]): void {
  const sum = new Uint8Array(SIZE);
  for (const d of data) xorInto(sum, d);
  for (let at = 0; at < SIZE; at += UNIT) {
    assert.ok(sum.subarray(at, at + UNIT).every((b) => b === 0), `stripe ${at / UNIT} adds up`);
  }
}

Deno.test({
  name:
    "parity: a leg killed -9 is reconstructed on reads, misses writes, and is rebuilt from the bitmap",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withParity(async (rig) => {
      await mustFinish(await writeRound(rig, DEVICE, 0));
      const before = copied(await waitInSync(rig), "leg2");
      await rig.nodes.get("leg2")!.stop("SIGKILL");
      await waitState(rig, (s) => s === "degraded");
      // Degraded: reads of leg2's units are rebuilt from the others; writes go on.
      const degraded = await readBack(rig, DEVICE);
      assert.ok(degraded.ok, degraded.error);
      assertStamps(degraded.data, () => [0]);
      await mustFinish(await writeRound(rig, 3 * MiB, 1)); // 3 MiB of data: 2 chunks of rows
      rig.nodes.set("leg2", await startNode(rig, "leg2"));
      const after = copied(await waitInSync(rig), "leg2");
      // Device bytes [0, 3 MiB) lie in leg bytes [0, 1.5 MiB): chunks 0 and 1 of each leg.
      assert.equal(after - before, 2 * MiB, "only the chunks it missed were rebuilt");
      // Reported as a mirror's resync is: the leg's counters in /metrics, its state in the tree.
      const metrics = await (await fetch(`${rig.status.replace(/\/$/, "")}/metrics`)).text();
      assert.match(metrics, /dst_leg_copied_bytes_total\{storage="m",mirror="m",leg="leg2"\} \d+/);
      assert.match(
        metrics,
        /dst_node_state\{storage="m",node="m",kind="parity",state="in-sync"\} 1/,
      );
      const back = await readBack(rig, DEVICE);
      assert.ok(back.ok, back.error);
      assertStamps(back.data, (at) => (at < 3 * MiB ? [1] : [0]));
      assertStripesAddUp(await legData(rig));
    }),
});

Deno.test({
  name: "parity: a leg on new media is rebuilt in full from the others",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withParity(async (rig) => {
      await mustFinish(await writeRound(rig, DEVICE, 0));
      const before = copied(await waitInSync(rig), "leg0");
      await rig.nodes.get("leg0")!.stop("SIGKILL");
      await Deno.remove(`${rig.dir}/leg0.img`);
      await waitState(rig, (s) => s !== "in-sync");
      rig.nodes.set("leg0", await startNode(rig, "leg0")); // new media: no age of the storage
      const after = copied(await waitInSync(rig, 60_000), "leg0");
      assert.equal(after - before, SIZE, "every chunk of the leg was rebuilt");
      const back = await readBack(rig, DEVICE);
      assert.ok(back.ok, back.error);
      assertStamps(back.data, () => [0]);
      assertStripesAddUp(await legData(rig));
    }),
});

const WRITE = 16 * 1024;

Deno.test({
  name: "parity: dst serve killed -9 mid-load repairs the stripes it left marked at the next start",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withParity(async (rig) => {
      await mustFinish(await writeRound(rig, DEVICE, 0));
      await waitInSync(rig);
      const serve = rig.serve!;
      let killed: Promise<{ code: number; stderr: string }> | undefined;
      const acked = await ackedWrites(rig, {
        bytes: DEVICE,
        write: WRITE,
        seq: 1,
        depth: 32,
        shuffle: 777,
      }, (n) => {
        if (n >= 200) killed ??= serve.stop("SIGKILL");
      });
      await killed;
      assert.ok(acked.size >= 200 && acked.size < DEVICE / WRITE, `${acked.size} acked`);
      await startServe(rig, undefined, undefined, PARITY);
      await waitInSync(rig);
      const back = await readBack(rig, DEVICE);
      assert.ok(back.ok, back.error);
      assertStamps(back.data, (at) => (acked.has(at - (at % WRITE)) ? [1] : [0, 1]));
      const { stderr } = await rig.serve!.stop();
      rig.serve = undefined;
      assert.match(stderr, /parity of marked stripes recomputed at start/);
      // Every unit rebuilt from the others is what its leg holds.
      assertStripesAddUp(await legData(rig));
    }),
});
