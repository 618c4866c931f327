/**
 * What a leg that failed and came back shows, through real processes and a real browser: the
 * errors since it last rejoined (none, once it is back), not a lifetime count that stays
 * forever; and its last resync (at most the leg's size), not a lifetime total that reads like a
 * bug ("resynced 24 MiB" on an 8 MiB leg). The lifetime counters stay in /metrics as counters.
 *
 * A leg gets a real error: its node is stopped (SIGSTOP) while a client writes, so the write
 * times out on it (legTimeoutMs 300); the node is let go and the leg resyncs and rejoins. Then
 * `dst ctl dirty` twice more: three resyncs in all.
 */
import assert from "node:assert/strict";
import { chromium } from "npm:playwright-core@1.65.1";
import { type DstProcess, spawnDst } from "./support/dst_process.ts";
import { hasTool, inCI, mustRun, skipWithout } from "./support/nbd_harness.ts";
import { dst, get, kill, nodeNamed, statusOf, waitFor, withTempDir } from "./support/cli_run.ts";

const TOKEN = "leg-status-test-token-0123456789";
const MiB = 2 ** 20;
const CHROMIUM = "/usr/bin/chromium";

Deno.test({
  name:
    "leg status: a recovered leg shows errors since it rejoined and its last resync, not lifetime totals",
  ignore: skipWithout("qemu-io"),
  // playwright-core keeps internal timers and pipes of the browser until its process is reaped.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withTempDir("dst-leg-status-", async (dir) => {
      const nodes: DstProcess[] = [];
      let serve: DstProcess | undefined;
      try {
        for (const name of ["a", "b"]) {
          nodes.push(
            await spawnDst([
              "node",
              "--listen",
              `unix://${dir}/${name}.sock`,
              "--data",
              `${dir}/${name}.img`,
              "--size",
              "8M",
              "--id",
              name,
            ]),
          );
        }
        await Deno.writeTextFile(
          `${dir}/topology.json`,
          JSON.stringify({
            storage: "m",
            nodes: {
              m: { kind: "mirror", legs: ["a", "b"], legTimeoutMs: 300 },
              a: { kind: "remote", url: `unix://${dir}/a.sock` },
              b: { kind: "remote", url: `unix://${dir}/b.sock` },
            },
            export: { listen: [`unix://${dir}/nbd.sock`] },
          }),
        );
        serve = await spawnDst([
          "serve",
          "--config",
          `${dir}/topology.json`,
          "--status",
          "127.0.0.1:0",
        ], {
          ready: /^(nbd|status )/,
          readyLines: 2,
          env: { DST_STATUS_TOKEN: TOKEN },
        });
        const url = serve.lines.find((l) => l.startsWith("status "))!.slice("status ".length);
        const uri = serve.lines.find((l) => l.startsWith("nbd"))!;

        // A write while b's node is stopped times out on b: an error, and b leaves.
        kill(nodes[1]!.pid, "SIGSTOP");
        try {
          await mustRun("qemu-io", ["-f", "raw", "-c", "write -P 7 0 64k", uri]);
        } finally {
          kill(nodes[1]!.pid, "SIGCONT");
        }
        const legB = async () => nodeNamed((await statusOf(url)).tree, "b")!;
        await waitFor(
          async () => {
            const b = await legB();
            return b.state === "in-sync" && b.detail?.lastResync !== undefined ? b : undefined;
          },
          30_000,
          "b to resync and rejoin",
        );
        for (let round = 1; round <= 2; round++) {
          const before = (await legB()).detail?.resyncedBytes as number;
          const dirty = await dst(["ctl", "--url", url, "dirty", "b"], {
            env: { DST_STATUS_TOKEN: TOKEN },
          });
          assert.equal(dirty.code, 0, dirty.stderr);
          await waitFor(
            async () => {
              const b = await legB();
              const done = (b.detail?.resyncedBytes as number) >= before + 8 * MiB;
              return b.state === "in-sync" && done ? b : undefined;
            },
            30_000,
            `b's full resync ${round}`,
          );
        }

        const b = await legB();
        const detail = b.detail as Record<string, unknown> & {
          errors: number;
          resyncedBytes: number;
          rejoined: { errorsSince: number };
          lastResync: { bytes: number };
        };
        assert.ok(detail.errors >= 1, "the lifetime count keeps the timeout");
        assert.equal(detail.rejoined.errorsSince, 0, "none since it rejoined");
        assert.ok(detail.resyncedBytes > 16 * MiB, "lifetime: three resyncs");
        assert.equal(detail.lastResync.bytes, 8 * MiB, "the last one: the whole 8 MiB leg");

        const text = await dst(["status", url]);
        assert.equal(text.code, 0, text.stdout);
        const bLines = text.stdout.slice(text.stdout.indexOf("b (remote)"));
        assert.doesNotMatch(bLines.split("\n")[0]!, /errors/, "no old errors on the line");
        assert.match(bLines, /last resync 8 MiB \(moved [^)]*\) \d+s ago/);
        assert.doesNotMatch(text.stdout, /resynced|1[6-9] MiB/, "no lifetime total");

        const metrics = (await get(`${url}metrics`)).text;
        assert.match(metrics, /^dst_leg_errors_total\{[^}]*leg="b"\} [1-9]/m);
        assert.match(metrics, /^dst_leg_resynced_bytes_total\{[^}]*leg="b"\} (\d+)/m);

        if (hasTool(CHROMIUM) || inCI) await dashboardShows(url, dir);
        else console.log("skipping the dashboard half: chromium not installed");
      } finally {
        await serve?.stop();
        await Promise.all(nodes.map((n) => n.stop()));
      }
    }),
});

/** The dashboard's card for b: its last resync, no lifetime total, no errors. */
async function dashboardShows(url: string, dir: string): Promise<void> {
  const context = await chromium.launchPersistentContext(`${dir}/chromium`, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
  try {
    const page = await context.newPage();
    await page.goto(url);
    await page.waitForSelector('[data-node="b"][data-state="in-sync"] .last-resync', {
      timeout: 10_000,
    });
    const card = await page.textContent('[data-node="b"]') ?? "";
    assert.match(card, /last resync 8\.0 MiB \(moved [^)]*\) \d+ s ago/);
    assert.doesNotMatch(card, /resynced/, "no lifetime total on the card");
    assert.doesNotMatch(card, /errors/, "no errors from before it rejoined");
  } finally {
    await context.close().catch(() => {});
  }
}
