/**
 * Clean failure in time, with real processes: SIGTERM stops `dst export`, `dst serve` and
 * `dst start` (and the node processes it started) within the shutdown deadline whatever their
 * links are doing, and `--io-timeout` / a remote leaf's "ioTimeout" bound how long a client's
 * request waits for a dead node before it fails with EIO (seen through qemu-io).
 */
import assert from "node:assert/strict";
import { run, skipWithout } from "./support/nbd_harness.ts";
import { type DstProcess, spawnDst } from "./support/dst_process.ts";

/** The default shutdown deadline, and slack for a loaded machine to act on it. */
const DEADLINE_MS = 5000;
const SLACK_MS = 2500;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dst-shutdown-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Runs `fn` with a memory `dst node` on `DIR/n.sock`, which is always killed afterwards. */
async function withNode(dir: string, fn: (node: DstProcess) => Promise<void>): Promise<void> {
  const args = ["--listen", `unix://${dir}/n.sock`, "--data", "memory:", "--size", "16M"];
  const node = await spawnDst(["node", ...args, "--id", "n"]);
  try {
    await fn(node);
  } finally {
    await node.stop("SIGKILL");
  }
}

/** Runs `fn` with a started process, which is always killed afterwards. */
async function using(
  started: Promise<DstProcess>,
  fn: (p: DstProcess) => Promise<void>,
): Promise<void> {
  const p = await started;
  try {
    await fn(p);
  } finally {
    await p.stop("SIGKILL");
  }
}

/** One 4 KiB read through qemu-io: how long it took and what qemu-io said. */
async function timedRead(uri: string): Promise<{ ms: number; out: string }> {
  const started = performance.now();
  const r = await run("qemu-io", ["-f", "raw", "-r", "-c", "read 0 4096", uri], {
    timeoutMs: 60_000,
  });
  return { ms: performance.now() - started, out: r.stdout + r.stderr };
}

/** Sends SIGTERM and measures how long the process takes to exit (SIGKILL after 10 s). */
async function timedStop(p: DstProcess): Promise<{ ms: number; code: number; stderr: string }> {
  const started = performance.now();
  const { code, stderr } = await p.stop("SIGTERM");
  return { ms: performance.now() - started, code, stderr };
}

Deno.test({
  name: "shutdown: SIGTERM stops dst export --remote within the deadline while its node is dead",
  ignore: skipWithout("qemu-io"),
  fn: () =>
    withDir((dir) =>
      withNode(dir, (node) =>
        using(
          spawnDst(
            ["export", "--listen", `unix://${dir}/nbd.sock`, "--remote", `unix://${dir}/n.sock`],
            { ready: /^nbd/ },
          ),
          async (exp) => {
            await node.stop("SIGKILL");
            // A client whose read waits for the dead node keeps the NBD server from closing.
            const reading = timedRead(exp.lines[0]!);
            await new Promise((r) => setTimeout(r, 500));
            const stopped = await timedStop(exp);
            assert.ok(
              stopped.ms < DEADLINE_MS + SLACK_MS,
              `exited after ${stopped.ms} ms (code ${stopped.code}); deadline ${DEADLINE_MS} ms`,
            );
            assert.notEqual(stopped.code, 137, "it had to be killed");
            assert.match(stopped.stderr, /shutdown deadline of 5s passed.*abandoned=.*NBD server/);
            assert.match((await reading).out, /read failed/, "the waiting read failed");
          },
        ))
    ),
});

Deno.test({
  name: "shutdown: dst export --io-timeout 1s fails a read against a dead node with EIO in ~1 s",
  ignore: skipWithout("qemu-io"),
  fn: () =>
    withDir((dir) =>
      withNode(dir, (node) =>
        using(
          spawnDst([
            "export",
            "--listen",
            `unix://${dir}/nbd.sock`,
            "--remote",
            `unix://${dir}/n.sock`,
            "--io-timeout",
            "1s",
          ], { ready: /^nbd/ }),
          async (exp) => {
            const healthy = await timedRead(exp.lines[0]!);
            assert.match(healthy.out, /read 4096\/4096 bytes/, healthy.out);
            await node.stop("SIGKILL");
            const lost = await timedRead(exp.lines[0]!);
            assert.match(lost.out, /read failed: Input\/output error/, lost.out);
            // It waited for the node (not failed at once), and far less than the 30 s default.
            assert.ok(lost.ms >= 900 && lost.ms < 10_000, `the read failed after ${lost.ms} ms`);
            assert.ok((await timedStop(exp)).ms < DEADLINE_MS + SLACK_MS);
          },
        ))
    ),
});

