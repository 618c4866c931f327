/**
 * Runs one drill: starts its processes, waits for the storage to be in sync, runs the verifying
 * workload while the timeline's faults and waits play out, then checks that no acknowledged write
 * was lost, that the client saw no error outside the windows the drill allows, that the status
 * shows everything in sync again and that every leg's media holds the same bytes. Reports each
 * event as it happens and a verdict with the measured detect and recover times.
 */
import { formatSize } from "../util/size.ts";
import { etcdMissing, type EtcdServer, startEtcd } from "../cluster/etcd_server.ts";
import { ExporterGroup } from "./cluster.ts";
import { firstBadStripe, mediaDigest } from "./media_digest.ts";
import { type Fault, type FaultMeasure, measure } from "./measure.ts";
import { Namespaces, namespacesUnavailable, netemUnavailable } from "./netns.ts";
import { planDrill } from "./plan.ts";
import { DrillProcess } from "./process.ts";
import { type Drill, type DrillStep, parentOf, rootOf } from "./schema.ts";
import { control, describe, type Endpoint, type Sample, StatusWatch } from "./status.ts";
import { type RoundEvent, Workload } from "./workload.ts";

export interface DrillEvent {
  /** Milliseconds since the drill began. */
  readonly t: number;
  readonly what: string;
}

export interface DrillReport {
  readonly drill: string;
  readonly verdict: "pass" | "fail" | "skipped";
  readonly skipReason?: string;
  readonly failures: readonly string[];
  readonly faults: readonly FaultMeasure[];
  readonly workload: {
    readonly writeRounds: number;
    readonly bytesWritten: number;
    readonly bytesVerified: number;
    readonly clientErrors: number;
    readonly toleratedClientErrors: number;
    /** Blocks read back that broke the model: acknowledged writes lost (must be 0). */
    readonly lostBlocks: number;
  };
  /** sha256 of each node's data area after everything stopped. */
  readonly legs: Readonly<Record<string, string>>;
  readonly events: readonly DrillEvent[];
  /** When the drill failed: the end of each process's log, to tell why without a rerun. */
  readonly logs?: Readonly<Record<string, string>>;
  readonly durationMs: number;
}

export interface DrillOptions {
  /** The CI form: the drill's `short` size and sleep scale. */
  readonly short?: boolean;
  /** Called with each event as it happens. */
  readonly onEvent?: (event: DrillEvent) => void;
  /** How long to wait for the storage to settle in sync at start and at the end. */
  readonly settleMs?: number;
}

/** Steps that bring a fault on, and the step that takes each away. */
const HEALS: Record<string, string> = {
  kill: "start",
  hang: "unhang",
  cut: "heal",
  netem: "clear-netem",
  suspend: "resume",
};

