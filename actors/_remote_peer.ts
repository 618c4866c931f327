/**
 * A second node for the multi-process test: runs an ActorSystem "peer" with a store actor,
 * serves it on TCP loopback and prints `READY <json>` (url and refs) on stdout. Exits when its
 * stdin closes or it is killed.
 */
import { serve } from "../transport/mod.ts";
import { connectNode } from "./remote.ts";
import type { ActorRef } from "./ref.ts";
import { ActorSystem } from "./system.ts";

type Store =
  | { t: "put"; data: Uint8Array; replyTo: ActorRef<string> }
  | { t: "sum"; replyTo: ActorRef<number> };

const system = new ActorSystem({ node: "peer" });
const store = system.spawn<Store>((ctx) => {
  let sum = 0;
  return (m) => {
    if (m.t === "put") {
      for (const byte of m.data) sum += byte;
      ctx.tell(m.replyTo, `peer stored ${m.data.length} bytes`);
    } else {
      ctx.tell(m.replyTo, sum);
    }
  };
}, { name: "store" });

const server = await serve(
  "tcp://127.0.0.1:0",
  { hello: { version: 1, node: system.node, info: {} }, keepAliveMs: 0 },
  (link) => void connectNode(system, link),
);
console.log(`READY ${JSON.stringify({ url: server.url, store })}`);

// Stay up until the parent closes our stdin.
for await (const _ of Deno.stdin.readable) { /* ignore input */ }
await server.close();
await system.shutdown();
