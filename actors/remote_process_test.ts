/**
 * Remote actors across real processes: a child Deno process runs a second ActorSystem on TCP
 * loopback; this process asks it with block data, then kills it and expects a noconnection down.
 */
import assert from "node:assert/strict";
import { dial } from "../transport/mod.ts";
import type { Down } from "./behavior.ts";
import type { ActorRef } from "./ref.ts";
import { connectNode } from "./remote.ts";
import { ActorSystem } from "./system.ts";

type Store =
  | { t: "put"; data: Uint8Array; replyTo: ActorRef<string> }
  | { t: "sum"; replyTo: ActorRef<number> };

/** Reads stdout lines until one starts with `prefix`. */
async function lineStartingWith(
  reader: ReadableStreamDefaultReader<string>,
  prefix: string,
): Promise<string> {
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`child exited before printing "${prefix}"; got: ${buffered}`);
    buffered += value;
    const line = buffered.split("\n").find((l) => l.startsWith(prefix));
    if (line !== undefined) return line.slice(prefix.length);
  }
}

Deno.test("a child process's actors answer asks with block data; its death is a noconnection down", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-net", new URL("./_remote_peer.ts", import.meta.url).pathname],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const system = new ActorSystem({ node: "parent" });
  let killed = false;
  try {
    const ready = JSON.parse(await lineStartingWith(stdout, "READY ")) as {
      url: string;
      store: ActorRef<Store>;
    };
    const link = await dial(ready.url, {
      hello: { version: 1, node: system.node, info: {} },
      keepAliveMs: 0,
    });
    const peer = connectNode(system, link);
    const data = new Uint8Array(256 * 1024).fill(3);
    const stored = await system.ask<Store, string>(
      ready.store,
      (replyTo) => ({ t: "put", data, replyTo }),
      5000,
    );
    assert.equal(stored, `peer stored ${data.length} bytes`);
    const sum = await system.ask<Store, number>(
      ready.store,
      (replyTo) => ({ t: "sum", replyTo }),
      5000,
    );
    assert.equal(sum, 3 * data.length);

    const down = new Promise<Down>((resolve) => system.watch(ready.store, resolve));
    child.kill("SIGKILL");
    killed = true;
    const d = await down;
    assert.equal(d.reason, "noconnection");
    assert.equal(
      system.tell(ready.store, { t: "sum", replyTo: ready.store as never }),
      "unreachable",
    );
    await peer.closed;
  } finally {
    if (!killed) child.kill("SIGKILL");
    await child.stdin.close().catch(() => {});
    await stdout.cancel().catch(() => {});
    await child.status;
    await system.shutdown();
  }
});
