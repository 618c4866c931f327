/**
 * What a peer can make a real `dst node` process hold, over real sockets: links beyond
 * --max-links are refused with the reason (logged once per burst), 500 strangers that never
 * finish a handshake do not keep a real proxy out, and a proxy that asks for reads and never
 * reads the replies neither grows the node's memory nor keeps its link past the stall timeout.
 */
import assert from "node:assert/strict";
import { checkBlock, fillBlock } from "../drill/block_stamps.ts";
import { NODE_PROTOCOL_VERSION } from "../actors/node/protocol.ts";
import { RemoteNode } from "../actors/node/proxy.ts";
import { tcpTransport } from "../transport/tcp.ts";
import { RawPeer } from "./support/raw_peer.ts";
import { planNode } from "../cli/node.ts";
import { type DstProcess, spawnDst } from "./support/dst_process.ts";

const SECRET = "limits-secret";
const MiB = 1024 * 1024;
const BLOCK = 4096;

async function startNode(extra: string[] = []): Promise<{ node: DstProcess; url: string }> {
  const node = await spawnDst(
    ["node", "--listen", "tcp://127.0.0.1:0", "--data", "memory:", "--size", "64M", "--id", "n1"]
      .concat(extra),
    { env: { DST_SECRET: SECRET }, ready: /^tcp:\/\// },
  );
  return { node, url: node.lines.find((l) => l.startsWith("tcp://"))! };
}

/** Resident memory of a process, from /proc. */
async function rssBytes(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kib = /VmRSS:\s+(\d+) kB/.exec(status);
  assert.ok(kib, "VmRSS in /proc/PID/status");
  return Number(kib[1]) * 1024;
}

/** Writes `mib` MiB of self-describing blocks through a real proxy and reads them back. */
async function verifyProxy(url: string, name: string, seq: number, mib = 1): Promise<void> {
  const proxy = await RemoteNode.connect(url, { node: name, secret: SECRET });
  try {
    for (let off = 0; off < mib * MiB; off += MiB) {
      const data = new Uint8Array(MiB);
      for (let at = 0; at < data.length; at += BLOCK) {
        fillBlock(data.subarray(at, at + BLOCK), off + at, 1, seq);
      }
      await proxy.write(off, data, true);
      const back = await proxy.read(off, MiB);
      for (let at = 0; at < back.length; at += BLOCK) {
        assert.deepEqual(checkBlock(back.subarray(at, at + BLOCK), off + at), { writer: 1, seq });
      }
    }
  } finally {
    await proxy.close();
  }
}

Deno.test("dst node --max-links: a proven proxy beyond it is refused with the reason, logged once", async () => {
  const { node, url } = await startNode(["--max-links", "2"]);
  const proxies: RemoteNode[] = [];
  try {
    for (const name of ["p1", "p2"]) {
      proxies.push(await RemoteNode.connect(url, { node: name, secret: SECRET }));
    }
    await assert.rejects(
      RemoteNode.connect(url, {
        node: "p3",
        secret: SECRET,
        connectTimeoutMs: 400,
        backoff: { initialMs: 20, maxMs: 40 },
      }),
      /server full: it holds 2 links, its limit/,
    );
    await proxies.pop()!.close();
    await verifyProxy(url, "p4", 4); // the freed slot is usable again (after the close lands)
  } finally {
    for (const proxy of proxies) await proxy.close();
  }
  const { stderr } = await node.stop();
  const lines = stderr.split("\n").filter((l) => /link refused remote=.*server full/.test(l));
  assert.equal(lines.length, 1, `one line per burst, got:\n${lines.join("\n")}`);
});

Deno.test("dst node: 500 strangers stuck in their handshake do not keep a real proxy out", async () => {
  const { node, url } = await startNode();
  const strangers: RawPeer[] = [];
  try {
    const before = await rssBytes(node.pid);
    for (let i = 0; i < 500; i++) {
      const peer = new RawPeer(await tcpTransport.connect(url));
      strangers.push(peer);
      // Half say nothing, half start a hello and stop in the middle of it.
      if (i % 2 === 1) {
        void peer.write(new Uint8Array([0, 0, 0, 90, 0, 0, 0, 0, 0x86])).catch(() => {});
      }
    }
    await verifyProxy(url, "real", 1);
    // Each stranger used to cost about 400 KiB of buffers (200 MiB for these 500).
    const growth = (await rssBytes(node.pid)) - before;
    assert.ok(growth < 64 * MiB, `500 strangers grew the node by ${(growth / MiB).toFixed(1)} MiB`);
  } finally {
    for (const peer of strangers) peer.close();
  }
  const { code, stderr } = await node.stop();
  assert.equal(code, 0);
  const busy = stderr.split("\n").filter((l) => /link refused remote=.*server busy/.test(l));
  assert.equal(busy.length, 1, `one line per burst, got ${busy.length}`);
});

Deno.test("dst node: a proxy that never reads its replies holds no memory and is dropped", async () => {
  const { node, url } = await startNode(["--stall-timeout-ms", "1500"]);
  const hog = new RawPeer(await tcpTransport.connect(url));
  try {
    // Real data to read (a hole would read as untouched zero pages), and a steady state that
    // includes a served proxy.
    await verifyProxy(url, "warm-up", 1, 16);
    const before = await rssBytes(node.pid);
    await hog.handshake({
      version: NODE_PROTOCOL_VERSION,
      node: "hog",
      secret: SECRET,
      info: { role: "proxy", checksums: [] },
    });
    // 4 GiB of reads asked for, none of the replies read.
    for (let id = 0; id < 4096; id++) {
      void hog.send({ t: "rq", id, op: "read", off: (id % 16) * MiB, len: MiB }).catch(() => {});
    }
    let peak = before;
    for (let i = 0; i < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      peak = Math.max(peak, await rssBytes(node.pid));
    }
    const growth = peak - before;
    console.log(`dst node RSS: ${before / MiB | 0} MiB before, peak ${peak / MiB | 0} MiB`);
    assert.ok(growth < 64 * MiB, `the node grew by ${(growth / MiB).toFixed(1)} MiB`);
    // Past the stall timeout the link is gone: what the socket still holds ends in EOF.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    let bytes = 0;
    const buffer = new Uint8Array(MiB);
    for (;;) {
      const got = await hog.duplex.read(buffer).catch(() => null);
      if (got === null) break;
      bytes += got;
      assert.ok(bytes < 256 * MiB, "the node kept sending: the link was not dropped");
    }
  } finally {
    hog.close();
  }
  const { stderr } = await node.stop();
  assert.match(stderr, /link closed .*peer stopped reading: \d+ bytes unsent for \d+ ms/);
});

Deno.test("dst node: limit flags are read, and a bad one is named with what it takes", () => {
  const base = ["--listen", "tcp://127.0.0.1:0", "--data", "memory:", "--size", "4M"];
  assert.deepEqual(planNode(base).limits, {});
  assert.deepEqual(
    planNode([
      ...base,
      "--max-links",
      "3",
      "--max-pending-handshakes",
      "9",
      "--max-in-flight",
      "16",
      "--max-link-bytes",
      "8M",
      "--stall-timeout-ms",
      "2500",
    ]).limits,
    {
      maxLinks: 3,
      maxPendingHandshakes: 9,
      maxInFlight: 16,
      maxLinkBytes: 8 * MiB,
      writeStallMs: 2500,
    },
  );
  assert.throws(
    () => planNode([...base, "--max-links", "0"]),
    /--max-links must be a whole number from 1 to 100000, got "0"/,
  );
  assert.throws(() => planNode([...base, "--max-link-bytes", "lots"]), /--max-link-bytes/);
  assert.throws(() => planNode([...base, "--stall-timeout-ms", "1.5"]), /--stall-timeout-ms/);
});