/** `dst serve` of a linear storage over one remote node (not a mirror leg: it may wait). */
async function serveLinear(dir: string, leaf: Record<string, unknown>, extra: string[] = []) {
  const config = `${dir}/topology.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      storage: "lin",
      nodes: {
        lin: { kind: "linear", children: ["far"] },
        far: { kind: "remote", url: `unix://${dir}/n.sock`, ...leaf },
      },
      export: { listen: [`unix://${dir}/nbd.sock`] },
    }),
  );
  return await spawnDst(["serve", "--config", config, ...extra], { ready: /^nbd/ });
}

for (
  const [how, leaf, extra] of [
    ['the leaf\'s "ioTimeout"', { ioTimeout: "1s" }, []],
    ["dst serve --io-timeout", {}, ["--io-timeout", "1s"]],
  ] as const
) {
  Deno.test({
    name: `shutdown: ${how} fails a read of a dead remote leaf with EIO in ~1 s`,
    ignore: skipWithout("qemu-io"),
    fn: () =>
      withDir((dir) =>
        withNode(dir, (node) =>
          using(serveLinear(dir, leaf, [...extra]), async (serve) => {
            await node.stop("SIGKILL");
            const lost = await timedRead(serve.lines[0]!);
            assert.match(lost.out, /read failed: Input\/output error/, lost.out);
            assert.ok(lost.ms >= 900 && lost.ms < 10_000, `the read failed after ${lost.ms} ms`);
          }))
      ),
  });
}

Deno.test({
  name: "shutdown: SIGTERM stops dst serve within the deadline while a client waits on a dead node",
  ignore: skipWithout("qemu-io"),
  fn: () =>
    withDir((dir) =>
      withNode(dir, (node) =>
        using(serveLinear(dir, {}), async (serve) => {
          await node.stop("SIGKILL");
          const reading = timedRead(serve.lines[0]!);
          await new Promise((r) => setTimeout(r, 500));
          const stopped = await timedStop(serve);
          assert.ok(stopped.ms < DEADLINE_MS + SLACK_MS, `exited after ${stopped.ms} ms`);
          assert.notEqual(stopped.code, 137, "it had to be killed");
          assert.match(stopped.stderr, /abandoning what is still running.*abandoned=/);
          assert.match((await reading).out, /read failed/);
        }))
    ),
});

/** Pids of the live child processes of `pid`, from /proc. */
async function childrenOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`).catch(() => "");
    // Fields after the ")" that ends the command name: state, ppid, ...
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[1]) === pid && fields[0] !== "Z") found.push(Number(entry.name));
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

Deno.test("shutdown: SIGTERM stops dst start and its stopped node processes within the deadline", async () => {
  await withDir(async (dir) => {
    const start = await spawnDst([
      "start",
      "--data",
      `${dir}/data`,
      "--size",
      "8M",
      "--nbd",
      `unix://${dir}/nbd.sock`,
      "--status",
      "127.0.0.1:0",
    ], { ready: /^Ctrl-C/ });
    const nodes = await childrenOf(start.pid);
    try {
      assert.equal(nodes.length, 3, "three dst node processes");
      // Stopped nodes can act on no signal: only the deadline ends this shutdown.
      for (const pid of nodes) Deno.kill(pid, "SIGSTOP");
      const started = performance.now();
      start.child.kill("SIGTERM");
      // Measured on the exit itself: the harness's stop() would also wait for the nodes' pipes.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const exited = await Promise.race([
        start.child.status.then(() => true),
        new Promise<false>((r) => timer = setTimeout(() => r(false), DEADLINE_MS + SLACK_MS)),
      ]);
      clearTimeout(timer);
      assert.ok(exited, `still running ${performance.now() - started} ms after SIGTERM`);
      for (let i = 0; i < 50 && nodes.some(alive); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(nodes.filter(alive), [], "no node process outlives dst start");
      const { stderr } = await start.stop("SIGKILL");
      assert.match(stderr, /abandoned=/);
    } finally {
      for (const pid of nodes.filter(alive)) Deno.kill(pid, "SIGKILL");
      await start.stop("SIGKILL");
    }
  });
});
