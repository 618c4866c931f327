/**
 * The mirror's promises with real processes (three `dst node`s, `dst serve`, nbdcopy, `dst ctl`):
 * a restart without a leg that cannot be reached goes on only when the legs that served recorded
 * it as outdated (else only with --force); `clean` of a leg that missed writes is refused unless
 * forced; verify of two legs that disagree repairs nothing unless told which leg to trust.
 */
import assert from "node:assert/strict";
import { skipWithout } from "./support/nbd_harness.ts";
import { runDst } from "./support/dst_process.ts";
import {
  assertIdentical,
  assertStamps,
  ctl,
  DATA_OFFSET,
  legData,
  MiB,
  mustFinish,
  readBack,
  serveArgs,
  SIZE,
  startNode,
  startServe,
  tree,
  waitInSync,
  waitLeg,
  withRig,
  writeRound,
  writeTopology,
} from "./support/mirror_rig.ts";

/** The rig's mirror, with remote legs given up on after a second when they cannot be reached. */
const QUICK = { connectTimeoutMs: 1000 } as const;

Deno.test({
  name: "mirror: a restart goes on without a leg the others recorded as outdated, and resyncs it",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, SIZE, 0));
      await waitInSync(rig);
      await rig.nodes.get("leg2")!.stop("SIGKILL");
      await waitLeg(rig, "leg2", (l) => l.state !== "in-sync");
      await mustFinish(await writeRound(rig, 4 * MiB, 1)); // leg2 misses these
      await rig.serve!.stop();
      // leg2's host is still down: dst serve starts degraded, because leg0 and leg1 recorded
      // it as outdated when it left (DRBD's "outdate peer").
      await startServe(rig, undefined, undefined, QUICK);
      const t = await tree(rig);
      assert.equal(t.state, "degraded");
      assert.deepEqual(t.children.map((l) => [l.name, l.state]), [
        ["leg0", "in-sync"],
        ["leg1", "in-sync"],
        ["leg2", "down"],
      ]);
      const read = await readBack(rig, 8 * MiB);
      assert.ok(read.ok, read.error);
      assertStamps(read.data, (at) => (at < 4 * MiB ? [1] : [0]));
      // The node comes back: it is judged and gets what it missed.
      rig.nodes.set("leg2", await startNode(rig, "leg2"));
      await waitInSync(rig);
      const data = await legData(rig);
      assertIdentical(data);
      assertStamps(data[2]!.subarray(0, 8 * MiB), (at) => (at < 4 * MiB ? [1] : [0]));
    }),
});

Deno.test({
  name: "mirror: a restart without a leg nobody recorded as outdated is refused, naming --force",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, 2 * MiB, 0));
      await waitInSync(rig);
      // A clean stop with every leg in sync, then leg2's host does not come back.
      await rig.serve!.stop();
      await rig.nodes.get("leg2")!.stop();
      const config = await writeTopology(rig, undefined, undefined, QUICK);
      const refused = await runDst(serveArgs(rig, config));
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /leg2 cannot be reached and no reachable leg recorded it/);
      assert.match(refused.stderr, /--force/);
      // Forced: it serves without leg2, and takes leg2 back when it returns.
      await startServe(rig, undefined, undefined, { ...QUICK, args: ["--force"] });
      assert.equal((await tree(rig)).state, "degraded");
      rig.nodes.set("leg2", await startNode(rig, "leg2"));
      await waitInSync(rig);
      assertIdentical(await legData(rig));
    }),
});

Deno.test({
  name: "mirror: clean of a leg that missed writes is refused; --force accepts its data as it is",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, 4 * MiB, 0));
      await waitInSync(rig);
      assert.equal((await ctl(rig, ["suspend", "leg1"])).code, 0);
      await mustFinish(await writeRound(rig, 4 * MiB, 1)); // leg1 misses 4 MiB
      const refused = await ctl(rig, ["clean", "leg1"]);
      assert.equal(refused.code, 1);
      assert.match(refused.err, /refused \(409\).*missed writes.*--force/);
      // Reads never see leg1's old data: it stays out of the in-sync set.
      for (let i = 0; i < 4; i++) {
        const read = await readBack(rig, 4 * MiB);
        assertStamps(read.data, () => [1]);
      }
      const forced = await ctl(rig, ["clean", "--force", "leg1"]);
      assert.equal(forced.code, 0, forced.err);
      assert.match(forced.out, /leg1 marked clean/);
      assert.equal((await tree(rig)).state, "in-sync");
    }),
});

Deno.test({
  name: "mirror: verify of two legs that disagree reports and exits 2; --repair-from repairs",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await rig.serve!.stop();
      await startServe(rig, undefined, ["leg0", "leg1"]);
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, 4 * MiB, 0));
      await waitInSync(rig);
      // 4 bytes written over leg0's media behind dst's back.
      const file = await Deno.open(`${rig.dir}/leg0.img`, { write: true });
      await file.seek(DATA_OFFSET + 2 * MiB + 100, Deno.SeekMode.Start);
      await file.write(new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
      await file.syncData();
      file.close();
      const found = await ctl(rig, ["verify", "m"]);
      assert.equal(found.code, 2, found.err);
      assert.match(found.out, /no majority were not repaired.*--repair-from/);
      const metrics = await (await fetch(`${rig.status}metrics`)).text();
      assert.match(metrics, /dst_verify_mismatched_bytes\{[^}]*node="m"[^}]*\} 1048576/);
      assert.equal((await tree(rig)).state, "in-sync", "nothing was repaired by position");
      const repaired = await ctl(rig, ["verify", "--repair-from", "leg1", "m"]);
      assert.equal(repaired.code, 1, repaired.err);
      await waitInSync(rig);
      const agree = await ctl(rig, ["verify", "m"]);
      assert.equal(agree.code, 0, agree.err);
      const read = await readBack(rig, 4 * MiB);
      assertStamps(read.data, () => [0]);
    }),
});
