/**
 * The dashboard page: plain HTML, CSS and one script, served as a string (no build step). It
 * polls /api/tree once a second and redraws the storage tree: every node a card coloured by its
 * state, resync and verify progress bars, per-leg and per-node counters, since when a leg is out
 * of sync, and the live I/O rates of the export; above it a health banner (healthy, degraded or
 * down, and why), the version, uptime and capacity. Beside the tree: charts of throughput and
 * latency over the last minutes (dashboard_charts.ts) and the event history
 * (dashboard_events.ts). With the status token typed in, each node offers the control actions;
 * the dangerous ones ask first.
 */
import { chartsScript } from "./dashboard_charts.ts";
import { eventsScript } from "./dashboard_events.ts";

export function dashboardHtml(title: string): string {
  const safe = title.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dst — ${safe}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root{--in-sync:#2e9e4f;--degraded:#d99a00;--rebuilding:#2f6fd6;--suspended:#7d6aa8;
  --down:#d23c3c;--out:#d23c3c;--split-brain:#a0106e;--connecting:#5aa0d8;--judging:#5aa0d8;--unknown:#888}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232a;background:#f4f6f8}
header{background:#1d232a;color:#fff;padding:.8em 1.5em;display:flex;gap:1.5em 2em;
  align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
header .sub{color:#b8c2cc;font-size:12px}
#io{display:flex;gap:1.2em;font-variant-numeric:tabular-nums;font-size:13px}
#io b{display:block;font-size:11px;color:#b8c2cc;font-weight:normal}
main{padding:1.2em 1.5em}
#status{font-size:12px;color:#667;margin-bottom:.8em}
#status.stale{color:#d23c3c;font-weight:bold}
ul.tree,ul.tree ul{list-style:none;margin:0;padding:0}
ul.tree ul{margin-left:1.6em;padding-left:1.2em;border-left:2px solid #c9d1d9}
ul.tree li{margin:.6em 0;position:relative}
ul.tree ul>li::before{content:"";position:absolute;left:-1.2em;top:1.4em;width:1.1em;
  border-top:2px solid #c9d1d9}
.card{display:inline-block;min-width:22em;max-width:46em;background:#fff;border-radius:6px;
  border:1px solid #d6dde4;border-left:6px solid var(--c,var(--unknown));padding:.5em .8em;
  box-shadow:0 1px 2px rgba(0,0,0,.05)}
.card .head{display:flex;gap:.6em;align-items:baseline;flex-wrap:wrap}
.card .name{font-weight:600;font-size:15px}
.card .kind{color:#667;font-size:12px}
.badge{color:#fff;background:var(--c,var(--unknown));border-radius:10px;padding:0 .6em;
  font-size:12px;font-weight:600}
.meta{color:#556;font-size:12px;margin-top:.2em;word-break:break-all}
.meta span{margin-right:1em;white-space:nowrap}
.reason{color:#a33;font-size:12px}
.bar{height:10px;background:#e3e8ed;border-radius:5px;overflow:hidden;margin:.4em 0 .1em}
.bar>div{height:100%;background:var(--rebuilding);transition:width .5s}
.bar.verify>div{background:var(--suspended)}
.actions{margin-top:.35em;display:flex;gap:.3em;flex-wrap:wrap}
.actions button{font-size:11px;padding:.1em .6em;border:1px solid #c9d1d9;background:#f7f9fb;
  border-radius:4px;cursor:pointer}
.actions button:hover{background:#e8eef4}
#control{margin-left:auto;font-size:12px}
#control input{width:16em;font-size:12px}
#message{font-size:12px;margin:.4em 0;min-height:1.2em}
#about{display:flex;gap:1.2em;font-size:13px;font-variant-numeric:tabular-nums}
#about b{display:block;font-size:11px;color:#b8c2cc;font-weight:normal}
#health{padding:.55em 1.5em;font-weight:600;color:#fff;background:var(--unknown)}
#health[data-health=healthy]{background:var(--in-sync)}
#health[data-health=degraded]{background:var(--degraded)}
#health[data-health=down]{background:var(--down)}
#health .why{font-weight:normal;margin-left:.6em}
.layout{display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap}
.layout>section{flex:1 1 30em;min-width:0}
.since{color:#a33;font-size:12px;font-weight:600}
h2{font-size:13px;color:#556;margin:.2em 0 .5em;text-transform:uppercase;letter-spacing:.04em}
#charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(19em,1fr));gap:.8em}
.chart-box{background:#fff;border:1px solid #d6dde4;border-radius:6px;padding:.4em .6em}
.chart-title{font-size:12px;font-weight:600;color:#334}
svg.chart{width:100%;height:auto;display:block}
svg.chart .grid{stroke:#e3e8ed;stroke-width:1}
svg.chart .axis{fill:#889;font-size:10px}
svg.chart .line{fill:none;stroke-width:1.6;stroke-linejoin:round}
.legend{font-size:11px;color:#445;display:flex;gap:.9em;flex-wrap:wrap}
.legend i{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.3em}
#events{list-style:none;margin:0;padding:0;max-height:26em;overflow:auto;background:#fff;
  border:1px solid #d6dde4;border-radius:6px;font-size:12px}
#events li{padding:.25em .6em;border-left:4px solid var(--in-sync);border-bottom:1px solid #eef1f4}
#events li.warn{border-left-color:var(--degraded)}
#events li.error{border-left-color:var(--down);background:#fdf1f1}
#events li.missed{border-left-color:var(--unknown);color:#667}
#events time{color:#667;margin-right:.6em;font-variant-numeric:tabular-nums}
#events .kind{color:#889;margin-right:.6em}
</style></head>
<body>
<header><div><h1>dst — ${safe}</h1><div class="sub" id="exports"></div></div>
<div id="about"></div>
<div id="io"></div>
<div id="control" hidden>token <input id="token" type="password" autocomplete="off"
  placeholder="status token for actions"></div></header>
<div id="health" data-health="unknown">loading…</div>
<main><div id="status">loading…</div><div id="message"></div>
<div class="layout">
<section><h2>storage</h2><div id="tree"></div></section>
<section><h2>recent activity</h2><div id="charts">
<div class="chart-box" id="chart-throughput"></div><div class="chart-box" id="chart-iops"></div>
<div class="chart-box" id="chart-latency"></div><div class="chart-box" id="chart-legs"></div>
<div class="chart-box" id="chart-resync"></div></div>
<h2 style="margin-top:1em">events</h2><div id="events-empty" class="meta">no events yet</div>
<ul id="events"></ul></section>
</div></main>
<script>
"use strict";
const STATES = ["in-sync","degraded","rebuilding","judging","suspended","down","out","split-brain","connecting"];
const UNITS = ["B","KiB","MiB","GiB","TiB","PiB"];
function bytes(b) {
  if (typeof b !== "number" || !isFinite(b)) return "?";
  let i = 0; while (Math.abs(b) >= 1024 && i < UNITS.length - 1) { b /= 1024; i++; }
  return (i === 0 ? b : b.toFixed(1)) + " " + UNITS[i];
}
function duration(s) {
  if (typeof s !== "number" || !isFinite(s)) return "?";
  s = Math.round(s);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
/** HH:MM:SS in this browser's time. */
function clock(ms) {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function colour(state) { return "var(--" + (STATES.includes(state) ? state : "unknown") + ")"; }

const tokenInput = document.getElementById("token");
tokenInput.value = localStorage.getItem("dst-status-token") || "";
tokenInput.addEventListener("change", () => localStorage.setItem("dst-status-token", tokenInput.value));
/** What the dangerous actions risk, asked before they are sent. */
const RISKS = {
  clean: "Mark {node} clean: its data is accepted as it is, without a copy. If it missed writes the mirror refuses unless you force it.",
  dirty: "Mark {node} dirty: its data is discarded and it is resynced in full from the others.",
  remove: "Remove {node} from its mirror: it stops taking writes and its media is no longer a member.",
};
async function send(path, method, body) {
  const r = await fetch(path, {
    method,
    headers: { Authorization: "Bearer " + tokenInput.value, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { r, body: await r.json().catch(() => ({})) };
}
async function act(path, method, action, node) {
  const msg = document.getElementById("message");
  if (RISKS[action] && !confirm(RISKS[action].replace("{node}", node))) return;
  msg.textContent = method + " " + path + " …";
  try {
    let { r, body } = await send(path, method, method === "POST" ? {} : undefined);
    // A clean the mirror refused for missed writes: say why, and force it only if asked to.
    if (action === "clean" && r.status === 409 && /--force/.test(body.error || "") &&
        confirm(body.error + "\\n\\nAccept " + node + "'s data as it is anyway (force)?")) {
      ({ r, body } = await send(path, method, { force: true }));
    }
    msg.textContent = r.ok ? (body.message || "done") : r.status + ": " + (body.error || r.statusText);
  } catch (e) { msg.textContent = String(e); }
  refresh();
}

function card(node, leg, control, parent) {
  const f = node.facts || {};
  const c = el("div", "card");
  c.dataset.node = node.name;
  c.dataset.state = node.state;
  c.style.setProperty("--c", colour(node.state));
  const head = el("div", "head");
  head.append(el("span", "name", node.name), el("span", "kind", node.kind),
    el("span", "badge state", node.state));
  c.append(head);
  const meta = el("div", "meta");
  const add = (label, value) => { if (value !== undefined && value !== "") meta.append(el("span", "", label + " " + value)); };
  add("size", bytes(node.size));
  add("at", node.address);
  add("peer", f.peer);
  add("checksum", f.checksum && f.checksum + (f.checksumErrors ? " (" + f.checksumErrors + " errors)" : ""));
  if (f.storageId) add("storage", f.storageId.slice(0, 8) + "…");
  if (f.ageSeconds !== undefined) add("age", duration(f.ageSeconds));
  if (f.generations) add("gen", Object.entries(f.generations).map(([k, v]) => k + ":" + String(v).slice(0, 8)).join(" "));
  if (f.outOfSyncBytes !== undefined) add("out of sync", bytes(f.outOfSyncBytes));
  const counts = leg || {};
  add("reads", counts.reads); add("writes", counts.writes);
  // Errors since the leg last rejoined; the lifetime count is /metrics' business.
  const d = node.detail || {};
  const errors = d.rejoined ? d.rejoined.errorsSince : counts.errors;
  if (errors) add("errors", errors);
  if (f.reconnects) add("reconnects", f.reconnects);
  if (f.resent) add("resent", f.resent);
  if (f.timeouts) add("timeouts", f.timeouts);
  for (const [k, v] of Object.entries(f.counters || {})) add(k, v);
  for (const [k, v] of Object.entries(f.numbers || {})) {
    if (!leg || !(k in leg)) add(k, /Bytes$|Size$/.test(k) ? bytes(v) : v);
  }
  c.append(meta);
  if (leg && d.lastResync && !f.resync) {
    c.append(el("div", "meta last-resync", "last resync " + bytes(d.lastResync.bytes) + " (moved " +
      bytes(d.lastResync.copiedBytes) + ") " + duration(d.lastResync.agoMs / 1000) + " ago"));
  }
  if (d.process && typeof d.process.summary === "string") {
    c.append(el("div", "meta process", "process: " + d.process.summary));
  }
  const reason = (leg && leg.reason) || f.reason;
  if (reason && node.state !== "in-sync") c.append(el("div", "reason", reason));
  if (leg && leg.inStateMs !== undefined && node.state !== "in-sync") {
    c.append(el("div", "since", sinceText(node.state, leg.inStateMs, snapshotTime)));
  }
  if (f.resync) {
    const r = f.resync;
    const bar = el("div", "bar" + (r.kind === "verify" ? " verify" : ""));
    const fill = el("div");
    fill.style.width = ((r.progress || 0) * 100).toFixed(1) + "%";
    bar.append(fill);
    bar.dataset.progress = String(r.progress ?? "");
    c.append(bar, el("div", "meta", (r.kind || "resync") + (r.source ? " from " + r.source : "") + " · " +
      ((r.progress || 0) * 100).toFixed(1) + "% · " + bytes(r.bytesLeft) + " left · " +
      bytes(r.rateBytesPerSec) + "/s · ETA " + duration(r.etaSeconds)));
  }
  if (control) {
    const actions = el("div", "actions");
    const button = (label, path, method) => {
      const b = el("button", "", label);
      b.dataset.action = label;
      b.onclick = () => act(path, method, label, node.name);
      actions.append(b);
    };
    const base = "api/nodes/" + encodeURIComponent(node.name);
    if (node.kind === "mirror" || node.kind === "parity") button("verify", base + "/verify", "POST");
    if (parent && (parent.kind === "mirror" || parent.kind === "parity")) {
      for (const a of ["suspend", "resume", "clean", "dirty"]) button(a, base + "/" + a, "POST");
    }
    if (parent && parent.kind === "mirror") {
      button("remove", "api/nodes/" + encodeURIComponent(parent.name) + "/legs/" + encodeURIComponent(node.name), "DELETE");
    }
    if (actions.childElementCount) c.append(actions);
  }
  return c;
}
function branch(node, leg, control, parent) {
  const li = el("li");
  li.append(card(node, leg, control, parent));
  if (node.children && node.children.length) {
    const legs = new Map(((node.facts && node.facts.legs) || []).map((l) => [l.name, l]));
    const ul = el("ul");
    for (const child of node.children) ul.append(branch(child, legs.get(child.name), control, node));
    li.append(ul);
  }
  return li;
}

/** "down since 12:03:04 (for 2 min 5 s)": when the leg left, in this browser's time. */
function sinceText(state, inStateMs, at) {
  const label = state === "suspended" || state === "rebuilding" || state === "judging"
    ? state : "down";
  return label + " since " + clock(at - inStateMs) + " (for " + duration(inStateMs / 1000) + ")";
}
let snapshotTime = Date.now();

/** Healthy when every node is in sync; down when the storage serves nothing; else degraded. */
function health(tree) {
  const causes = [];
  const walk = (node) => {
    const bad = (node.children || []).filter((c) => c.state !== "in-sync" || hasBad(c));
    if (node.state !== "in-sync" && bad.length === 0) {
      const f = node.facts || {};
      const r = f.resync;
      causes.push(node.name + " " + node.state +
        (r && r.progress !== undefined ? " " + (r.progress * 100).toFixed(0) + "%" : "") +
        (f.reason ? " (" + f.reason + ")" : ""));
    }
    bad.forEach(walk);
  };
  const hasBad = (node) => (node.children || []).some((c) => c.state !== "in-sync" || hasBad(c));
  walk(tree);
  if (causes.length === 0) return { level: "healthy", text: "healthy", why: "every node is in sync" };
  const down = ["down", "split-brain", "out", "connecting"].includes(tree.state);
  return { level: down ? "down" : "degraded", text: down ? "down" : "degraded", why: causes.join(" · ") };
}
function showHealth(h) {
  const box = document.getElementById("health");
  box.dataset.health = h.level;
  box.replaceChildren(h.text);
  box.append(el("span", "why", h.why));
}
function about(now) {
  const box = document.getElementById("about");
  const stat = (label, value) => { const d = el("div", "", value); d.prepend(el("b", "", label)); return d; };
  const p = now.process || {};
  box.replaceChildren(
    stat("capacity", bytes(now.tree.size)),
    stat("version", p.version ? "dst " + p.version + " · deno " + p.deno : "?"),
    stat("uptime", p.uptimeSeconds !== undefined ? duration(p.uptimeSeconds) : "?"),
  );
}

let last;
function ioRates(now) {
  const box = document.getElementById("io");
  if (!now.io) { box.replaceChildren(); return; }
  const stat = (label, value) => { const d = el("div", "", value); d.prepend(el("b", "", label)); return d; };
  const dt = last && last.io ? (now.time - last.time) / 1000 : 0;
  const rate = (op, key) => dt > 0 ? (now.io.ops[op][key] - last.io.ops[op][key]) / dt : 0;
  const lat = (op) => {
    const n = now.io.ops[op].requests - (last && last.io ? last.io.ops[op].requests : 0);
    const s = now.io.ops[op].latencySeconds - (last && last.io ? last.io.ops[op].latencySeconds : 0);
    return n > 0 ? (s / n * 1000).toFixed(2) + " ms" : "–";
  };
  box.replaceChildren(
    stat("read", rate("read", "requests").toFixed(0) + " op/s · " + bytes(rate("read", "bytes")) + "/s"),
    stat("write", rate("write", "requests").toFixed(0) + " op/s · " + bytes(rate("write", "bytes")) + "/s"),
    stat("latency r/w", lat("read") + " / " + lat("write")),
    stat("in flight", String(now.io.inFlight)),
    stat("total", bytes(now.io.ops.read.bytes) + " read · " + bytes(now.io.ops.write.bytes) + " written"),
  );
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("api/tree", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const now = await r.json();
    snapshotTime = now.time;
    document.getElementById("exports").textContent = now.exports.length ? "attach: " + now.exports.join("  ") : "";
    showHealth(health(now.tree));
    about(now);
    document.getElementById("control").hidden = !now.control;
    ioRates(now);
    const ul = el("ul", "tree");
    ul.append(branch(now.tree, undefined, now.control, undefined));
    document.getElementById("tree").replaceChildren(ul);
    status.className = "";
    status.textContent = "updated " + clock(now.time);
    last = now;
  } catch (e) {
    status.className = "stale";
    status.textContent = "status unavailable (" + e.message + "); showing the last state";
    showHealth({ level: "unknown", text: "unknown", why: "the process does not answer (" + e.message + ")" });
  }
}
refresh();
setInterval(refresh, 1000);
${chartsScript}
${eventsScript}
</script></body></html>`;
}
