/**
 * The connect timeout bounds the whole dial: a peer that accepts the TCP connection and then
 * never answers the handshake fails the connect in about that time, not the handshake's own
 * (longer) default. Real TCP: a listener that accepts and stays silent.
 */
import assert from "node:assert/strict";
import { dial } from "../../transport/dial.ts";
import { tcpTransport } from "../../transport/tcp.ts";
import { RemoteNode } from "./proxy.ts";

/** Accepts connections and never says a word (holds them until closed). */
function silentPeer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })().catch(() => {});
  return {
    url: `tcp://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    close: async () => {
      listener.close();
      await accepting;
      for (const c of held) {
        try {
          c.close();
        } catch { /* closed by the dialer's end already */ }
      }
    },
  };
}

/** Milliseconds `op` took to reject, and the error. */
async function failure(op: Promise<unknown>): Promise<{ ms: number; error: Error }> {
  const started = performance.now();
  const error = await op.then(() => assert.fail("it connected"), (e) => e as Error);
  return { ms: performance.now() - started, error };
}

// The handshake's own bound is 5 s: well under it means the dial's bound held.
const WELL_UNDER_HANDSHAKE_DEFAULT_MS = 4000;

Deno.test("dial: timeoutMs bounds the handshake of a peer that accepts and stays silent", async () => {
  const peer = silentPeer();
  try {
    const { ms, error } = await failure(
      dial(peer.url, {
        hello: { version: 1, node: "p", info: {} },
        transports: [tcpTransport],
        timeoutMs: 200,
      }),
    );
    assert.match(String(error), /handshake timed out after \d+ ms/);
    assert.ok(ms < WELL_UNDER_HANDSHAKE_DEFAULT_MS, `failed after ${ms} ms`);
  } finally {
    await peer.close();
  }
});

Deno.test("remote node: connectTimeoutMs bounds a node that accepts and never shakes hands", async () => {
  const peer = silentPeer();
  try {
    const { ms, error } = await failure(
      RemoteNode.connect(peer.url, {
        node: "p",
        transports: [tcpTransport],
        connectTimeoutMs: 300,
      }),
    );
    assert.match(
      error.message,
      /cannot reach node tcp:\/\/127\.0\.0\.1:\d+: .*handshake timed out/,
    );
    assert.ok(ms < WELL_UNDER_HANDSHAKE_DEFAULT_MS, `failed after ${ms} ms`);
  } finally {
    await peer.close();
  }
});
