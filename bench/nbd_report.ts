/**
 * The table `deno task bench` prints: for each comparison (ours against a reference measured in
 * the same run), every row with both sides' figures and the ratio — p50 latency for depth-1 rows
 * (below 1: ours is faster), MB/s otherwise (above 1: ours is faster) — and CPU per request.
 */
import type { Job, Result } from "./fio.ts";

export interface Comparison {
  readonly label: string;
  readonly ours: string;
  readonly reference: string;
}

function fmt(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

export function report(
  results: readonly Result[],
  transports: readonly string[],
  comparisons: readonly Comparison[],
  jobs: readonly Job[],
): string {
  const find = (target: string, transport: string, row: string) =>
    results.find((r) => r.target === target && r.transport === transport && r.row === row);
  const lines = [
    "| transport | comparison | row | ours MB/s | ours p50/p99 us | ours cpu us/req | ref MB/s | ref p50/p99 us | ref cpu us/req | ours/ref |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const lat = (r: Result | undefined) => r?.p50us ? `${fmt(r.p50us)}/${fmt(r.p99us)}` : "-";
  const cpu = (r: Result | undefined) =>
    r?.cpuUsPerRequest === undefined ? "-" : fmt(r.cpuUsPerRequest);
  for (const transport of transports) {
    for (const c of comparisons) {
      const rows = [
        ...new Set(
          results.filter((r) => r.target === c.ours && r.transport === transport).map((r) => r.row),
        ),
      ];
      for (const row of rows) {
        const d = find(c.ours, transport, row)!;
        const k = find(c.reference, transport, row);
        const job = jobs.find((j) => j.name === row);
        const ratio = k === undefined
          ? "-"
          : job?.latency
          ? `lat ${(d.p50us / k.p50us).toFixed(2)}x`
          : (d.mbps / k.mbps).toFixed(2);
        lines.push(
          `| ${transport} | ${c.label} | ${row} | ${fmt(d.mbps)} | ${lat(d)} | ${cpu(d)} | ${
            k ? fmt(k.mbps) : "-"
          } | ${lat(k)} | ${cpu(k)} | ${ratio} |`,
        );
      }
    }
  }
  return lines.join("\n");
}
