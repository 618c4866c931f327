/**
 * Fuzzing the node wire protocol over real TCP with a fixed seed: thousands of hostile inputs
 * before authentication (garbage, huge lengths, cut frames, broken msgpack, wrong hello fields,
 * operations instead of a proof) and after it (the same, plus requests with wrong field types
 * and hostile offsets and lengths), while a real proxy beside the fuzzer keeps writing and
 * reading back its own region. The node must never crash, keep serving that proxy, answer or
 * close every well-framed hostile session, and act on nothing a peer sent before it proved
 * itself.
 */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { guard } from "../actors/block/guard.ts";
import { checkBlock, fillBlock } from "../drill/block_stamps.ts";
import { NODE_PROTOCOL_VERSION } from "../actors/node/protocol.ts";
import { RemoteNode } from "../actors/node/proxy.ts";
import { serveNode } from "../actors/node/server.ts";
import { tcpTransport } from "../transport/tcp.ts";
import { RawPeer } from "./support/raw_peer.ts";
import type { Header } from "../transport/types.ts";
import { MemoryLogger } from "../util/log.ts";
import { type FuzzCase, NodeFuzzer } from "./support/fuzz_node.ts";
import { RecordingDevice } from "./support/fuzz_recorder.ts";

const SEED = 0x5eed_0011;
const PRE_AUTH_CASES = 2000;
const POST_AUTH_CASES = 2000;
const CONCURRENCY = 8;
const SECRET = "fuzz-secret";
const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
/** The verifying proxy owns [0, FUZZ_FROM); hostile operations aim at or beyond it. */
const FUZZ_FROM = 8 * MiB;
const BLOCK = 4096;

/** Writes self-describing 64 KiB pieces in its region and reads each back, until stopped. */
function verifier(proxy: RemoteNode): { stop(): Promise<number> } {
  let running = true;
  const loop = (async () => {
    let rounds = 0;
    for (let seq = 1; running; seq++) {
      const off = (seq % (FUZZ_FROM / (64 * 1024))) * 64 * 1024;
      const data = new Uint8Array(64 * 1024);
      for (let at = 0; at < data.length; at += BLOCK) {
        fillBlock(data.subarray(at, at + BLOCK), off + at, 1, seq);
      }
      await proxy.write(off, data, false);
      const back = await proxy.read(off, data.length);
      for (let at = 0; at < back.length; at += BLOCK) {
        assert.deepEqual(checkBlock(back.subarray(at, at + BLOCK), off + at), { writer: 1, seq });
      }
      rounds++;
    }
    return rounds;
  })();
  return {
    stop() {
      running = false;
      return loop;
    },
  };
}

/** Runs `fn` over `count` cases, `CONCURRENCY` at a time. */
async function pool(count: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

/** Writes a case's pieces; a write the node refuses (it closed the stream) ends the case. */
async function writeCase(peer: RawPeer, fuzz: FuzzCase): Promise<void> {
  for (const piece of fuzz.pieces) {
    try {
      await peer.write(piece);
    } catch {
      return;
    }
  }
}

/** Headers the node sends until it closes, refuses, answers `sentinel`, or `ms` pass. */
async function listen(peer: RawPeer, ms: number, sentinel?: number): Promise<Header[] | null> {
  const seen: Header[] = [];
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return null; // no end seen in time
    const header = await peer.next(left);
    if (header === null) return Date.now() >= deadline ? null : seen; // timeout or closed
    seen.push(header);
    if (header.t === "refuse" || header.t === "bye") return seen;
    if (sentinel !== undefined && header.id === sentinel) return seen;
  }
}

Deno.test("node wire fuzz: hostile peers before and after auth; the node keeps serving", async () => {
  const memory = new MemoryBlockDevice({ size: SIZE });
  const device = new RecordingDevice(guard(memory), memory);
  const logger = new MemoryLogger();
  const server = await serveNode("tcp://127.0.0.1:0", device, {
    node: "fuzz-node",
    secret: SECRET,
    media: device,
    logger,
  });
  const fuzzer = new NodeFuzzer(SEED, {
    version: NODE_PROTOCOL_VERSION,
    node: "fuzz-node",
    size: SIZE,
    fuzzFrom: FUZZ_FROM,
  });
  const proxy = await RemoteNode.connect(server.url, { node: "verifier", secret: SECRET });
  try {
    // Before auth: nothing may be acted on, and the node never proves itself.
    let started = performance.now();
    let check = verifier(proxy);
    const saidBeforeAuth = new Set<string>();
    await pool(PRE_AUTH_CASES, async () => {
      const fuzz = fuzzer.preAuth();
      const peer = new RawPeer(await tcpTransport.connect(server.url));
      try {
        await writeCase(peer, fuzz);
        for (const header of (await listen(peer, 30)) ?? []) saidBeforeAuth.add(header.t);
      } finally {
        peer.close();
      }
    });
    let rounds = await check.stop();
    console.log(
      `pre-auth: ${PRE_AUTH_CASES} cases in ${
        (performance.now() - started) | 0
      } ms, ${rounds} verified rounds`,
    );
    assert.ok(rounds > 0, "the verifying proxy ran beside the pre-auth fuzzer");
    assert.deepEqual([...saidBeforeAuth].filter((t) => t !== "hello" && t !== "refuse"), []);
    const actedOn = device.calls.filter((c) =>
      !["read", "write"].includes(c.op) || c.offset + c.length > FUZZ_FROM
    );
    assert.deepEqual(actedOn.slice(0, 5), [], "nothing a peer sent before auth was acted on");

    // After auth: hostile requests get answers or a closed link, never a crash or a hang.
    started = performance.now();
    check = verifier(proxy);
    const hung: string[] = [];
    await pool(POST_AUTH_CASES, async (i) => {
      const sentinel = 1_000_000 + i;
      const fuzz = fuzzer.postAuth(sentinel);
      const peer = new RawPeer(await tcpTransport.connect(server.url));
      try {
        await peer.handshake({
          version: NODE_PROTOCOL_VERSION,
          node: `fuzzer-${i}`,
          secret: SECRET,
          info: { role: "proxy", checksums: [] },
        });
        // A broken frame may rightly leave the node waiting for more bytes: a short look only.
        const heard = listen(peer, fuzz.framed ? 5000 : 50, sentinel);
        await writeCase(peer, fuzz);
        if ((await heard) === null && fuzz.framed) hung.push(fuzz.kind);
      } finally {
        peer.close();
      }
    });
    rounds = await check.stop();
    console.log(
      `post-auth: ${POST_AUTH_CASES} cases in ${
        (performance.now() - started) | 0
      } ms, ${rounds} verified rounds`,
    );
    assert.ok(rounds > 0, "the verifying proxy ran beside the post-auth fuzzer");
    assert.deepEqual(hung, [], "a well-framed session neither answered nor closed");
    assert.ok(
      device.calls.some((c) => c.offset >= FUZZ_FROM),
      "the post-auth fuzzer reached the device (the cases are not all refused at the door)",
    );
    // Still serving a newcomer, and no handshake left behind.
    const late = await RemoteNode.connect(server.url, { node: "late", secret: SECRET });
    assert.equal(late.info().size, SIZE);
    await late.close();
    for (let i = 0; i < 200 && server.pending > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(server.pending, 0);
  } finally {
    await proxy.close();
    await server.close();
  }
});
