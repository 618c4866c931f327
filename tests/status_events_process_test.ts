/**
 * The event history, the samples and the new metrics of a real `dst serve` with a mirror: a leg
 * suspended and resumed shows as events (left the set, resync started, resync done), a verify's
 * result is recorded, `?since` polls incrementally, each leg's write latency is in /metrics
 * (which promtool accepts), and the samples show the writes of a real NBD client.
 */
import assert from "node:assert/strict";
import { spawnDst } from "./support/dst_process.ts";
import { hasTool, mustRun, run, skipWithout } from "./support/nbd_harness.ts";

const TOKEN = "events-test-token-0123456789";

interface Page {
  events: { id: number; kind: string; node?: string; message: string }[];
  latest: number;
}

Deno.test({
  name: "status process: leg moves, resyncs and verify in /api/events; leg latency in /metrics",
  ignore: skipWithout("nbdcopy"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dst-events-" });
    await Deno.writeTextFile(
      `${dir}/topology.json`,
      JSON.stringify({
        storage: "m",
        nodes: {
          m: { kind: "mirror", legs: ["a", "b"] },
          a: { kind: "memory", size: "8M" },
          b: { kind: "memory", size: "8M" },
        },
        export: { listen: [`unix://${dir}/nbd.sock`] },
      }),
    );
    const serve = await spawnDst(
      ["serve", "--config", `${dir}/topology.json`, "--status", "127.0.0.1:0"],
      { ready: /^(nbd|status )/, readyLines: 2, env: { DST_STATUS_TOKEN: TOKEN } },
    );
    try {
      const url = serve.lines.find((l) => l.startsWith("status "))!.slice("status ".length);
      const nbd = serve.lines.find((l) => l.startsWith("nbd"))!;
      const events = async (since = 0): Promise<Page> =>
        await (await fetch(`${url}api/events?since=${since}`)).json();
      const act = async (path: string) => {
        const r = await fetch(`${url}api/nodes/${path}`, {
          method: "POST",
          headers: { Authorization: `Bearer ${TOKEN}` },
        });
        assert.equal(r.status, 200, await r.clone().text());
        await r.body?.cancel();
      };
      const waitFor = async (what: RegExp, since = 0) => {
        for (let i = 0; i < 200; i++) {
          const page = await events(since);
          if (page.events.some((e) => what.test(e.message))) return page;
          await new Promise((r) => setTimeout(r, 50));
        }
        throw new Error(`no event ${what}: ${JSON.stringify(await events())}`);
      };

      const start = await waitFor(/b is in sync/);
      assert.match(start.events[0]!.message, /^dst .* started m$/);
      const image = `${dir}/in.img`;
      await Deno.writeFile(image, new Uint8Array(2 * 1024 * 1024).fill(9));
      await mustRun("nbdcopy", [image, nbd]);

      await act("b/suspend");
      const left = await waitFor(/b left the in-sync set: in-sync → suspended/);
      assert.ok(left.events.some((e) => /^suspend b: /.test(e.message)), JSON.stringify(left));
      await mustRun("nbdcopy", [image, nbd]); // b misses these
      await act("b/resume");
      await waitFor(/resync of b started/);
      const done = await waitFor(/resync of b done: in sync \(2\.0 MiB resynced\)/);
      // Polling with the last id seen gets only what is new.
      assert.deepEqual((await events(done.latest)).events, []);
      await act("m/verify");
      const verified = await waitFor(
        /verify m: verified \d+ chunk\(s\): the legs agree/,
        done.latest,
      );
      assert.ok(verified.events.every((e) => e.id > done.latest));

      const metrics = await (await fetch(`${url}metrics`)).text();
      for (const l of ["a", "b"]) {
        const count = new RegExp(
          `^dst_leg_latency_seconds_count\\{storage="m",mirror="m",leg="${l}",op="write"\\} (\\d+)$`,
          "m",
        ).exec(metrics);
        assert.ok(count !== null && Number(count[1]) > 0, `leg ${l}'s writes are timed`);
      }
      assert.match(metrics, /^dst_build_info\{version="[^"]+",deno="[^"]+"\} 1$/m);
      assert.match(metrics, /^process_resident_memory_bytes \d+$/m);
      if (hasTool("promtool")) {
        const check = await run("promtool", ["check", "metrics"], {
          stdin: new TextEncoder().encode(metrics),
        });
        assert.equal(check.code, 0, check.stderr + check.stdout);
      }
      // The samples of the last seconds saw the client's writes.
      let wrote = false;
      for (let i = 0; i < 60 && !wrote; i++) {
        const { samples } = await (await fetch(`${url}api/samples`)).json();
        wrote = samples.some((s: { writeBytesPerSec: number }) => s.writeBytesPerSec > 0);
        if (!wrote) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(wrote, "a sample shows the writes");
    } finally {
      await serve.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
