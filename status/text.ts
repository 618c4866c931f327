/**
 * The status as terminal text for `dst status`: the storage tree with box-drawing branches, each
 * node's state (coloured when the terminal takes colour), its key facts, and a progress bar
 * under every node that is resyncing or verifying.
 */
import { elapsedText } from "../util/elapsed.ts";
import { formatSize } from "../util/size.ts";
import { healthOf } from "./health.ts";
import type { StatusJson, TreeJson } from "./tree.ts";

const COLOURS: Record<string, string> = {
  "in-sync": "32",
  degraded: "33",
  rebuilding: "34",
  judging: "36",
  suspended: "35",
  down: "31",
  out: "31",
  "split-brain": "1;31",
  connecting: "36",
};

export interface TextOptions {
  /** Use ANSI colours. */
  readonly colour?: boolean;
  /** Width of progress bars in characters (default 30). */
  readonly barWidth?: number;
}

export const durationText = elapsedText;

/** `[#######.......]  45.0%` */
export function progressBar(fraction: number, width: number): string {
  const f = Math.min(1, Math.max(0, fraction));
  const full = Math.round(f * width);
  return `[${"#".repeat(full)}${".".repeat(width - full)}] ${(f * 100).toFixed(1).padStart(5)}%`;
}

export function statusText(status: StatusJson, options: TextOptions = {}): string {
  const paint = (state: string, text = state) =>
    options.colour ? `\x1b[${COLOURS[state] ?? "0"}m${text}\x1b[0m` : text;
  const width = options.barWidth ?? 30;
  const health = healthOf(status.tree);
  const lines: string[] = [
    `storage ${status.name}`,
    `  health ${paint(HEALTH_STATE[health.health], health.health)}`,
  ];
  for (const uri of status.exports) lines.push(`  attach ${uri}`);
  if (status.io !== undefined) {
    const { read, write } = status.io.ops;
    const ms = (s: number, n: number) => n > 0 ? `${(s / n * 1000).toFixed(2)} ms` : "-";
    lines.push(
      `  io     read ${read.requests} req ${formatSize(read.bytes)} avg ${
        ms(read.latencySeconds, read.requests)
      } · write ${write.requests} req ${formatSize(write.bytes)} avg ${
        ms(write.latencySeconds, write.requests)
      } · in flight ${status.io.inFlight}`,
    );
  }
  const visit = (node: TreeJson, prefix: string, last: boolean, root: boolean, leg?: LegLine) => {
    const branch = root ? "" : last ? "└─ " : "├─ ";
    const f = node.facts;
    const legDetail = leg === undefined ? undefined : node.detail as LegDetail | undefined;
    const parts = [`${node.name} (${node.kind}) ${paint(node.state)}`, formatSize(node.size)];
    if (node.address !== undefined) parts.push(node.address);
    if (f.outOfSyncBytes !== undefined && f.outOfSyncBytes > 0) {
      parts.push(`out of sync ${formatSize(f.outOfSyncBytes)}`);
    }
    if (f.generations !== undefined && f.generations.current !== undefined) {
      parts.push(`gen ${f.generations.current.slice(0, 8)}`);
    }
    if (leg?.reads !== undefined) parts.push(`r ${leg.reads} w ${leg.writes ?? 0}`);
    // Errors since the leg last rejoined: the lifetime count is for /metrics.
    const errors = legDetail?.rejoined?.errorsSince ?? leg?.errors ?? 0;
    if (errors > 0) parts.push(`errors ${errors}`);
    if ((f.reconnects ?? 0) > 0) parts.push(`reconnects ${f.reconnects}`);
    for (const [k, v] of Object.entries(f.numbers ?? {})) {
      if (leg === undefined || !(k in leg)) {
        parts.push(`${k} ${/Bytes$|Size$/.test(k) ? formatSize(v) : v}`);
      }
    }
    if (f.checksum !== undefined) {
      parts.push(`checksum ${f.checksum}${f.checksumErrors ? ` (${f.checksumErrors} bad)` : ""}`);
    }
    lines.push(`${prefix}${branch}${parts.join("  ")}`);
    const inner = root ? "" : prefix + (last ? "   " : "│  ");
    const reason = leg?.reason ?? f.reason;
    if (node.state !== "in-sync") {
      const ms = legDetail?.inStateMs;
      const since = ms === undefined ? "" : `${node.state} for ${durationText(ms / 1000)} ` +
        `(since ${clockTime(status.time - ms)})`;
      const why = [since, reason].filter((t) => t !== undefined && t !== "").join(": ");
      if (why !== "") lines.push(`${inner}   ${why}`);
    }
    const process = processSummary(node.detail);
    if (process !== undefined) lines.push(`${inner}   ${process}`);
    if (f.resync !== undefined) {
      const r = f.resync;
      const bits = [progressBar(r.progress ?? 0, width), r.kind ?? "resync"];
      if (r.source !== undefined) bits.push(`from ${r.source}`);
      if (r.bytesLeft !== undefined) bits.push(`${formatSize(r.bytesLeft)} left`);
      if (r.rateBytesPerSec !== undefined) bits.push(`${formatSize(r.rateBytesPerSec)}/s`);
      if (r.etaSeconds !== undefined) bits.push(`ETA ${durationText(r.etaSeconds)}`);
      lines.push(`${inner}   ${bits.join("  ")}`);
    } else if (legDetail?.lastResync !== undefined) {
      const r = legDetail.lastResync;
      lines.push(
        `${inner}   last resync ${formatSize(r.bytes)} (moved ${formatSize(r.copiedBytes)}) ` +
          `${durationText(r.agoMs / 1000)} ago`,
      );
    }
    const legs = new Map((f.legs ?? []).map((l) => [l.name, l]));
    node.children.forEach((child, i) =>
      visit(child, inner, i === node.children.length - 1, false, legs.get(child.name))
    );
  };
  visit(status.tree, "", true, true);
  return lines.join("\n") + "\n";
}

/** What a leg's own node detail adds (its mirror's LegStatus), as far as this view reads it. */
interface LegDetail {
  readonly inStateMs?: number;
  readonly rejoined?: { readonly agoMs: number; readonly errorsSince: number };
  readonly lastResync?: {
    readonly bytes: number;
    readonly copiedBytes: number;
    readonly agoMs: number;
  };
}

/** The line a supervisor put in a node's detail about its process ("restarted 2 times ..."). */
export function processSummary(detail: Record<string, unknown> | undefined): string | undefined {
  const process = detail?.process;
  if (typeof process !== "object" || process === null) return undefined;
  const summary = (process as { summary?: unknown }).summary;
  return typeof summary === "string" ? `process: ${summary}` : undefined;
}

/** Local wall time HH:MM:SS of `ms` since the epoch. */
function clockTime(ms: number): string {
  return new Date(ms).toTimeString().slice(0, 8);
}

const HEALTH_STATE = { healthy: "in-sync", degraded: "degraded", down: "down" } as const;

interface LegLine {
  readonly reads?: number;
  readonly writes?: number;
  readonly errors?: number;
  readonly reason?: string;
}
