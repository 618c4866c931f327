/**
 * Resync with real processes: `dst serve` mirroring three file-backed `dst node` processes, a
 * real NBD client (nbdcopy) writing self-describing blocks. A leg killed and restarted gets only
 * the chunks it missed; a leg whose media is replaced is recognised by the storage's age and
 * resynced in full; a mirror killed mid-load converges from its bitmap. Afterwards each leg's
 * media is read directly and every leg holds the same bytes.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { skipWithout } from "./support/nbd_harness.ts";
import {
  ackedWrites,
  assertIdentical,
  assertStamps,
  copied,
  ctl,
  DATA_OFFSET,
  legData,
  LEGS,
  MiB,
  mustFinish,
  readBack,
  resynced,
  SIZE,
  SLOW,
  startNode,
  startServe,
  tree,
  waitInSync,
  waitLeg,
  waitState,
  withRig,
  writeRound,
} from "./support/mirror_rig.ts";

Deno.test({
  name: "resync: a leg killed under load and restarted gets only what it missed",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, SIZE, 0));
      const before = copied(await waitInSync(rig), "leg2");
      await rig.nodes.get("leg2")!.stop("SIGKILL");
      await mustFinish(await writeRound(rig, 3 * MiB, 1)); // leg2 misses chunks 0..2
      rig.nodes.set("leg2", await startNode(rig, "leg2"));
      const after = copied(await waitInSync(rig), "leg2");
      assert.equal(after - before, 3 * MiB, "only the three missed chunks were copied");
      const data = await legData(rig);
      assertIdentical(data);
      assertStamps(data[2]!, (at) => (at < 3 * MiB ? [1] : [0]));
    }),
});

Deno.test({
  name: "resync: a leg whose media is replaced by an empty file is resynced in full",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, SIZE, 0));
      const before = copied(await waitInSync(rig), "leg1");
      await rig.nodes.get("leg1")!.stop("SIGKILL");
      await Deno.remove(`${rig.dir}/leg1.img`);
      await waitState(rig, (s) => s !== "in-sync"); // the mirror noticed the link go
      rig.nodes.set("leg1", await startNode(rig, "leg1")); // new media, no age of the storage
      const after = copied(await waitInSync(rig), "leg1");
      assert.equal(after - before, SIZE, "every chunk was copied");
      const data = await legData(rig);
      assertIdentical(data);
      assertStamps(data[1]!, () => [0]);
    }),
});

const WRITE = 64 * 1024;

Deno.test({
  name: "resync: dst serve killed mid-load comes back and its bitmap makes the legs converge",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, SIZE, 0));
      await waitInSync(rig);
      // Killed after 100 acknowledged writes, with 32 more in flight over many chunks.
      const serve = rig.serve!;
      let killed: Promise<unknown> | undefined;
      const acked = await ackedWrites(rig, {
        bytes: SIZE,
        write: WRITE,
        seq: 1,
        depth: 32,
        shuffle: 12345,
      }, (n) => {
        if (n >= 100) killed ??= serve.stop("SIGKILL");
      });
      await killed;
      assert.ok(acked.size >= 100 && acked.size < SIZE / WRITE, `${acked.size} acked`);
      await startServe(rig);
      await waitInSync(rig);
      const data = await legData(rig);
      assertIdentical(data);
      // Every acknowledged write is there; elsewhere seq 0 or the interrupted round's seq 1.
      assertStamps(data[0]!, (at) => (acked.has(at - (at % WRITE)) ? [1] : [0, 1]));
    }),
});

Deno.test({
  name: "resync: killing the source leg mid-resync hands over to another leg and goes on",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, SIZE, 0));
      await waitInSync(rig);
      await rig.serve!.stop();
      await startServe(rig, SLOW);
      await waitInSync(rig);
      await rig.nodes.get("leg2")!.stop("SIGKILL");
      await mustFinish(await writeRound(rig, 24 * MiB, 1)); // leg2 misses chunks 0..23
      const before = resynced((await tree(rig)).children, "leg2");
      rig.nodes.set("leg2", await startNode(rig, "leg2"));
      const midway = await waitLeg(
        rig,
        "leg2",
        (l) => (l.detail?.resync?.bytesDone ?? 0) >= 6 * MiB,
      );
      const source = midway.detail!.resync!.source;
      const other = source === "leg0" ? "leg1" : "leg0";
      await rig.nodes.get(source)!.stop("SIGKILL");
      const done = await waitLeg(rig, "leg2", (l) => l.state === "in-sync");
      assert.equal(
        done.detail!.resyncedBytes! - before,
        24 * MiB,
        "every missed chunk settled once: the resync went on from the other leg, not over",
      );
      assert.equal((await waitLeg(rig, other, () => true)).state, "in-sync");
      rig.nodes.set(source, await startNode(rig, source));
      await waitInSync(rig);
      const data = await legData(rig);
      assertIdentical(data);
      assertStamps(data[2]!, (at) => (at < 24 * MiB ? [1] : [0]));
    }),
});

Deno.test({
  name: "resync: a full resync interrupted by killing dst serve resumes where it was",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, SIZE, 0));
      await waitInSync(rig);
      await rig.serve!.stop();
      await startServe(rig, SLOW);
      await waitInSync(rig);
      await rig.nodes.get("leg1")!.stop("SIGKILL");
      await Deno.remove(`${rig.dir}/leg1.img`);
      await waitState(rig, (s) => s !== "in-sync");
      rig.nodes.set("leg1", await startNode(rig, "leg1")); // new media: a full resync
      const midway = await waitLeg(rig, "leg1", (l) =>
        (l.detail?.resync?.bytesDone ?? 0) >= 12 * MiB);
      const firstRun = midway.detail!.resync!.bytesDone;
      await rig.serve!.stop("SIGKILL");
      await startServe(rig);
      const secondRun = resynced(await waitInSync(rig), "leg1");
      // Progress is stored every 200 ms (at 8 MiB/s) with 4 chunks in flight: a few MiB of slack.
      assert.ok(
        secondRun <= SIZE - firstRun + 6 * MiB,
        `resumed: ${secondRun} bytes after ${firstRun} of ${SIZE} were done`,
      );
      assert.ok(secondRun > 0, "the second run finished the rest");
      const data = await legData(rig);
      assertIdentical(data);
      assertStamps(data[1]!, () => [0]);
    }),
});

Deno.test({
  name: "resync: legs written apart are refused as split brain; a stale leg is never served",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, SIZE, 0));
      await waitInSync(rig);
      await rig.serve!.stop();
      // Partitioned: leg0 alone takes round 1, then leg1 alone takes round 2, same chunks.
      await startServe(rig, undefined, ["leg0"]);
      await mustFinish(await writeRound(rig, 4 * MiB, 1));
      await rig.serve!.stop();
      await startServe(rig, undefined, ["leg1"]);
      await mustFinish(await writeRound(rig, 4 * MiB, 2));
      await rig.serve!.stop();
      // Reconnected: refused, reported, nothing served.
      await startServe(rig);
      const t = await tree(rig);
      assert.equal(t.state, "split-brain", JSON.stringify(t));
      for (const name of ["leg0", "leg1"]) {
        const leg = t.children.find((l) => l.name === name)!;
        assert.equal(leg.state, "split-brain");
        assert.match(leg.detail?.reason ?? "", /split brain/);
      }
      assert.equal((await readBack(rig, MiB)).ok, false, "nothing is served in a split brain");
      await rig.serve!.stop();
      // Nothing was overwritten: each side still holds what it took.
      const legsNow = await Promise.all(
        LEGS.map(async (n) => (await Deno.readFile(`${rig.dir}/${n}.img`)).subarray(DATA_OFFSET)),
      );
      assertStamps(legsNow[0]!.subarray(0, SIZE), (at) => (at < 4 * MiB ? [1] : [0]));
      assertStamps(legsNow[1]!.subarray(0, SIZE), (at) => (at < 4 * MiB ? [2] : [0]));
      // leg0 with the stale leg2 (which saw neither round): leg2 is resynced, never read.
      await startServe(rig, SLOW, ["leg0", "leg2"]);
      const read = await readBack(rig, 8 * MiB);
      assert.ok(read.ok, `${read.error} ${JSON.stringify(await tree(rig))}`);
      assertStamps(read.data, (at) => (at < 4 * MiB ? [1] : [0]));
      await waitInSync(rig);
      const [a, , c] = await legData(rig);
      assert.deepEqual(
        createHash("sha256").update(c!).digest("hex"),
        createHash("sha256").update(a!).digest("hex"),
      );
    }),
});

Deno.test({
  name: "resync: online verify finds a chunk corrupted on one leg's media and repairs it",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, SIZE, 0));
      const before = copied(await waitInSync(rig), "leg1");
      // Behind dst's back, with leg1's node running and its file open: 4 KiB of garbage in
      // chunk 5 of the data area, written straight into the file.
      const file = await Deno.open(`${rig.dir}/leg1.img`, { write: true });
      try {
        await file.seek(DATA_OFFSET + 5 * MiB + 8192, Deno.SeekMode.Start);
        await file.write(new Uint8Array(4096).fill(0xa5));
        await file.syncData();
      } finally {
        file.close();
      }
      // Three legs: two agree, so leg1 is repaired (exit 1: differences found and repaired).
      const verify = await ctl(rig, ["verify", "m"]);
      assert.equal(verify.code, 1, verify.err);
      assert.match(verify.out, /1 chunk\(s\) \(1048576 bytes\) differing; repairing leg1/);
      const legs = await waitInSync(rig);
      assert.equal(copied(legs, "leg1") - before, MiB, "only the corrupted chunk was copied");
      const data = await legData(rig);
      assertIdentical(data);
      assertStamps(data[1]!, () => [0]);
    }),
});

Deno.test({
  name: "resync: dst ctl drives maintenance and says clearly what it refuses",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      const noToken = await ctl(rig, ["suspend", "leg0"], { token: false });
      assert.equal(noToken.code, 1);
      assert.match(noToken.err, /need the status token \(401\).*--token-file/);
      const wrong = await ctl(rig, ["suspend", "leg0"], {
        token: false,
        env: { DST_STATUS_TOKEN: "not-the-token-at-all" },
      });
      assert.equal(wrong.code, 1);
      assert.match(wrong.err, /refused the token \(401\)/);
      const unknown = await ctl(rig, ["suspend", "leg9"]);
      assert.equal(unknown.code, 1);
      assert.match(unknown.err, /not found \(404\).*leg9/);
      const usage = await ctl(rig, ["suspend"]);
      assert.equal(usage.code, 2);
      assert.match(usage.err, /suspend takes LEG/);
      // Two legs suspended; the last in-sync one cannot be.
      for (const leg of ["leg0", "leg1"]) {
        const r = await ctl(rig, ["suspend", leg]);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, new RegExp(`${leg} suspended`));
      }
      const last = await ctl(rig, ["suspend", "leg2"]);
      assert.equal(last.code, 1);
      assert.match(last.err, /refused \(409\).*last in-sync leg/);
      await mustFinish(await writeRound(rig, 2 * MiB, 1)); // leg0 and leg1 miss two chunks
      for (const leg of ["leg0", "leg1"]) assert.equal((await ctl(rig, ["resume", leg])).code, 0);
      let legs = await waitInSync(rig);
      // A leg removed and added back while serving is resynced in full.
      const removed = await ctl(rig, ["remove-leg", "m", "leg2"]);
      assert.equal(removed.code, 0, removed.err);
      assert.deepEqual((await tree(rig)).children.map((l) => l.name), ["leg0", "leg1"]);
      const added = await ctl(rig, ["add-leg", "m", "leg2", `unix://${rig.dir}/leg2.sock`]);
      assert.equal(added.code, 0, added.err);
      legs = await waitInSync(rig);
      assert.equal(legs.length, 3);
      const dirty = await ctl(rig, ["dirty", "leg1"]);
      assert.equal(dirty.code, 0, dirty.err);
      await waitInSync(rig);
      const data = await legData(rig);
      assertIdentical(data);
      assertStamps(data[0]!.subarray(0, 2 * MiB), () => [1]);
    }),
});
