/**
 * Health a script can act on, through real processes: `/healthz` answers while the process
 * lives, `/readyz` answers 503 with the reason when some blocks cannot be served (as Kubernetes
 * probes expect), and `dst status` exits 0 healthy, 1 degraded, 2 down or unreachable (as
 * `mdadm --detail --test`). `dst status` and `dst ctl` find a running `dst start` (its status
 * URL and token) from its data folder alone.
 */
import assert from "node:assert/strict";
import { spawnDst } from "./support/dst_process.ts";
import { dst, get, kill, spawnStart, waitFor, withTempDir } from "./support/cli_run.ts";

Deno.test("health: dst start healthy, a suspended leg degraded (exit 1, /readyz 200), resumed healthy", async () => {
  await withTempDir("dst-health-", async (dir) => {
    const data = `${dir}/data`;
    const start = await spawnStart([
      "--data",
      data,
      "--size",
      "8M",
      "--nbd",
      `unix://${dir}/nbd.sock`,
      "--status",
      "127.0.0.1:0",
    ]);
    try {
      assert.deepEqual(await get(`${start.statusUrl}healthz`), { status: 200, text: "ok\n" });
      assert.deepEqual(await get(`${start.statusUrl}readyz`), { status: 200, text: "ok\n" });
      // No URL, no token: found from the data folder's start.json, from anywhere.
      const healthy = await dst(["status", "--data", data], { cwd: dir });
      assert.equal(healthy.code, 0, healthy.stderr);
      assert.match(healthy.stdout, /^storage dst\n {2}health healthy$/m);
      const inside = await dst(["status"], { cwd: dir, env: { DST_DATA: data } });
      assert.equal(inside.code, 0, inside.stderr);

      const suspend = await dst(["ctl", "--data", data, "suspend", "leg1"], {
        env: { DST_STATUS_TOKEN: "" },
      });
      assert.equal(suspend.code, 0, suspend.stderr);
      const degraded = await dst(["status", "--data", data]);
      assert.equal(degraded.code, 1, degraded.stdout);
      assert.match(degraded.stdout, /health degraded/);
      assert.match(degraded.stdout, /suspended for \d+s \(since \d\d:\d\d:\d\d\)/);
      const ready = await get(`${start.statusUrl}readyz`);
      assert.equal(ready.status, 200, "a degraded mirror still serves every block");
      assert.match(ready.text, /^ok: degraded\n {2}dst \(mirror\) is degraded/);
      assert.match(ready.text, /leg1 \(remote\) is suspended for \d+s/);

      assert.equal((await dst(["ctl", "--data", data, "resume", "leg1"])).code, 0);
      await waitFor(
        async () => (await dst(["status", "--data", data])).code === 0 ? true : undefined,
        30_000,
        "the resumed leg to be in sync again",
      );
    } finally {
      kill(-start.pid, "SIGINT");
      await start.exited();
    }
  });
});

Deno.test("health: an export whose node is gone is down: /readyz 503 with why, dst status exit 2", async () => {
  await withTempDir("dst-health-", async (dir) => {
    const node = await spawnDst([
      "node",
      "--listen",
      `unix://${dir}/n.sock`,
      "--data",
      "memory:",
      "--size",
      "4M",
    ]);
    const exporter = await spawnDst([
      "export",
      "--listen",
      `unix://${dir}/nbd.sock`,
      "--remote",
      `unix://${dir}/n.sock`,
      "--status",
      "127.0.0.1:0",
      "--io-timeout",
      "1s",
    ], { ready: /^(nbd|status )/, readyLines: 2 });
    try {
      const url = exporter.lines.find((l) => l.startsWith("status "))!.slice("status ".length);
      assert.equal((await dst(["status", url])).code, 0);
      await node.stop("SIGKILL");
      const down = await waitFor(
        async () => {
          const r = await get(`${url}readyz`);
          return r.status === 503 ? r : undefined;
        },
        15_000,
        "/readyz to say the export cannot serve",
      );
      assert.match(down.text, /^not ready: down\n {2}dst \(remote\) is (connecting|down)/);
      const status = await dst(["status", url]);
      assert.equal(status.code, 2, status.stdout);
      assert.match(status.stdout, /health down/);
      assert.equal((await get(`${url}healthz`)).status, 200, "alive all the same");
    } finally {
      await exporter.stop();
      await node.stop();
    }
  });
});
