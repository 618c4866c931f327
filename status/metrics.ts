/**
 * The status as Prometheus text (exposition format 0.0.4). Metric names and labels are stable:
 * dashboards and alerts are written against them, so add new ones rather than rename.
 *
 *   dst_build_info{version,deno}                  always 1
 *   process_start_time_seconds, process_resident_memory_bytes, process_cpu_seconds_total,
 *   process_open_fds, process_max_fds             as every exporter has them (where readable)
 *   dst_node_state{storage,node,kind,state}       1 for the node's current state, 0 for the others
 *   dst_node_size_bytes{storage,node,kind}
 *   dst_node_info{storage,node,kind,address,checksum,storage_id}  always 1; a label the node
 *                                                 has no value for is left out
 *   dst_node_age_seconds{storage,node}
 *   dst_out_of_sync_bytes{storage,node}
 *   dst_resync_remaining_bytes / dst_resync_bytes_per_second / dst_resync_eta_seconds{storage,node}
 *   dst_resync_synced_bytes / dst_resync_total_bytes{storage,node}  a resync's bytes done of all
 *                                                 (like node_md_blocks_synced and _blocks)
 *   dst_remote_reconnects_total / dst_remote_resent_total / dst_remote_timeouts_total{storage,node}
 *   dst_checksum_errors_total{storage,node,algorithm}
 *   dst_leg_requests_total{storage,mirror,leg,op} / dst_leg_errors_total{storage,mirror,leg}
 *   dst_leg_resynced_bytes_total / dst_leg_copied_bytes_total{storage,mirror,leg}
 *   dst_leg_latency_seconds{storage,mirror,leg,op} (histogram) how long a leg took to answer
 *   dst_node_events_total{storage,node,event}     named counters a node reports
 *   dst_verify_mismatched_bytes / dst_verify_unresolved_bytes{storage,node}  the last verify
 *   dst_io_requests_total / dst_io_bytes_total / dst_io_errors_total{storage,op}
 *   dst_io_latency_seconds{storage,op} (histogram) and dst_io_in_flight{storage}
 *   dst_owner_epoch{storage,node}                 the owner epoch held (exporter) or granted (node)
 *   dst_fenced_requests_total{storage,node}       changes a node refused from fenced exporters
 */
import { LATENCY_BUCKETS } from "../util/latency_histogram.ts";
import { IO_OPS } from "./io.ts";
import type { ProcessInfo } from "./process.ts";
import { NODE_STATES, type StatusJson, type TreeJson } from "./tree.ts";

type Labels = Record<string, string>;

class Family {
  readonly lines: string[] = [];
  constructor(readonly name: string, readonly type: string, readonly help: string) {}

