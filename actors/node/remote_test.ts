/**
 * A remote node (proxy ↔ node server over a real transport) passes the block conformance suite
 * on every medium, and survives what the wire can do to it: corrupted payloads, resets, wrong
 * secrets, media of another storage.
 */
import assert from "node:assert/strict";
import { runBlockConformance } from "../../tests/support/block_conformance.ts";
import { BlockError } from "../block/contract.ts";
import { MemoryBlockDevice } from "../block/memory.ts";
import { checkBlock, fillBlock } from "../../drill/block_stamps.ts";
import { MemoryNetwork, MemoryTransport } from "../../transport/memory.ts";
import { makeTestCerts, type TestCerts } from "../../tests/support/certs.ts";
import { tcpTransport } from "../../transport/tcp.ts";
import { unixTransport } from "../../transport/unix.ts";
import { QuicTransport } from "../../transport/quic.ts";
import type { Transport } from "../../transport/types.ts";
import { MemoryLogger } from "../../util/log.ts";
import { RemoteNode, type RemoteNodeOptions } from "./proxy.ts";
import { serveNode } from "./server.ts";

const SIZE = 16 * 1024 * 1024;
const BLOCK = 4096;
let certs: TestCerts | undefined;

interface Medium {
  readonly name: string;
  url(): Promise<string>;
  transports(): Promise<Transport[]>;
}

let unixSeq = 0;
const media: Medium[] = [
  {
    name: "mem",
    url: () => Promise.resolve(`mem://node-${crypto.randomUUID()}`),
    transports: () => Promise.resolve([new MemoryTransport()]),
  },
  {
    name: "tcp",
    url: () => Promise.resolve("tcp://127.0.0.1:0"),
    transports: () => Promise.resolve([tcpTransport]),
  },
  {
    name: "unix",
    url: async () => `unix://${await Deno.makeTempDir({ prefix: "dst-node-" })}/n${unixSeq++}.sock`,
    transports: () => Promise.resolve([unixTransport]),
  },
  {
    name: "quic",
    url: () => Promise.resolve("quic://127.0.0.1:0"),
    transports: async () => {
      certs ??= await makeTestCerts();
      return [new QuicTransport({ cert: certs.cert, key: certs.key, caCerts: [certs.caCert] })];
    },
  },
];

async function remotePair(
  medium: Medium,
  readOnly = false,
  proxyOptions: Partial<RemoteNodeOptions> = {},
) {
  const transports = await medium.transports();
  const device = new MemoryBlockDevice({ size: SIZE, readOnly });
  const server = await serveNode(await medium.url(), device, {
    node: "node-a",
    storageId: "storage-1",
    transports,
  });
  const remote = await RemoteNode.connect(server.url, {
    node: "proxy",
    transports,
    ...proxyOptions,
  });
  return { device, server, remote };
}

for (const medium of media) {
  runBlockConformance(`remote(${medium.name})`, async ({ readOnly }) => {
    const { server, remote } = await remotePair(medium, readOnly);
    return { device: remote, dispose: () => server.close() };
  });
}

Deno.test("remote node: size and capabilities are learned at the handshake", async () => {
  const { server, remote } = await remotePair(media[1]!);
  try {
    assert.equal(remote.info().size, SIZE);
    assert.equal(remote.storageId, "storage-1");
    assert.equal(remote.checksum, "crc32");
  } finally {
    await remote.close();
    await server.close();
  }
});

Deno.test("remote node: corrupted payloads are caught by the checksum and sent again, never written or returned", async () => {
  const network = new MemoryNetwork({ seed: 7 });
  const transports = [new MemoryTransport(network)];
  const device = new MemoryBlockDevice({ size: SIZE });
  const logger = new MemoryLogger();
  // A flipped length prefix stalls a link until keepalive notices: keep that short here.
  const live = { keepAliveMs: 50, deadAfterMs: 250 };
  const server = await serveNode("mem://corrupt", device, {
    node: "n",
    transports,
    logger,
    ...live,
  });
  const remote = await RemoteNode.connect(server.url, {
    node: "p",
    transports,
    backoff: { initialMs: 5, maxMs: 50 },
    ...live,
  });
  try {
    // Flip bits in one frame of every few; headers may break too: then the link resets and the
    // proxy reconnects and resends. Either way no corrupted byte is written or returned.
    network.faults.corrupt = 0.1;
    const buf = new Uint8Array(BLOCK);
    for (let i = 0; i < 64; i++) {
      fillBlock(buf, i * BLOCK, 1, i);
      await remote.write(i * BLOCK, buf, false);
    }
    for (let i = 0; i < 64; i++) {
      const got = await remote.read(i * BLOCK, BLOCK);
      assert.deepEqual(checkBlock(got, i * BLOCK), { writer: 1, seq: i });
    }
    network.faults.corrupt = 0;
    for (let i = 0; i < 64; i++) {
      assert.deepEqual(checkBlock(await device.read(i * BLOCK, BLOCK), i * BLOCK), {
        writer: 1,
        seq: i,
      });
    }
    assert.ok(
      remote.stats.checksumErrors + server.stats.checksumErrors > 0,
      "no corruption was caught",
    );
  } finally {
    network.faults.corrupt = 0;
    await remote.close();
    await server.close();
  }
});