export async function runDrill(drill: Drill, options: DrillOptions = {}): Promise<DrillReport> {
  const began = performance.now();
  const now = () => performance.now() - began;
  const events: DrillEvent[] = [];
  const failures: string[] = [];
  const note = (what: string) => {
    const event = { t: Math.round(now()), what };
    events.push(event);
    options.onEvent?.(event);
  };
  const fail = (what: string) => {
    failures.push(what);
    note(`FAIL ${what}`);
  };
  const empty = {
    writeRounds: 0,
    bytesWritten: 0,
    bytesVerified: 0,
    clientErrors: 0,
    toleratedClientErrors: 0,
    lostBlocks: 0,
  };
  const unavailable = drill.cluster !== undefined && etcdMissing() !== undefined
    ? `this drill elects exporters through etcd and ${etcdMissing()}`
    : drill.network === "netns"
    ? await namespacesUnavailable().then((why) =>
      why === undefined ? undefined : `this drill needs network namespaces and ${why}`
    )
    : undefined;
  {
    if (unavailable !== undefined) {
      const why = unavailable;
      note(`skipped: ${why}`);
      return {
        drill: drill.name,
        verdict: "skipped",
        skipReason: why,
        failures,
        faults: [],
        workload: empty,
        legs: {},
        events,
        durationMs: Math.round(now()),
      };
    }
  }
  const short = options.short === true;
  const size = (short ? drill.short?.size : undefined) ?? drill.size;
  const sleepScale = short ? drill.short?.sleepScale ?? 1 : 1;
  const settleMs = options.settleMs ?? (short ? 30_000 : 60_000);
  const dir = await Deno.makeTempDir({ prefix: "dst-drill-" });
  const namespaces = drill.network === "netns" ? new Namespaces() : undefined;
  const procs = new Map<string, DrillProcess>();
  let watch: StatusWatch | undefined;
  let workload: Workload | undefined;
  const faults: Fault[] = [];
  const legs: Record<string, string> = {};
  let allowClientErrors = false;
  let clientErrors = 0;
  let errorRun = 0;
  let tolerated = 0;
  let etcd: EtcdServer | undefined;
  let group: ExporterGroup | undefined;
  /** When write rounds were acknowledged (failover measures). */
  const writesOk: number[] = [];
  try {
    const plan = await planDrill(drill, dir, size, namespaces);
    note(
      `drill "${drill.name}": ${plan.processes.length} processes, ${formatSize(size)} legs` +
        (namespaces === undefined ? ", Unix sockets" : ", one network namespace each"),
    );
    for (const p of plan.processes) procs.set(p.name, new DrillProcess(p));
    const proc = (name: string) => procs.get(name)!;
    const startProc = async (name: string) => {
      const p = proc(name);
      await p.start();
      note(
        `started ${p.plan.kind} ${name} (pid ${p.pid})` +
          (p.served.standby !== undefined && p.served.statusUrl === undefined
            ? ", standing by"
            : ""),
      );
    };
    if (plan.etcd !== undefined) {
      etcd = await startEtcd({
        host: plan.etcd.host,
        ports: plan.etcd.ports,
        ...(plan.etcd.ns === undefined ? {} : { ns: plan.etcd.ns }),
      });
      note(`etcd ready (${etcd.url}${plan.etcd.ns === undefined ? "" : " in its namespace"})`);
      group = new ExporterGroup(
        plan.exporters,
        procs,
        plan.nbdSockets,
        (serve) => watch?.latest(serve),
        now,
      );
      group.watch(
        (e) => note(`${e} elected the active exporter`),
        (e, line) => note(`${e}: ${line.replace(/^dst serve \w+ /, "")}`),
      );
    }
    for (const p of plan.processes) {
      await startProc(p.name);
      if (group !== undefined && p.name === plan.root) {
        // The root is elected first (nobody else runs), before its replicas stand by.
        const end = now() + 30_000;
        while (proc(p.name).served.statusUrl === undefined) {
          if (now() > end) throw new Error(`${p.name} was not elected within 30 s`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
    const endpoints: Endpoint[] = plan.processes.filter((p) => p.kind === "serve").map((p) => ({
      serve: p.name,
      url: () => {
        const pr = proc(p.name);
        return pr.running && !pr.hung ? pr.served.statusUrl : undefined;
      },
      ...(p.ns === undefined ? {} : { ns: p.ns }),
    }));
    watch = new StatusWatch(
      endpoints,
      now,
      (s: Sample) => note(`status ${s.serve}: ${describe(s)}`),
    );
    watch.start();
    const w = watch;
    const g = group;
    const allInSync = () =>
      endpoints.every((e) =>
        g?.exporters.includes(e.serve) === true || w.latest(e.serve)?.state === "in-sync"
      ) && (g === undefined || g.inSync());
    await w.until(allInSync, settleMs, "every mirror in sync at start");

    // A parity root offers its data legs' worth (64 KiB units fill the legs of a drill).
    const rootSpec = drill.processes[rootOf(drill)];
    const exportSize = rootSpec?.kind === "serve" && rootSpec.layout === "parity"
      ? size * ((rootSpec.mirror?.length ?? 3) - 1)
      : size;
    workload = new Workload(
      () =>
        g !== undefined
          ? g.uri()
          : proc(plan.root).running
          ? `nbd+unix:///dst?socket=${plan.nbdSocket}`
          : undefined,
      exportSize,
      drill.workload.roundBytes.map((b) => Math.min(b, exportSize)),
      dir,
      (r: RoundEvent) => {
        const what = `${r.kind} seq ${r.seq} ${formatSize(r.bytes)} ${r.ms} ms`;
        if (r.kind === "write" && r.error === undefined) writesOk.push(now());
        if (r.lost !== undefined) fail(`acknowledged write lost (${what}): ${r.lost}`);
        else if (r.error === undefined) note(`client ${what} ok`);
        else if (allowClientErrors) {
          tolerated++;
          if (++errorRun === 1) note(`client ${what} failed (tolerated here): ${r.error}`);
          else if (errorRun % 20 === 0) note(`client still failing (${errorRun} rounds in a row)`);
        } else {
          // A storage that is down fails every round the same way: one failure line per run
          // of errors, counted, rather than hundreds.
          clientErrors++;
          if (++errorRun === 1) {
            const root = w.latest(plan.root);
            fail(
              `client I/O error (${what}): ${r.error}; export showed ${
                root ? describe(root) : "?"
              }`,
            );
          } else if (errorRun % 20 === 0) {
            note(`client still failing (${errorRun} rounds in a row)`);
          }
          return;
        }
        if (r.error === undefined && errorRun > 0) {
          note(`client works again after ${errorRun} failed rounds`);
          errorRun = 0;
        }
      },
    );
    // A client of a cluster reconnects to whichever exporter is active.
    workload.followUri = g !== undefined;
    workload.start();

    const legState = (name: string) => {
      const parent = parentOf(drill, name);
      if (parent === undefined) return w.latest(name)?.state;
      return w.latest(parent)?.legs.find((l) => l.name === name)?.state;
    };
    const openFault = (step: number, action: string, process: string) =>
      faults.push({
        step,
        action,
        process,
        parent: parentOf(drill, process),
        at: now(),
        notes: [],
      });
    const closeFault = (action: string, process: string) => {
      const open = [...faults].reverse().find((f) =>
        f.process === process && f.healAt === undefined && HEALS[f.action] === action
      );
      if (open !== undefined) {
        open.healAt = now();
        open.healAction = action;
      }
    };
    const token = async (serve: string) =>
      (await Deno.readTextFile(plan.tokenFiles.get(serve)!)).trim();
    const endpointOf = (serve: string) => endpoints.find((e) => e.serve === serve)!;

    const runStep = async (step: DrillStep, i: number) => {
      switch (step.do) {
        case "sleep":
          await new Promise((r) => setTimeout(r, Math.round(step.ms * sleepScale)));
          return;
        case "rounds":
          note(`waiting for ${step.count} write rounds`);
          await workload!.rounds(step.count);
          return;
        case "wait": {
          const timeout = step.timeoutMs ?? settleMs;
          const ok = step.for === "active"
            ? () => g !== undefined && g.active() === step.process && g.inSync()
            : step.process === undefined
            ? (step.for === "in-sync" ? allInSync : () => !allInSync())
            : step.for === "in-sync"
            ? () => legState(step.process!) === "in-sync"
            : step.for === "rebuilding"
            ? () => legState(step.process!) === "rebuilding"
            : () => {
              const s = legState(step.process!);
              return s !== undefined && s !== "in-sync";
            };
          const what = `${step.process ?? "storage"} ${step.for}`;
          const from = now();
          await w.until(ok, timeout, what);
          note(`${what} after ${Math.round(now() - from)} ms`);
          return;
        }
        case "kill":
          await proc(step.process).stop("SIGKILL");
          note(`kill -9 ${step.process}`);
          openFault(i, "kill", step.process);
          return;
        case "start":
          await startProc(step.process);
          closeFault("start", step.process);
          return;
        case "exit": {
          const code = await proc(step.process).exited(step.timeoutMs ?? settleMs);
          if (code === undefined) {
            throw new Error(`${step.process} did not exit within ${step.timeoutMs ?? settleMs} ms`);
          }
          if (step.code !== undefined && code !== step.code) {
            throw new Error(`${step.process} exited with code ${code}, expected ${step.code}`);
          }
          note(
            `${step.process} exited by itself with code ${code}${code === 3 ? " (fenced)" : ""}`,
          );
          [...faults].reverse().find((f) => f.process === step.process)?.notes.push(
            `exited with code ${code}`,
          );
          return;
        }
        case "restart": {
          const signal = step.signal ?? "SIGKILL";
          openFault(i, "restart", step.process);
          await proc(step.process).stop(signal);
          note(`${signal === "SIGKILL" ? "kill -9" : "SIGTERM"} ${step.process}, restarting it`);
          await startProc(step.process);
          const f = faults[faults.length - 1]!;
          f.healAt = now();
          f.healAction = "restart";
          return;
        }
        case "hang":
          proc(step.process).hang();
          note(`SIGSTOP ${step.process} (hung)`);
          openFault(i, "hang", step.process);
          return;
        case "unhang":
          proc(step.process).unhang();
          note(`SIGCONT ${step.process}`);
          closeFault("unhang", step.process);
          return;
        case "cut":
          if (g?.exporters.includes(step.process)) {
            await namespaces!.isolate(step.process, "down");
            note(`every link of ${step.process} cut (nodes and etcd; veths down)`);
          } else {
            await namespaces!.setLink(step.process, "down");
            note(`link to ${step.process} cut (veth down)`);
          }
          openFault(i, "cut", step.process);
          return;
        case "heal":
          if (g?.exporters.includes(step.process)) {
            await namespaces!.isolate(step.process, "up");
            note(`every link of ${step.process} healed (veths up)`);
          } else {
            await namespaces!.setLink(step.process, "up");
            note(`link to ${step.process} healed (veth up)`);
          }
          closeFault("heal", step.process);
          return;
        case "netem": {
          const link = namespaces!.linkOf(step.process);
          const why = await netemUnavailable(link.parentNs, link.parentDev);
          if (why !== undefined) {
            note(`netem skipped: ${why}`);
            return;
          }
          await namespaces!.netem(step.process, {
            ...(step.delayMs === undefined ? {} : { delayMs: step.delayMs }),
            ...(step.lossPercent === undefined ? {} : { lossPercent: step.lossPercent }),
          });
          note(
            `netem on link to ${step.process}: delay ${step.delayMs ?? 0} ms, loss ${
              step.lossPercent ?? 0
            }%`,
          );
          openFault(i, "netem", step.process);
          return;
        }
        case "clear-netem":
          await namespaces!.netem(step.process, undefined).catch(() => {});
          note(`netem cleared on link to ${step.process}`);
          closeFault("clear-netem", step.process);
          return;
        case "replace-media": {
          const p = proc(step.process);
          if (p.running) throw new Error(`replace-media: ${step.process} must be stopped first`);
          await Deno.remove(plan.mediaFiles.get(step.process)!);
          note(`media of ${step.process} replaced by an empty file (made at its next start)`);
          const open = [...faults].reverse().find((f) => f.process === step.process);
          open?.notes.push("media replaced");
          return;
        }
        case "suspend":
        case "resume": {
          const parent = parentOf(drill, step.process)!;
          await control(endpointOf(parent), await token(parent), step.process, step.do);
          note(`${step.do} ${step.process} through ${parent}'s control API`);
          if (step.do === "suspend") openFault(i, "suspend", step.process);
          else closeFault("resume", step.process);
          return;
        }
      }
    };

    for (const [i, step] of drill.timeline.entries()) {
      if (step.allowClientErrors !== undefined) allowClientErrors = step.allowClientErrors;
      try {
        await runStep(step, i);
      } catch (error) {
        fail(`timeline[${i}] ${step.do}: ${(error as Error).message}`);
        break;
      }
    }
    allowClientErrors = false;

    // Heal whatever the timeline left broken, so the storage can converge.
    for (const p of procs.values()) {
      if (p.hung) p.unhang();
      if (!p.running) {
        fail(`${p.name} was left stopped by the timeline; starting it to converge`);
        await startProc(p.name).catch((e) => fail((e as Error).message));
      }
    }
    await w.until(allInSync, settleMs, "every mirror in sync at the end").then(
      () => note("every mirror in sync"),
      (e) => fail((e as Error).message),
    );
    await workload.stop();
    note("workload stopped; final read of the whole device");
    if (!(await workload.verify())) fail("the final read of the whole device failed");
  } catch (error) {
    fail((error as Error).message);
  } finally {
    await workload?.stop();
    await watch?.stop();
    // Parents first, so no serve sees its legs vanish while stopping.
    for (const p of [...procs.values()].reverse()) {
      const code = await p.stop("SIGTERM");
      if (code !== undefined && code !== 0) {
        fail(`${p.name} exited with code ${code} when stopped:\n${p.stderrTail.slice(-1500)}`);
      }
    }
    await etcd?.stop();
    await namespaces?.remove();
  }
  if (procs.size > 0) {
    for (const p of procs.values()) {
      if (p.plan.kind !== "node") continue;
      const media = `${dir}/${p.name}.img`;
      legs[p.name] = await mediaDigest(media, size).catch((e) => `unreadable: ${e.message}`);
    }
    // A parity's legs hold different bytes: each stripe of them must add up instead.
    const inParity = new Set<string>();
    for (const [serve, spec] of Object.entries(drill.processes)) {
      if (spec.kind !== "serve" || spec.layout !== "parity") continue;
      const members = spec.mirror ?? [];
      members.forEach((m) => inParity.add(m));
      const bad = await firstBadStripe(members.map((m) => `${dir}/${m}.img`), size, 64 * 1024)
        .catch((e) => `unreadable: ${e.message}`);
      if (bad === -1) note(`every stripe of parity ${serve} adds up (${members.join(", ")})`);
      else fail(`parity ${serve}: stripe ${bad} does not add up`);
    }
    const mirrored = Object.entries(legs).filter(([n]) => !inParity.has(n));
    const sums = new Set(mirrored.map(([, s]) => s));
    if (mirrored.length > 0 && sums.size === 1) {
      note(`every leg holds the same bytes (sha256 ${[...sums][0]!.slice(0, 16)}…)`);
    } else if (mirrored.length > 0) {
      fail(
        `legs differ: ${Object.entries(legs).map(([n, s]) => `${n} ${s.slice(0, 16)}`).join(", ")}`,
      );
    }
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  const measured = faults.map((f, i) => {
    if (group?.exporters.includes(f.process)) {
      return group.measure(f, watch?.samples ?? [], writesOk);
    }
    const next = faults.slice(i + 1).find((g) => g.process === f.process)?.at;
    return measure(f, watch?.samples ?? [], next);
  });
  for (const m of measured) {
    if (m.healAction !== undefined && m.recoverMs === undefined && m.interrupted !== true) {
      fail(`${m.action} ${m.process}: never seen back in sync after ${m.healAction}`);
    }
  }
  return {
    drill: drill.name,
    verdict: failures.length === 0 ? "pass" : "fail",
    failures,
    faults: measured,
    workload: {
      writeRounds: workload?.writeRounds ?? 0,
      bytesWritten: workload?.bytesWritten ?? 0,
      bytesVerified: workload?.bytesVerified ?? 0,
      clientErrors,
      toleratedClientErrors: tolerated,
      lostBlocks: workload?.lostBlocks ?? 0,
    },
    legs,
    events,
    ...(failures.length === 0 ? {} : {
      logs: Object.fromEntries([...procs.values()].map((p) => [p.name, p.stderrTail])),
    }),
    durationMs: Math.round(now()),
  };
}