  add(labels: Labels, value: number, suffix = ""): void {
    this.lines.push(`${this.name}${suffix}${labelText(labels)} ${numberText(value)}`);
  }
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function numberText(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

type FamilyOf = (name: string, type: string, help: string) => Family;

/** The build and the `process_*` metrics Prometheus' own client libraries export. */
function processMetrics(p: ProcessInfo, family: FamilyOf): void {
  family("dst_build_info", "gauge", "The dst and Deno versions as labels; always 1.")
    .add({ version: p.version, deno: p.deno }, 1);
  family("process_start_time_seconds", "gauge", "Start time of the process since the epoch.")
    .add({}, p.startTimeSeconds);
  family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
    .add({}, p.residentBytes);
  family("process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.")
    .add({}, p.cpuSeconds);
  if (p.openFds !== undefined) {
    family("process_open_fds", "gauge", "Number of open file descriptors.").add({}, p.openFds);
  }
  if (p.maxFds !== undefined) {
    family("process_max_fds", "gauge", "Maximum number of open file descriptors.")
      .add({}, p.maxFds);
  }
}

/** Renders one snapshot of the status as Prometheus text. */
export function metricsText(status: StatusJson): string {
  const storage = status.name;
  const families = new Map<string, Family>();
  const family = (name: string, type: string, help: string) => {
    let f = families.get(name);
    if (f === undefined) families.set(name, f = new Family(name, type, help));
    return f;
  };
  if (status.process !== undefined) processMetrics(status.process, family);
  const stateF = family("dst_node_state", "gauge", "1 for the node's current state, else 0.");
  const sizeF = family("dst_node_size_bytes", "gauge", "Size of the node in bytes.");
  const infoF = family("dst_node_info", "gauge", "Facts about a node as labels; always 1.");
  const ageF = family("dst_node_age_seconds", "gauge", "Age of the node's storage generation.");
  const oosF = family("dst_out_of_sync_bytes", "gauge", "Bytes the node lacks (to resync).");
  const leftF = family("dst_resync_remaining_bytes", "gauge", "Bytes a running resync has left.");
  const rateF = family("dst_resync_bytes_per_second", "gauge", "Current resync rate.");
  const etaF = family("dst_resync_eta_seconds", "gauge", "Estimated seconds until resync ends.");
  const syncedF = family("dst_resync_synced_bytes", "gauge", "Bytes a running resync has done.");
  const totalF = family("dst_resync_total_bytes", "gauge", "Bytes a running resync has to do.");
  const reconF = family("dst_remote_reconnects_total", "counter", "Reconnects to a remote node.");
  const resentF = family("dst_remote_resent_total", "counter", "Requests sent again after one.");
  const tmoF = family("dst_remote_timeouts_total", "counter", "Requests to a node that timed out.");
  const ckF = family("dst_checksum_errors_total", "counter", "Payloads failing their checksum.");
  const legReqF = family("dst_leg_requests_total", "counter", "Requests a mirror sent a leg.");
  const legErrF = family("dst_leg_errors_total", "counter", "Failed requests a mirror saw a leg.");
  const resyncedF = family("dst_leg_resynced_bytes_total", "counter", "Bytes resyncs settled.");
  const copiedF = family("dst_leg_copied_bytes_total", "counter", "Bytes resyncs moved.");
  const legLatF = family(
    "dst_leg_latency_seconds",
    "histogram",
    "How long a mirror leg took to answer, by op.",
  );
  const eventsF = family("dst_node_events_total", "counter", "Named event counts of a node.");
  const verifyF = family(
    "dst_verify_mismatched_bytes",
    "gauge",
    "Bytes where the legs differed at the mirror's last verify.",
  );
  const unresolvedF = family(
    "dst_verify_unresolved_bytes",
    "gauge",
    "Bytes the last verify left unrepaired (no majority, no leg named to trust).",
  );

  // Ownership (fencing): read from the detail, where exporters and nodes report it.
  const epochF = family("dst_owner_epoch", "gauge", "Owner epoch held by an exporter or granted.");
  const fencedF = family(
    "dst_fenced_requests_total",
    "counter",
    "Changes a node refused because their exporter no longer owns it.",
  );
  const fencing = (node: TreeJson, id: Labels) => {
    const epoch = node.detail?.ownerEpoch;
    if (typeof epoch === "number") epochF.add(id, epoch);
    const refused = node.detail?.fencedRequests;
    if (typeof refused === "number") fencedF.add(id, refused);
  };

  const visit = (node: TreeJson) => {
    const id = { storage, node: node.name };
    const states = NODE_STATES.includes(node.state as typeof NODE_STATES[number])
      ? NODE_STATES
      : [...NODE_STATES, node.state];
    for (const state of states) {
      stateF.add({ ...id, kind: node.kind, state }, state === node.state ? 1 : 0);
    }
    sizeF.add({ ...id, kind: node.kind }, node.size);
    const f = node.facts;
    infoF.add({
      ...id,
      kind: node.kind,
      ...(node.address ? { address: node.address } : {}),
      ...(f.checksum ? { checksum: f.checksum } : {}),
      ...(f.storageId ? { storage_id: f.storageId } : {}),
    }, 1);
    if (f.ageSeconds !== undefined) ageF.add(id, f.ageSeconds);
    if (f.outOfSyncBytes !== undefined) oosF.add(id, f.outOfSyncBytes);
    if (f.resync?.bytesLeft !== undefined) leftF.add(id, f.resync.bytesLeft);
    if (f.resync?.rateBytesPerSec !== undefined) rateF.add(id, f.resync.rateBytesPerSec);
    if (f.resync?.etaSeconds !== undefined) etaF.add(id, f.resync.etaSeconds);
    if (f.resync?.bytesDone !== undefined) syncedF.add(id, f.resync.bytesDone);
    if (f.resync?.totalBytes !== undefined) totalF.add(id, f.resync.totalBytes);
    if (f.reconnects !== undefined) reconF.add(id, f.reconnects);
    if (f.resent !== undefined) resentF.add(id, f.resent);
    if (f.timeouts !== undefined) tmoF.add(id, f.timeouts);
    if (f.checksumErrors !== undefined) {
      ckF.add({ ...id, algorithm: f.checksum ?? "" }, f.checksumErrors);
    }
    for (const leg of f.legs ?? []) {
      const legId = { storage, mirror: node.name, leg: leg.name };
      if (leg.reads !== undefined) legReqF.add({ ...legId, op: "read" }, leg.reads);
      if (leg.writes !== undefined) legReqF.add({ ...legId, op: "write" }, leg.writes);
      if (leg.errors !== undefined) legErrF.add(legId, leg.errors);
      if (leg.resyncedBytes !== undefined) resyncedF.add(legId, leg.resyncedBytes);
      if (leg.copiedBytes !== undefined) copiedF.add(legId, leg.copiedBytes);
      for (const [op, h] of Object.entries(leg.latency ?? {})) {
        const opId = { ...legId, op };
        LATENCY_BUCKETS.forEach((le, i) =>
          legLatF.add({ ...opId, le: String(le) }, h.buckets[i]!, "_bucket")
        );
        legLatF.add({ ...opId, le: "+Inf" }, h.count, "_bucket");
        legLatF.add(opId, h.sumSeconds, "_sum");
        legLatF.add(opId, h.count, "_count");
      }
    }
    if (f.verify !== undefined) {
      verifyF.add(id, f.verify.mismatchedBytes);
      unresolvedF.add(id, f.verify.unresolvedBytes);
    }
    for (const [event, count] of Object.entries(f.counters ?? {})) {
      eventsF.add({ ...id, event }, count);
    }
    fencing(node, id);
    node.children.forEach(visit);
  };
  visit(status.tree);

  if (status.io !== undefined) {
    const reqF = family("dst_io_requests_total", "counter", "Requests clients made, by op.");
    const bytesF = family("dst_io_bytes_total", "counter", "Bytes clients moved, by op.");
    const errF = family("dst_io_errors_total", "counter", "Requests that failed, by op.");
    const latF = family("dst_io_latency_seconds", "histogram", "Request latency, by op.");
    const flightF = family("dst_io_in_flight", "gauge", "Requests being served now.");
    for (const op of IO_OPS) {
      const s = status.io.ops[op];
      const id = { storage, op };
      reqF.add(id, s.requests);
      bytesF.add(id, s.bytes);
      errF.add(id, s.errors);
      LATENCY_BUCKETS.forEach((le, i) =>
        latF.add({ ...id, le: String(le) }, s.buckets[i]!, "_bucket")
      );
      latF.add({ ...id, le: "+Inf" }, s.requests, "_bucket");
      latF.add(id, s.latencySeconds, "_sum");
      latF.add(id, s.requests, "_count");
    }
    flightF.add({ storage }, status.io.inFlight);
  }

  const out: string[] = [];
  for (const f of families.values()) {
    if (f.lines.length === 0) continue;
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.lines);
  }
  return out.join("\n") + "\n";
}