Deno.test("remote node: link resets mid-load lose no acknowledged write", async () => {
  const network = new MemoryNetwork({ seed: 3 });
  const transports = [new MemoryTransport(network)];
  const device = new MemoryBlockDevice({ size: SIZE });
  const server = await serveNode("mem://reset", device, { node: "n", transports });
  const remote = await RemoteNode.connect(server.url, {
    node: "p",
    transports,
    backoff: { initialMs: 5, maxMs: 50 },
  });
  try {
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 512; i++) {
      const buf = new Uint8Array(BLOCK);
      fillBlock(buf, i * BLOCK, 2, i);
      writes.push(remote.write(i * BLOCK, buf, false));
      if (i % 128 === 64) network.resetAll("injected reset");
    }
    await Promise.all(writes);
    assert.ok(remote.stats.reconnects >= 1);
    for (let i = 0; i < 512; i++) {
      assert.deepEqual(checkBlock(await device.read(i * BLOCK, BLOCK), i * BLOCK), {
        writer: 2,
        seq: i,
      });
    }
  } finally {
    await remote.close();
    await server.close();
  }
});

Deno.test("remote node: a proxy without the cluster secret is refused and logged", async () => {
  const transports = [tcpTransport];
  const logger = new MemoryLogger();
  const server = await serveNode("tcp://127.0.0.1:0", new MemoryBlockDevice({ size: SIZE }), {
    node: "n",
    transports,
    secret: "right",
    logger,
  });
  try {
    await assert.rejects(
      RemoteNode.connect(server.url, {
        node: "p",
        transports,
        secret: "wrong",
        connectTimeoutMs: 300,
      }),
      /cannot reach node/,
    );
    const ok = await RemoteNode.connect(server.url, { node: "p", transports, secret: "right" });
    await ok.close();
    assert.ok(
      logger.entries.some((e) => /secret|proof|auth/i.test(e.message + JSON.stringify(e.fields))),
    );
  } finally {
    await server.close();
  }
});

Deno.test("remote node: media of another storage is refused", async () => {
  const { server, remote } = await remotePair(media[1]!);
  await remote.close();
  try {
    await assert.rejects(
      RemoteNode.connect(server.url, {
        node: "p",
        transports: [tcpTransport],
        expectStorageId: "other",
      }),
      (e) => e instanceof BlockError && /another storage/.test(e.message),
    );
  } finally {
    await server.close();
  }
});

Deno.test("remote node: reconnects to its node after the media's storage id was changed", async () => {
  const network = new MemoryNetwork({ seed: 5 });
  const transports = [new MemoryTransport(network)];
  const device = new MemoryBlockDevice({ size: SIZE });
  const first = await serveNode("mem://restamped", device, {
    node: "n",
    transports,
    storageId: "old-age",
  });
  const remote = await RemoteNode.connect(first.url, {
    node: "p",
    transports,
    backoff: { initialMs: 5, maxMs: 20 },
  });
  try {
    await first.close();
    // The node comes back announcing the id a mirror stamped on its media meanwhile.
    const second = await serveNode("mem://restamped", device, {
      node: "n",
      transports,
      storageId: "new-age",
    });
    try {
      const buf = new Uint8Array(BLOCK);
      fillBlock(buf, 0, 3, 1);
      await remote.write(0, buf, false);
      assert.equal(remote.state, "connected");
      assert.equal(remote.storageId, "new-age");
    } finally {
      await second.close();
    }
  } finally {
    await remote.close();
  }
});
