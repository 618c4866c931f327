/** The dashboard page: plain HTML and a script that polls /api/tree; no build step. */

export function dashboardHtml(title: string): string {
  const safe = title.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dst — ${safe}</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
ul{list-style:none;padding-left:1.4em} li{margin:.3em 0}
.n{display:inline-block;padding:.2em .6em;border-radius:4px;border:1px solid #ccc}
.in-sync{background:#d9f2d9}.degraded{background:#fff0c2}.down,.out{background:#f8d0d0}
.connecting{background:#dde8f8}.meta{color:#666;font-size:12px;margin-left:.5em}
</style></head>
<body><h1>dst — ${safe}</h1><div id="exports"></div><div id="tree">loading…</div>
<script>
const size = (b) => { const u = ["B","KiB","MiB","GiB","TiB"]; let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; } return (+b.toFixed(1)) + " " + u[i]; };
function render(node) {
  const li = document.createElement("li");
  const tag = document.createElement("span");
  tag.className = "n " + node.state;
  tag.dataset.node = node.name;
  tag.textContent = node.name + " (" + node.kind + ") " + node.state;
  li.append(tag);
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = size(node.size) + (node.address ? " · " + node.address : "");
  li.append(meta);
  if (node.children.length) {
    const ul = document.createElement("ul");
    node.children.forEach((c) => ul.append(render(c)));
    li.append(ul);
  }
  return li;
}
async function refresh() {
  try {
    const r = await fetch("api/tree");
    const { exports, tree } = await r.json();
    document.getElementById("exports").textContent = "attach: " + exports.join("  ");
    const ul = document.createElement("ul");
    ul.append(render(tree));
    document.getElementById("tree").replaceChildren(ul);
  } catch (e) {
    document.getElementById("tree").textContent = "status unavailable: " + e;
  }
}
refresh();
setInterval(refresh, 1000);
</script></body></html>`;
}
