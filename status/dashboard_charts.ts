/**
 * The dashboard's charts, as script text for the page (no build step): it polls /api/samples for
 * what the process sampled since the last poll, keeps the last ten minutes, and draws each chart
 * as inline SVG lines over a moving time axis (as long as what was sampled, one to ten minutes):
 * client throughput, operations per second, request latency, each mirror leg's answer time, and
 * the resync rate.
 */

export const chartsScript = `
const WINDOW_MS = 10 * 60 * 1000;
const samples = [];
let lastSampleTime = 0;
const PALETTE = ["#2f6fd6", "#d99a00", "#2e9e4f", "#a0106e", "#d23c3c", "#5aa0d8", "#7d6aa8"];
/** Each chart: a title, a unit, and its series (a label and how to read a sample). */
const CHARTS = [
  { id: "throughput", title: "throughput", unit: "B/s", series: () => [
    ["read", (s) => s.readBytesPerSec], ["write", (s) => s.writeBytesPerSec]] },
  { id: "iops", title: "requests", unit: "op/s", series: () => [
    ["read", (s) => s.readOpsPerSec], ["write", (s) => s.writeOpsPerSec]] },
  { id: "latency", title: "request latency", unit: "ms", series: () => [
    ["read", (s) => s.readLatencyMs], ["write", (s) => s.writeLatencyMs]] },
  { id: "legs", title: "leg answer time", unit: "ms", series: () =>
    legNames().map((leg) => [leg, (s) => s.legLatencyMs ? s.legLatencyMs[leg] : null]) },
  { id: "resync", title: "resync rate", unit: "B/s", series: () => [
    ["resync", (s) => s.resyncBytesPerSec]] },
];
function legNames() {
  const names = new Set();
  for (const s of samples) for (const k of Object.keys(s.legLatencyMs || {})) names.add(k);
  return [...names].sort();
}
function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}
function amount(v, unit) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  if (unit === "B/s") return bytes(v) + "/s";
  if (unit === "ms") return (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " ms";
  return (v < 10 ? v.toFixed(1) : v.toFixed(0)) + " " + unit;
}
/** A round top for the y axis (in KiB, MiB... for bytes), so lines do not jump with every change. */
function niceMax(v, unit) {
  if (!(v > 0)) return 1;
  let scale = 1;
  if (unit === "B/s") while (v / scale >= 1024) scale *= 1024;
  const u = v / scale;
  const p = Math.pow(10, Math.floor(Math.log10(u)));
  for (const m of [1, 2, 2.5, 5, 10]) if (u <= m * p) return m * p * scale;
  return 10 * p * scale;
}
function drawChart(chart, now) {
  const box = document.getElementById("chart-" + chart.id);
  if (!box) return;
  const W = 420, H = 110, L = 4, T = 6, B = 16;
  const series = chart.series();
  let max = 0;
  for (const [, read] of series) for (const s of samples) {
    const v = read(s); if (typeof v === "number" && isFinite(v)) max = Math.max(max, v);
  }
  const top = niceMax(max, chart.unit);
  // The time axis spans what was sampled, from one minute up to ten.
  const first = samples.length ? samples[0].time : now;
  const span = Math.min(WINDOW_MS, Math.max(60_000, Math.ceil((now - first) / 60_000) * 60_000));
  const x = (t) => L + (W - 2 * L) * (1 - (now - t) / span);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, class: "chart", "data-chart": chart.id });
  for (const f of [0, 0.5, 1]) {
    svg.append(svgEl("line", { x1: L, x2: W - L, y1: y(top * f), y2: y(top * f), class: "grid" }));
  }
  const label = (text, ax, ay, anchor) => {
    const t = svgEl("text", { x: ax, y: ay, "text-anchor": anchor, class: "axis" });
    t.textContent = text; svg.append(t);
  };
  label(amount(top, chart.unit), L + 2, T + 10, "start");
  const ago = (ms) => ms >= 60_000 ? "-" + Math.round(ms / 60_000) + " min" : "-" + Math.round(ms / 1000) + " s";
  label(ago(span), L, H - 3, "start");
  label(ago(span / 2), W / 2, H - 3, "middle");
  label("now", W - L, H - 3, "end");
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach(([name, read], i) => {
    const colour = PALETTE[i % PALETTE.length];
    // A gap (no value) breaks the line instead of drawing it down to zero.
    let run = [];
    const runs = [run];
    for (const s of samples) {
      const v = read(s);
      if (typeof v === "number" && isFinite(v)) run.push(x(s.time).toFixed(1) + "," + y(v).toFixed(1));
      else if (run.length) runs.push(run = []);
    }
    for (const points of runs) {
      if (points.length === 0) continue;
      if (points.length === 1) points.push(points[0]);
      svg.append(svgEl("polyline", { points: points.join(" "), stroke: colour, class: "line", "data-series": name }));
    }
    // The newest value as a dot, so a value seen once is visible too.
    const end = run.length ? run[run.length - 1].split(",") : null;
    if (end) svg.append(svgEl("circle", { cx: end[0], cy: end[1], r: 2.5, fill: colour }));
    const current = samples.length ? read(samples[samples.length - 1]) : null;
    const item = document.createElement("span");
    item.innerHTML = '<i style="background:' + colour + '"></i>';
    item.append(name + " " + amount(current, chart.unit));
    legend.append(item);
  });
  const title = document.createElement("div");
  title.className = "chart-title";
  title.textContent = chart.title;
  box.replaceChildren(title, svg, legend);
}
async function refreshCharts() {
  try {
    const r = await fetch("api/samples?since=" + lastSampleTime, { cache: "no-store" });
    if (!r.ok) return;
    const body = await r.json();
    for (const s of body.samples) if (s.time > lastSampleTime) { samples.push(s); lastSampleTime = s.time; }
    while (samples.length && samples[0].time < lastSampleTime - WINDOW_MS) samples.shift();
    const now = lastSampleTime || Date.now();
    for (const chart of CHARTS) drawChart(chart, now);
  } catch (e) { /* the status line says when the process cannot be reached */ }
}
refreshCharts();
setInterval(refreshCharts, 1000);
`;
