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
import { fillBlock } from "../drill/block_stamps.ts";
import { xorInto } from "../actors/parity/xor.ts";
import { skipWithout } from "./support/nbd_harness.ts";
import { openExport } from "./support/nbd_raw_client.ts";
import {
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

/** Partial-stripe writes of seq `seq` all over the device, `depth` in flight; the acked ones. */
async function ackedWrites(
  rig: Rig,
  seq: number,
  depth: number,
  onAck: (acked: number) => void,
): Promise<Set<number>> {
  const offsets = Array.from({ length: DEVICE / WRITE }, (_, i) => i * WRITE);
  let state = 777;
  for (let i = offsets.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) >>> 0;
    const j = state % (i + 1);
    [offsets[i], offsets[j]] = [offsets[j]!, offsets[i]!];
  }
  const acked = new Set<number>();
  const { client } = await openExport(rig.port);
  const payload = new Uint8Array(WRITE);
  let next = 0;
  let inFlight = 0;
  try {
    while (next < offsets.length || inFlight > 0) {
      while (inFlight < depth && next < offsets.length) {
        const at = offsets[next]!;
        fillBlock(payload, at, 1, seq);
        await client.request(1, next, at, WRITE, { payload });
        next++;
        inFlight++;
      }
      const reply = await client.reply();
      inFlight--;
      if (reply.error === 0) acked.add(offsets[reply.handle]!);
      onAck(acked.size);
    }
  } catch {
    // the server went away: what was acknowledged so far is the record
  } finally {
    client.close();
  }
  return acked;
}

Deno.test({
  name: "parity: dst serve killed -9 mid-load repairs the stripes it left marked at the next start",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withParity(async (rig) => {
      await mustFinish(await writeRound(rig, DEVICE, 0));
      await waitInSync(rig);
      const serve = rig.serve!;
      let killed: Promise<{ code: number; stderr: string }> | undefined;
      const acked = await ackedWrites(rig, 1, 32, (n) => {
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
