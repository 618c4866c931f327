/**
 * A remote node's proxy keeps the buffers of its requests until they are answered: a write
 * waiting for a lost node is resent from its payload when the link comes back, and a read lands
 * in the caller's buffer. A caller that gave up on such a request (a mirror's leg deadline) puts
 * its pooled buffer back, and the pool must not lend it to the next request meanwhile, or the
 * resent write would carry that request's bytes to the node.
 */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../block/memory.ts";
import { MemoryNetwork, MemoryTransport } from "../../transport/memory.ts";
import { BufferPool } from "../../util/buffer_pool.ts";
import { holders } from "../../util/buffer_lease.ts";
import { RemoteNode } from "./proxy.ts";
import { serveNode } from "./server.ts";

const SIZE = 1024 * 1024;
const N = 65536;

async function cutPair() {
  const network = new MemoryNetwork({ seed: 5 });
  const transports = [new MemoryTransport(network)];
  const node = new MemoryBlockDevice({ size: SIZE });
  const server = await serveNode(`mem://hold-${crypto.randomUUID()}`, node, {
    node: "n",
    transports,
  });
  const remote = await RemoteNode.connect(server.url, {
    node: "p",
    transports,
    ioTimeoutMs: 10_000,
    backoff: { initialMs: 5, maxMs: 20 },
  });
  network.faults.partitioned = true;
  network.resetAll("cut");
  for (let i = 0; i < 200 && remote.state === "connected"; i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(remote.state, "connecting");
  const heal = () => (network.faults.partitioned = false);
  return { node, server, remote, heal };
}

/** Gives up on `op` after `ms`, as a mirror's leg deadline does; `op` keeps running. */
function giveUp(op: Promise<unknown>, ms: number): Promise<void> {
  op.catch(() => {});
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("proxy: a write resent after the caller gave up carries its own bytes, not a reused buffer's", async () => {
  const { node, server, remote, heal } = await cutPair();
  try {
    const pool = new BufferPool();
    const buffer = pool.get(N);
    buffer.fill(0xa1, 0, N);
    const write = remote.write(0, buffer.subarray(0, N), false);
    await giveUp(write, 50);
    pool.put(buffer);
    assert.ok(holders(buffer) > 0, "the waiting write let go of its payload");
    // The next request gets another buffer and fills it with its own bytes.
    const next = pool.get(N);
    assert.notEqual(next.buffer, buffer.buffer, "the pool lent a buffer a request still holds");
    next.fill(0xb2, 0, N);
    heal();
    await write;
    assert.deepEqual(await node.read(0, N), new Uint8Array(N).fill(0xa1));
    assert.equal(holders(buffer), 0, "the answered write still holds its payload");
  } finally {
    await remote.close();
    await server.close();
  }
});

Deno.test("proxy: a read answered after the caller gave up lands only in the buffer it held", async () => {
  const { node, server, remote, heal } = await cutPair();
  try {
    await node.write(0, new Uint8Array(N).fill(0xc3), false);
    const pool = new BufferPool();
    const buffer = pool.get(N);
    const read = remote.read(0, N, buffer.subarray(0, N));
    await giveUp(read, 50);
    pool.put(buffer);
    assert.ok(holders(buffer) > 0, "the waiting read let go of its buffer");
    const next = pool.get(N);
    assert.notEqual(next.buffer, buffer.buffer, "the pool lent a buffer a read may still fill");
    next.fill(0xd4, 0, N);
    heal();
    const data = await read;
    assert.deepEqual(data, new Uint8Array(N).fill(0xc3));
    assert.deepEqual(next.subarray(0, N), new Uint8Array(N).fill(0xd4));
    assert.equal(holders(buffer), 0);
  } finally {
    await remote.close();
    await server.close();
  }
});
