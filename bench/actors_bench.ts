/**
 * Micro-benchmarks of the local runtime: a tell that is handled, and an ask round trip (message
 * in, reply out, promise resolved) on one system. Run: deno bench -A actors/system_bench.ts
 */
import { setImmediate } from "node:timers";
import type { ActorRef } from "../actors/runtime/ref.ts";
import { ActorSystem } from "../actors/runtime/system.ts";

type Ping = { n: number; replyTo: ActorRef<number> };

const system = new ActorSystem({ node: "bench" });
const echo = system.spawn<Ping>((ctx) => (m) => void ctx.tell(m.replyTo, m.n), { name: "echo" });
let handled = 0;
const sink = system.spawn<number>(() => () => void handled++, { name: "sink", capacity: 1 << 16 });

Deno.bench("ask round trip (tell in, tell reply, resolve)", async () => {
  await system.ask<Ping, number>(echo, (replyTo) => ({ n: 1, replyTo }), 1000);
});

Deno.bench("1000 tells, handled", async () => {
  const target = handled + 1000;
  for (let i = 0; i < 1000; i++) system.tell(sink, i);
  // The sink yields to the event loop every 64 messages; wait with a macrotask, not a microtask.
  while (handled < target) await new Promise((resolve) => setImmediate(resolve));
});

Deno.bench("100 asks in flight", async () => {
  const replies: Promise<number>[] = [];
  for (let i = 0; i < 100; i++) {
    replies.push(system.ask<Ping, number>(echo, (replyTo) => ({ n: i, replyTo }), 1000));
  }
  await Promise.all(replies);
});

globalThis.addEventListener("unload", () => void system.shutdown());
