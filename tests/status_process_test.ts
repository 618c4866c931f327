/**
 * The status endpoint on real processes: `dst node --status` and `dst export --remote --status`
 * count real NBD traffic, `dst status` prints their trees (text, --json, --watch), `dst serve`
 * keeps its control token in --status-token-file across restarts and refuses control without it,
 * and /metrics of a running process passes promtool.
 */
import assert from "node:assert/strict";
import { type DstProcess, spawnDst } from "./support/dst_process.ts";
import { hasTool, mustRun, skipWithout } from "./support/nbd_harness.ts";
import type { StatusJson } from "../status/tree.ts";

const mainTs = new URL("../main.ts", import.meta.url).pathname;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dst-status-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Runs `dst ARGS` to completion. */
async function dst(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", "--allow-all", mainTs, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

const statusUrl = (p: DstProcess) =>
  p.lines.find((l) => l.startsWith("status "))!.slice("status ".length);

async function getJson(url: string): Promise<StatusJson> {
  const response = await fetch(`${url}api/tree`);
  assert.equal(response.status, 200);
  return await response.json();
}

Deno.test({
  name: "status process: dst node and dst export --remote count NBD traffic; dst status shows it",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withDir(async (dir) => {
      const node = await spawnDst([
        "node",
        "--listen",
        `unix://${dir}/a.sock`,
        "--data",
        "memory:",
        "--size",
        "8M",
        "--id",
        "a",
        "--status",
        "127.0.0.1:0",
      ], { readyLines: 2 });
      let exporter: DstProcess | undefined;
      try {
        assert.equal(node.lines[0], `unix://${dir}/a.sock`, "the node URL stays the first line");
        exporter = await spawnDst([
          "export",
          "--remote",
          `unix://${dir}/a.sock`,
          "--listen",
          `unix://${dir}/nbd.sock`,
          "--status",
          "127.0.0.1:0",
        ], { ready: /^(nbd|status )/, readyLines: 2 });
        const uri = exporter.lines.find((l) => l.startsWith("nbd"))!;
        const image = `${dir}/in.img`;
        await Deno.writeFile(image, new Uint8Array(1024 * 1024).fill(7));
        await mustRun("nbdcopy", [image, uri]);

        const exported = await getJson(statusUrl(exporter));
        assert.equal(exported.tree.kind, "remote");
        assert.equal(exported.tree.state, "in-sync");
        assert.equal(exported.tree.address, `unix://${dir}/a.sock`);
        assert.equal(exported.tree.facts.peer, "a");
        assert.ok(exported.tree.facts.checksum !== undefined);
        assert.equal(exported.io?.ops.write.bytes, 1024 * 1024);
        assert.equal(exported.control, false);
        const served = await getJson(statusUrl(node));
        assert.equal(served.tree.kind, "memory");
        assert.equal(served.io?.ops.write.bytes, 1024 * 1024, "the node counted the same bytes");
        assert.ok((served.tree.facts.numbers?.links ?? 0) >= 1);

        const json = await dst(["status", statusUrl(exporter), "--json"]);
        assert.equal(json.code, 0, json.stderr);
        assert.equal((JSON.parse(json.stdout) as StatusJson).tree.name, "dst");
        const text = await dst(["status", statusUrl(node).replace(/^http:\/\//, "")]);
        assert.equal(text.code, 0, text.stderr);
        assert.match(text.stdout, /^storage a$/m);
        assert.match(text.stdout, /^a \(memory\) in-sync {2}8 MiB/m);
        assert.match(text.stdout, /write \d+ req 1 MiB avg \d+\.\d\d ms/);

        if (hasTool("promtool")) {
          const metrics = await (await fetch(`${statusUrl(exporter)}metrics`)).text();
          assert.match(metrics, /^dst_io_bytes_total\{storage="dst",op="write"\} 1048576$/m);
          const check = new Deno.Command("promtool", {
            args: ["check", "metrics"],
            stdin: "piped",
            stdout: "piped",
            stderr: "piped",
          }).spawn();
          const writer = check.stdin.getWriter();
          await writer.write(new TextEncoder().encode(metrics));
          await writer.close();
          const result = await check.output();
          assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
        }
      } finally {
        await exporter?.stop();
        await node.stop();
      }
    }),
});

Deno.test("status process: dst serve keeps its token in --status-token-file; control needs it", () =>
  withDir(async (dir) => {
    const config = `${dir}/topology.json`;
    await Deno.writeTextFile(
      config,
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
    const tokenFile = `${dir}/status-token`;
    const start = () =>
      spawnDst([
        "serve",
        "--config",
        config,
        "--status",
        "127.0.0.1:0",
        "--status-token-file",
        tokenFile,
      ], { ready: /^(nbd|status)/, readyLines: 3 });
    const first = await start();
    let token: string;
    try {
      const printed = first.lines.find((l) => l.startsWith("status-token "));
      assert.ok(printed !== undefined, first.lines.join("\n"));
      token = (await Deno.readTextFile(tokenFile)).trim();
      assert.equal(printed, `status-token ${token} (kept in ${tokenFile})`);
      assert.equal((await Deno.stat(tokenFile)).mode! & 0o777, 0o600);
      const url = statusUrl(first);
      const refused = await fetch(`${url}api/nodes/b/suspend`, { method: "POST" });
      assert.equal(refused.status, 401);
      await refused.body?.cancel();
      assert.equal((await getJson(url)).tree.children[1]!.state, "in-sync");
      const done = await fetch(`${url}api/nodes/b/suspend`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(done.status, 200, await done.clone().text());
      await done.body?.cancel();
      assert.equal((await getJson(url)).tree.children[1]!.state, "suspended");
      const bad = await fetch(`${url}api/nodes/nope/resume`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(bad.status, 404);
      await bad.body?.cancel();
    } finally {
      await first.stop();
    }
    // A restart reads the same token and does not print it again.
    const second = await spawnDst([
      "serve",
      "--config",
      config,
      "--status",
      "127.0.0.1:0",
      "--status-token-file",
      tokenFile,
    ], { ready: /^(nbd|status)/, readyLines: 2 });
    try {
      await new Promise((r) => setTimeout(r, 200));
      const url = statusUrl(second);
      const again = await fetch(`${url}api/nodes/a/suspend`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(again.status, 200);
      await again.body?.cancel();
    } finally {
      const { stderr } = await second.stop();
      assert.ok(!stderr.includes(token), "the token is not logged");
    }
    assert.ok(!second.lines.some((l) => l.startsWith("status-token")));
  }));

Deno.test("status process: dst status --watch redraws until stopped; a dead URL fails clearly", async () => {
  const node = await spawnDst([
    "node",
    "--listen",
    "tcp://127.0.0.1:0",
    "--data",
    "memory:",
    "--size",
    "1M",
    "--id",
    "w",
    "--status",
    "127.0.0.1:0",
  ], { readyLines: 2 });
  try {
    const watch = await spawnDst(["status", statusUrl(node), "--watch", "--interval", "0.2"], {
      ready: /^w \(memory\) in-sync/,
      readyLines: 2,
      env: { NO_COLOR: "1" },
    });
    const { code } = await watch.stop("SIGINT");
    assert.equal(code, 0, "Ctrl-C ends --watch cleanly");
  } finally {
    await node.stop();
  }
  // Exit codes: 2 for an endpoint that cannot be reached (as for a storage that is down), 64
  // for a command line that is wrong.
  const dead = await dst(["status", "http://127.0.0.1:1/"]);
  assert.equal(dead.code, 2);
  assert.match(dead.stderr, /cannot reach http:\/\/127\.0\.0\.1:1.*--status/);
  const bad = await dst(["status", "ftp://x"]);
  assert.equal(bad.code, 64);
});
