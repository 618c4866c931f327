/**
 * `dst drill FILE`: runs a scripted failover drill (see drills/ and drill/schema.ts) against real
 * dst processes and prints its timeline as it runs, then the measured detect and recover times
 * and a verdict. Exit code 0 when it passed, 1 when it failed, 77 when it was skipped (it needs
 * network namespaces this machine does not allow).
 */
import { loadDrill } from "../drill/schema.ts";
import type { DrillReport } from "../drill/runner.ts";
import { runDrill } from "../drill/runner.ts";
import { formatSize } from "../util/size.ts";
import { type Command, UsageError } from "./command.ts";
import { parseArgs } from "node:util";

const help = `Usage: dst drill FILE [--json] [--short]

Runs a failover drill: starts the dst node and dst serve processes the drill file declares,
writes self-describing blocks through nbdcopy and reads every one back, plays the timeline of
faults (kill -9 and restart, SIGSTOP/SIGCONT, link cut and heal, netem latency and loss, new
media, suspend/resume through the control API, export restart) and checks that no acknowledged
write was lost, that the client saw no error while an in-sync leg remained, and that every leg
converged (digest of each leg's media). Prints the timeline with what the status endpoints
showed, the time to detect and to recover each fault, resync bytes, and a verdict.

Options:
  --json      print one JSON report at the end instead of the timeline
  --short     the drill's short form (smaller device, shorter sleeps), as CI runs it
  -h, --help  show this help

Exit codes: 0 passed, 1 failed, 77 skipped (needs network namespaces: ip netns not allowed).

Drill steps ("do"): sleep, wait (for in-sync | out-of-sync | rebuilding | active), rounds, kill,
start, exit (the process ends by itself, with a code), restart, hang, unhang, cut, heal, netem,
clear-netem, replace-media, suspend, resume. A drill with "cluster" starts an etcd and its
exporters elect the active one (skipped, exit 77, where etcd is not installed).

Example:
  dst drill drills/leg_killed.json`;

const seconds = (ms: number | undefined) => ms === undefined ? "—" : `${(ms / 1000).toFixed(2)} s`;

/** The summary printed after the timeline. */
export function summary(report: DrillReport): string[] {
  const lines = ["", `drill: ${report.drill}`];
  for (const f of report.faults) {
    if (f.takenOverBy !== undefined || f.takeoverMs !== undefined) {
      lines.push(
        `  ${f.action} ${f.process} at ${seconds(f.atMs)}: ${f.takenOverBy ?? "—"} elected in ` +
          `${seconds(f.detectMs)}, serving in sync in ${seconds(f.takeoverMs)}, client writes ` +
          `acknowledged again after ${seconds(f.clientMs)}` +
          (f.notes.length === 0 ? "" : ` [${f.notes.join(", ")}]`),
      );
      continue;
    }
    const resync = f.resyncedBytes === undefined
      ? ""
      : `, resynced ${formatSize(f.resyncedBytes)} (copied ${formatSize(f.copiedBytes ?? 0)})`;
    lines.push(
      `  ${f.action} ${f.process} at ${seconds(f.atMs)}: detected in ${seconds(f.detectMs)}, ` +
        `recovered ${seconds(f.recoverMs)} after ${f.healAction ?? "—"}${resync}` +
        (f.notes.length === 0 ? "" : ` [${f.notes.join(", ")}]`),
    );
  }
  const w = report.workload;
  lines.push(
    `  client: ${w.writeRounds} write rounds, ${formatSize(w.bytesWritten)} written, ` +
      `${formatSize(w.bytesVerified)} read and verified, ${w.clientErrors} errors` +
      (w.toleratedClientErrors > 0 ? ` (+${w.toleratedClientErrors} tolerated)` : "") +
      `, ${w.lostBlocks ?? 0} acknowledged blocks lost`,
  );
  for (const failure of report.failures) lines.push(`  FAIL: ${failure.split("\n")[0]}`);
  lines.push(
    report.verdict === "skipped"
      ? `SKIPPED: ${report.skipReason}`
      : `${report.verdict === "pass" ? "PASS" : "FAIL"} in ${seconds(report.durationMs)}`,
  );
  return lines;
}

async function run(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        json: { type: "boolean" },
        short: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const [file, ...extra] = parsed.positionals;
  if (file === undefined) throw new UsageError("a drill FILE is required");
  if (extra.length > 0) throw new UsageError(`one drill file at a time, got ${extra.join(" ")}`);
  const drill = await loadDrill(file);
  const json = parsed.values.json === true;
  const report = await runDrill(drill, {
    short: parsed.values.short === true,
    ...(json ? {} : {
      onEvent: (e) => console.log(`${(e.t / 1000).toFixed(2).padStart(8)}s  ${e.what}`),
    }),
  });
  if (json) console.log(JSON.stringify(report, null, 2));
  else for (const line of summary(report)) console.log(line);
  return report.verdict === "pass" ? 0 : report.verdict === "skipped" ? 77 : 1;
}

export const drillCommand: Command = {
  name: "drill",
  summary: "run a scripted failover drill against real dst processes",
  help,
  run,
};
