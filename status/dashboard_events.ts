/**
 * The dashboard's event history, as script text for the page: it polls /api/events with the id
 * of the last event it has, so each poll brings only what is new, and lists them newest first
 * (legs leaving and joining, resyncs, the mirror down and back, verify results, the operator's
 * actions), coloured by level; it says so when older events fell out of the process's ring.
 */

export const eventsScript = `
const MAX_SHOWN = 300;
let lastEvent = 0;
async function refreshEvents() {
  try {
    const r = await fetch("api/events?since=" + lastEvent, { cache: "no-store" });
    if (!r.ok) return;
    const page = await r.json();
    const list = document.getElementById("events");
    if (page.missed > 0) {
      list.prepend(el("li", "event missed", page.missed + " older event(s) no longer kept"));
    }
    for (const e of page.events) {
      const li = el("li", "event " + e.level);
      li.dataset.kind = e.kind;
      li.dataset.level = e.level;
      if (e.node) li.dataset.subject = e.node; // not data-node: that names the cards
      if (e.to) li.dataset.to = e.to;
      li.append(el("time", "", clock(e.time)), el("span", "kind", e.kind), el("span", "text", e.message));
      list.prepend(li);
      lastEvent = Math.max(lastEvent, e.id);
    }
    while (list.childElementCount > MAX_SHOWN) list.lastElementChild.remove();
    document.getElementById("events-empty").hidden = list.childElementCount > 0;
  } catch (e) { /* the status line says when the process cannot be reached */ }
}
refreshEvents();
setInterval(refreshEvents, 1000);
`;
