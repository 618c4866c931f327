/**
 * Every drill shipped in drills/ runs in its short form through the real `dst drill --short
 * --json` command (real dst processes, nbdcopy verifying every block), and must pass: no
 * acknowledged write lost, no client error outside the drill's windows, every leg converged, each
 * fault detected and recovered. A drill that needs network namespaces where `ip netns` is not
 * allowed exits 77 and is skipped here with its reason. Plus the drill file's validation.
 */
import assert from "node:assert/strict";
import { DrillError, parseDrill } from "../drill/schema.ts";
import type { DrillReport } from "../drill/runner.ts";
import { runDst } from "./support/dst_process.ts";
import { inCI, skipWithout } from "./support/nbd_harness.ts";

const drillsDir = new URL("../drills/", import.meta.url).pathname;

async function runDrillFile(file: string): Promise<DrillReport | undefined> {
  const { code, stdout, stderr } = await runDst(["drill", "--short", "--json", drillsDir + file]);
  const report = JSON.parse(stdout) as DrillReport;
  if (code === 77) {
    // etcd is a Debian package CI installs: missing there, the drill fails instead.
    assert.ok(!(inCI && /etcd/.test(report.skipReason ?? "")), `${file}: ${report.skipReason}`);
    console.log(`skipping ${file}: ${report.skipReason}`);
    return undefined;
  }
  const summary = report.faults.map((f) =>
    `${f.action} ${f.process}: detect ${f.detectMs} ms, recover ${f.recoverMs} ms, ` +
    (f.takeoverMs === undefined
      ? `resynced ${f.resyncedBytes} copied ${f.copiedBytes}`
      : `taken over by ${f.takenOverBy} in ${f.takeoverMs} ms, client back after ${f.clientMs} ms`)
  ).join("\n");
  assert.equal(
    code,
    report.verdict === "pass" ? 0 : 1,
    `exit code follows the verdict\n${stderr}`,
  );
  assert.deepEqual(report.failures, [], `${file} failed:\n${summary}\n${story(report)}`);
  assert.equal(report.verdict, "pass");
  console.log(`${file} (${report.durationMs} ms)\n${summary}`);
  return report;
}

/** A failed drill's timeline and the end of each process's log: why, without a rerun. */
function story(report: DrillReport): string {
  const events = report.events.slice(-80).map((e) => `${(e.t / 1000).toFixed(2)}s ${e.what}`);
  const logs = Object.entries(report.logs ?? {}).map(([name, log]) =>
    `--- ${name} (end of its log) ---\n${log.slice(-3000)}`
  );
  return ["--- timeline (last 80 events) ---", ...events, ...logs].join("\n");
}

/** The checks every passing report must carry, so a drill cannot pass by checking nothing. */
function assertMeasured(report: DrillReport, faults: number, parity = false): void {
  assert.equal(report.faults.length, faults, "every fault was recorded");
  for (const f of report.faults) {
    if (f.interrupted === true) continue;
    assert.ok(f.detectMs !== undefined, `${f.action} ${f.process} was detected`);
    assert.ok(f.recoverMs !== undefined, `${f.action} ${f.process} recovered`);
  }
  assert.ok(report.workload.writeRounds >= 3, "the client kept writing");
  assert.ok(report.workload.bytesVerified > 0, "the client read back and verified");
  const sums = new Set(Object.values(report.legs));
  assert.ok(Object.keys(report.legs).length >= 2, "leg digests were taken");
  // A parity's legs differ by design; the runner failed the drill unless every stripe adds up.
  if (!parity) assert.equal(sums.size, 1, "every leg holds the same bytes");
}

const drills: [file: string, faults: number][] = [
  ["leg_killed.json", 1],
  ["leg_hung.json", 1],
  ["link_cut.json", 1],
  ["new_media.json", 1],
  ["export_restart.json", 1],
  ["resync_interrupted.json", 2],
  ["mirror_flapping.json", 4],
  ["tree_middle_lost.json", 1],
  ["leg_suspended.json", 1],
  ["last_leg_hung.json", 2],
  ["tree_three_levels.json", 2],
  ["exporter_failover.json", 1],
  ["exporter_failover_cut.json", 1],
  ["parity_leg_killed.json", 1],
  ["parity_new_media.json", 1],
];

