/**
 * `dst start` as an operator lives with it, through real processes: fresh media start in sync
 * with no resync; a node process killed with `kill -9` is started again by `dst start` itself
 * and the status says so under its leg (restarts, how it died), while the leg comes back in
 * sync; a Ctrl-C from the terminal (SIGINT to the whole process group) stops everything with no
 * warning logged; and if `dst start` itself is killed, its nodes do not outlive it.
 */
import assert from "node:assert/strict";
import type { TreeJson } from "../status/tree.ts";
import {
  alive,
  dst,
  kill,
  nodeNamed,
  spawnStart,
  statusOf,
  waitFor,
  withTempDir,
} from "./support/cli_run.ts";

interface Process {
  readonly state: string;
  readonly pid?: number;
  readonly restarts: number;
  readonly lastExit?: { readonly signal: string | null };
  readonly summary: string;
}

const processOf = (tree: TreeJson, leg: string) =>
  nodeNamed(tree, leg)?.detail?.process as Process | undefined;

/** Lines on stderr that are warnings or errors, except the nodes' note on running without secret. */
function complaints(stderr: string): string[] {
  return stderr.split("\n").filter((l) =>
    /\b(warn|error)\b|Warning/.test(l) && !/no cluster secret: listening on loopback only/.test(l)
  );
}

Deno.test("dst start: fresh media in sync without resync; a killed node is restarted and shown; Ctrl-C is quiet", async () => {
  await withTempDir("dst-start-", async (dir) => {
    const data = `${dir}/data`;
    const args = [
      "--data",
      data,
      "--size",
      "8M",
      "--nbd",
      `unix://${dir}/nbd.sock`,
      "--status",
      "127.0.0.1:0",
    ];
    const start = await spawnStart(args);
    let stopped = false;
    try {
      // Fresh storage: every leg in sync at once, nothing copied.
      const first = (await statusOf(start.statusUrl)).tree;
      assert.equal(first.state, "in-sync");
      for (const leg of first.children) {
        assert.equal(leg.state, "in-sync", leg.name);
        assert.equal(leg.detail?.resyncedBytes, 0, `${leg.name} took no resync`);
        assert.equal(leg.detail?.lastResync, undefined);
        assert.equal(processOf(first, leg.name)?.state, "running");
      }

      const victim = processOf(first, "leg1")!.pid!;
      assert.ok(start.nodePids().includes(victim), "the pid shown is dst start's child");
      kill(victim, "SIGKILL");
      const back = await waitFor(
        async () => {
          const tree = (await statusOf(start.statusUrl)).tree;
          const p = processOf(tree, "leg1");
          return p?.state === "running" && p.restarts === 1 && nodeNamed(tree, "leg1")?.state ===
              "in-sync"
            ? { tree, p }
            : undefined;
        },
        30_000,
        "dst start to restart the killed node and the leg to rejoin",
      );
      assert.notEqual(back.p.pid, victim, "a new process");
      assert.equal(back.p.lastExit?.signal, "SIGKILL");
      assert.match(back.p.summary, /restarted 1×; last exit: signal SIGKILL/);
      const text = await dst(["status", "--data", data]);
      assert.equal(text.code, 0, text.stdout);
      assert.match(text.stdout, /leg1 \(remote\) in-sync[^\n]*\n[^\n]*process: running \(pid \d+/);
      assert.doesNotMatch(text.stdout, /errors \d/, "a recovered leg shows no old errors");

      // A terminal's Ctrl-C reaches the whole foreground process group.
      kill(-start.pid, "SIGINT");
      const { code, stderr } = await start.exited();
      stopped = true;
      assert.equal(code, 0, stderr);
      const restartLines = /node process exited; restarting it|link to node lost|mirror leg moved/;
      assert.deepEqual(
        complaints(stderr).filter((l) => !restartLines.test(l)),
        [],
        "a clean stop logs no warning",
      );
      const afterKill = stderr.slice(stderr.lastIndexOf("node process restarted"));
      assert.deepEqual(complaints(afterKill), [], "no leg leaves the in-sync set at Ctrl-C");
      assert.match(stderr, /shutting down signal="SIGINT"/);
      await assert.rejects(Deno.lstat(`${data}/start.json`), "the start record is removed");
    } finally {
      if (!stopped) {
        kill(-start.pid, "SIGKILL");
        for (const pid of start.nodePids()) kill(pid, "SIGKILL");
        await start.exited();
      }
    }
  });
});

Deno.test("dst start: nodes do not outlive a dst start killed with -9", async () => {
  await withTempDir("dst-start-", async (dir) => {
    const start = await spawnStart([
      "--data",
      `${dir}/data`,
      "--size",
      "8M",
      "--nbd",
      `unix://${dir}/nbd.sock`,
      "--status",
      "127.0.0.1:0",
    ]);
    const nodes = start.nodePids();
    try {
      assert.equal(nodes.length, 3);
      kill(start.pid, "SIGKILL");
      await waitFor(
        () => nodes.some(alive) ? undefined : true,
        15_000,
        "the node processes to stop after their parent died",
      );
    } finally {
      for (const pid of nodes.filter(alive)) kill(pid, "SIGKILL");
      await start.exited();
    }
  });
});
