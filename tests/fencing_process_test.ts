/**
 * Two `dst serve` over the same three `dst node`s without a cluster (an operator's mistake): the
 * second claims the legs with a higher epoch and the first is fenced while a client writes
 * through it. The first acknowledges nothing after that (its clients get EIO), logs why and
 * exits with code 3; the second serves every write the first acknowledged, and after it the
 * legs hold identical data areas.
 */
import assert from "node:assert/strict";
import { fillBlock } from "../drill/block_stamps.ts";
import { spawnDst } from "./support/dst_process.ts";
import {
  assertIdentical,
  assertStamps,
  legData,
  LEGS,
  mustFinish,
  readBack,
  type Rig,
  SIZE,
  startServe,
  tree,
  waitInSync,
  withRig,
  writeRound,
} from "./support/mirror_rig.ts";
import { openExport } from "./support/nbd_raw_client.ts";
import { skipWithout } from "./support/nbd_harness.ts";

const WRITE = 64 * 1024;

/**
 * Writes seq 1 over shuffled WRITE-sized pieces, round after round, until the export stops
 * acknowledging (at most a minute).
 */
async function writeUntilRefused(
  port: number,
  onAck: (acked: number) => void,
): Promise<{ acked: Set<number>; errors: number }> {
  const offsets = Array.from({ length: SIZE / WRITE }, (_, i) => i * WRITE);
  for (let i = offsets.length - 1; i > 0; i--) {
    const j = (i * 7919 + 13) % (i + 1);
    [offsets[i], offsets[j]] = [offsets[j]!, offsets[i]!];
  }
  const acked = new Set<number>();
  let errors = 0;
  const { client } = await openExport(port);
  const payload = new Uint8Array(WRITE);
  let next = 0;
  let inFlight = 0;
  const end = Date.now() + 60_000;
  try {
    while ((errors === 0 && Date.now() < end) || inFlight > 0) {
      while (inFlight < 8 && errors === 0 && Date.now() < end) {
        const at = offsets[next % offsets.length]!;
        for (let b = 0; b < WRITE; b += 4096) {
          fillBlock(payload.subarray(b, b + 4096), at + b, 1, 1);
        }
        await client.request(1, next, at, WRITE, { payload, flags: 1 /* FUA */ });
        next++;
        inFlight++;
      }
      const reply = await client.reply();
      inFlight--;
      if (reply.error === 0) acked.add(offsets[reply.handle % offsets.length]!);
      else errors++;
      onAck(acked.size);
    }
  } catch {
    // the fenced export went away: what was acknowledged so far is the record
  } finally {
    client.close();
  }
  return { acked, errors };
}

/** The second serve's topology: the same legs, its own export socket. */
async function secondTopology(rig: Rig): Promise<string> {
  const config = `${rig.dir}/second.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      storage: "m",
      nodes: {
        m: { kind: "mirror", legs: LEGS, chunkSize: "1M" },
        ...Object.fromEntries(LEGS.map((n) => [n, {
          kind: "remote",
          url: `unix://${rig.dir}/${n}.sock`,
          storageId: rig.storageId,
        }])),
      },
      export: { listen: [`unix://${rig.dir}/nbd2.sock`] },
    }),
  );
  return config;
}

Deno.test({
  name:
    "fencing: a second dst serve on the same legs takes over; the first is fenced, loses nothing",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await waitInSync(rig);
      await mustFinish(await writeRound(rig, SIZE, 0));
      const first = rig.serve!;
      let second: Awaited<ReturnType<typeof spawnDst>> | undefined;
      let starting: Promise<void> | undefined;
      const config = await secondTopology(rig);
      const written = await writeUntilRefused(rig.port, (n) => {
        // The second starts while the first is mid-load, with writes in flight.
        starting ??= n >= 40
          ? spawnDst(
            ["serve", "--config", config, "--status", "127.0.0.1:0"],
            { ready: /^(nbd|status)/, readyLines: 2 },
          ).then((s) => void (second = s))
          : undefined;
      });
      await starting;
      assert.ok(second !== undefined, "the second serve started");
      assert.ok(written.acked.size >= 40, `${written.acked.size} writes acknowledged`);
      assert.ok(written.errors > 0, "the fenced export failed the writes it could not own");
      const exited = await first.stop();
      rig.serve = undefined;
      assert.equal(exited.code, 3, `the fenced serve exits with code 3:\n${exited.stderr}`);
      assert.match(exited.stderr, /fenced/);
      assert.match(exited.stderr, /belongs to epoch 2/);
      // The second serves: the mirror in sync again, then every leg's data area compared.
      rig.serve = second;
      rig.status = second!.lines.map((l) => l.match(/https?:\/\/\S+/)?.[0]).find((u) => u)!;
      await waitInSync(rig);
      const data = await legData(rig);
      assertIdentical(data);
      assertStamps(data[0]!, (at) => (written.acked.has(at - (at % WRITE)) ? [1] : [0, 1]));
    }),
});

Deno.test("fencing: a second dst export --remote of a node takes it over; the first exits", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dst-fence-" });
  const node = await spawnDst([
    "node",
    "--listen",
    `unix://${dir}/n.sock`,
    "--data",
    `${dir}/n.img`,
    "--size",
    "4M",
  ]);
  const exportOf = (name: string) =>
    spawnDst([
      "export",
      "--listen",
      `unix://${dir}/${name}.sock`,
      "--remote",
      node.lines[0]!,
      "--io-timeout",
      "1s",
    ]);
  try {
    const first = await exportOf("a");
    const second = await exportOf("b");
    const exited = await Promise.race([
      first.child.status,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000)),
    ]);
    assert.equal(exited?.code, 3, "the first export stops on its own, fenced");
    const { stderr } = await first.stop();
    assert.match(stderr, /fenced/);
    await second.stop();
  } finally {
    await node.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "fencing: --on-fenced stay keeps the fenced serve up, refusing I/O, its status saying why",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withRig(async (rig) => {
      await rig.serve!.stop();
      await startServe(rig, undefined, LEGS, { args: ["--on-fenced", "stay"] });
      await waitInSync(rig);
      const second = await spawnDst(
        ["serve", "--config", await secondTopology(rig), "--status", "127.0.0.1:0"],
        { ready: /^(nbd|status)/, readyLines: 2 },
      );
      try {
        // The first learns at once: the nodes closed its links with a fenced goodbye.
        const end = Date.now() + 20_000;
        let root = await tree(rig);
        while (root.state !== "fenced" && Date.now() < end) {
          await new Promise((r) => setTimeout(r, 100));
          root = await tree(rig);
        }
        assert.equal(root.state, "fenced");
        const detail = (root as unknown as { detail: Record<string, unknown> }).detail;
        const epoch = detail.ownerEpoch as number;
        assert.ok(
          String(detail.fenced).includes(`belongs to epoch ${epoch + 1}`),
          String(detail.fenced),
        );
        assert.ok(
          (detail.ownershipEvents as { what: string }[]).some((e) => /^fenced: /.test(e.what)),
        );
        const read = await readBack(rig, 4096);
        assert.equal(read.ok, false, "a fenced exporter serves no reads either");
        const metrics = await (await fetch(`${rig.status.replace(/\/$/, "")}/metrics`)).text();
        assert.ok(metrics.includes(`dst_owner_epoch{storage="m",node="m"} ${epoch}\n`));
        assert.match(
          metrics,
          /dst_node_state\{storage="m",node="m",kind="mirror",state="fenced"\} 1/,
        );
      } finally {
        await second.stop();
      }
    }),
});