/**
 * Exporter failover drills elect through etcd (2 s lease): the standby must take over within
 * the lease plus this bound, stated generously for loaded machines (measured: about 0.5 s
 * after the lease on an idle one). Not a speed test: a takeover that never comes in time is
 * a failover that does not work.
 */
const TAKEOVER_BOUND_MS = 10_000;
const LEASE_MS = 2000;

function assertTakenOver(report: DrillReport): void {
  for (const f of report.faults) {
    assert.ok(f.takenOverBy !== undefined, `${f.action} ${f.process}: another exporter took over`);
    assert.ok(
      f.takeoverMs! <= LEASE_MS + TAKEOVER_BOUND_MS,
      `taken over in ${f.takeoverMs} ms, over the lease plus ${TAKEOVER_BOUND_MS} ms`,
    );
    assert.ok(f.notes.includes("exited with code 3"), "the old exporter was fenced and exited");
  }
  assert.equal(report.workload.lostBlocks, 0, "no acknowledged write lost");
}

/**
 * Drills that find a real dst bug, kept running by hand (`dst drill --short drills/FILE`) until
 * it is fixed, then taken out of this set. None now: last_leg_hung.json (a mirror that lost its
 * last in-sync leg to SIGSTOP never took it back) is fixed in actors/mirror/.
 */
const knownBugs = new Set<string>();

for (const [file, faults] of drills) {
  Deno.test({
    name: `drill: ${file}`,
    ignore: knownBugs.has(file) ||
      skipWithout(...(file.startsWith("exporter_failover") ? ["nbdcopy", "etcd"] : ["nbdcopy"])),
    fn: async () => {
      const report = await runDrillFile(file);
      if (report !== undefined) assertMeasured(report, faults, file.startsWith("parity_"));
      if (report !== undefined && file.startsWith("exporter_failover")) assertTakenOver(report);
    },
  });
}

Deno.test("drill: every file in drills/ is run by this test", async () => {
  const files = [];
  for await (const entry of Deno.readDir(drillsDir)) {
    if (entry.name.endsWith(".json")) files.push(entry.name);
  }
  assert.deepEqual(files.sort(), drills.map(([f]) => f).sort());
});

Deno.test("drill: a bad drill file is refused with every problem named", () => {
  assert.throws(
    () =>
      parseDrill({
        name: "bad",
        size: "16M",
        processes: {
          a: { kind: "node" },
          m: { kind: "serve", mirror: ["a", "ghost"] },
          n: { kind: "serve", mirror: ["a"] },
        },
        workload: { roundBytes: ["1M"] },
        timeline: [{ do: "cut", process: "a" }, { do: "explode" }],
      }),
    (error: unknown) => {
      assert.ok(error instanceof DrillError);
      assert.match(error.message, /timeline\[1\]\.do/);
      return true;
    },
  );
  assert.throws(
    () =>
      parseDrill({
        name: "bad graph",
        size: "16M",
        processes: {
          a: { kind: "node" },
          m: { kind: "serve", mirror: ["a", "ghost"] },
          n: { kind: "serve", mirror: ["a"] },
        },
        workload: { roundBytes: ["1M"] },
        timeline: [{ do: "cut", process: "a" }, { do: "replace-media", process: "m" }],
      }),
    (error: unknown) => {
      assert.ok(error instanceof DrillError);
      const text = error.problems.join("\n");
      assert.match(text, /processes\.m\.mirror\[1\]: no process named "ghost"/);
      assert.match(text, /processes\.n\.mirror\[0\]: "a" is already a leg of "m"/);
      assert.match(text, /exactly one serve that no other serve mirrors/);
      assert.match(text, /timeline\[0\]: cut needs "network": "netns"/);
      assert.match(text, /timeline\[1\]: replace-media needs a node process/);
      return true;
    },
  );
});
