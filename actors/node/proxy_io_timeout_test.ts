/**
 * The remote node proxy's I/O timeout: a request waits for a lost node at most `ioTimeoutMs`,
 * counted for each request from when it began waiting (a request made long after the link
 * dropped gets its own full wait, not what is left of an earlier one, nor the 30 s deadline);
 * 0 fails at once (mirror legs); a link back in time serves what waited.
 */
import assert from "node:assert/strict";
import { BlockError } from "../block/contract.ts";
import { MemoryBlockDevice } from "../block/memory.ts";
import { MemoryNetwork, MemoryTransport } from "../../transport/memory.ts";
import { RemoteNode } from "./proxy.ts";
import { serveNode } from "./server.ts";

const SIZE = 1024 * 1024;

async function pair(ioTimeoutMs: number) {
  const network = new MemoryNetwork({ seed: 11 });
  const transports = [new MemoryTransport(network)];
  const server = await serveNode(
    `mem://io-${crypto.randomUUID()}`,
    new MemoryBlockDevice({ size: SIZE }),
    {
      node: "n",
      transports,
    },
  );
  const remote = await RemoteNode.connect(server.url, {
    node: "p",
    transports,
    ioTimeoutMs,
    backoff: { initialMs: 5, maxMs: 20 },
  });
  return { network, server, remote };
}

/** How long `op` took to fail, and with what. */
async function timedFailure(op: Promise<unknown>): Promise<{ ms: number; error: BlockError }> {
  const started = performance.now();
  const error = await op.then(
    () => assert.fail("the request succeeded"),
    (e) => e as BlockError,
  );
  return { ms: performance.now() - started, error };
}

Deno.test("proxy io timeout: each request made while the node is lost waits its own I/O timeout", async () => {
  const { server, remote } = await pair(200);
  try {
    await server.close();
    const first = await timedFailure(remote.read(0, 4096));
    assert.equal(first.error.code, "EIO");
    assert.match(first.error.message, /is down \(read waited 200 ms, the I\/O timeout\)/);
    assert.ok(first.ms >= 150 && first.ms < 5000, `failed after ${first.ms} ms`);
    // Long after the link dropped, a new request still waits, and is still bounded.
    await new Promise((r) => setTimeout(r, 300));
    const later = await timedFailure(remote.write(0, new Uint8Array(4096), false));
    assert.equal(later.error.code, "EIO");
    assert.ok(later.ms >= 150 && later.ms < 5000, `failed after ${later.ms} ms`);
  } finally {
    await remote.close();
  }
});

Deno.test("proxy io timeout: 0 fails a request at once while the link is down", async () => {
  const { server, remote } = await pair(0);
  try {
    await server.close();
    for (let i = 0; i < 100 && remote.state === "connected"; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const failed = await timedFailure(remote.read(0, 4096));
    assert.equal(failed.error.code, "EIO");
    assert.ok(failed.ms < 1000, `failed after ${failed.ms} ms`);
  } finally {
    await remote.close();
  }
});

Deno.test("proxy io timeout: a link back within the timeout serves the request that waited", async () => {
  const { network, server, remote } = await pair(5000);
  try {
    network.faults.partitioned = true;
    network.resetAll("cut");
    for (let i = 0; i < 100 && remote.state === "connected"; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(remote.state, "connecting");
    const waiting = remote.read(0, 4096);
    await new Promise((r) => setTimeout(r, 100));
    network.faults.partitioned = false;
    assert.equal((await waiting).length, 4096);
    assert.equal(remote.state, "connected");
  } finally {
    await remote.close();
    await server.close();
  }
});
