/**
 * Flow control at the link, over real TCP: a receiver that holds frames back stops the link from
 * reading (the peer is pushed back, nothing piles up here), and a peer that stops reading what
 * this end sends is dropped once queued bytes have not moved for the stall timeout.
 */

import assert from "node:assert/strict";
import { MemoryLogger } from "../util/log.ts";
import { dial, serve } from "./dial.ts";
import type { FramedLink } from "./link.ts";
import { tcpTransport } from "./tcp.ts";
import { RawPeer } from "../tests/support/raw_peer.ts";
import type { Frame } from "./types.ts";

const hello = (node: string) => ({ version: 1, node, info: {} });

Deno.test("link: a receiver that returns a promise holds back later frames until it settles", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const got: number[] = [];
  let serverLink: FramedLink | undefined;
  const server = await serve("tcp://127.0.0.1:0", { hello: hello("s"), keepAliveMs: 0 }, (link) => {
    serverLink = link;
    link.receive((frame) => {
      got.push(frame.header.n as number);
      return got.length === 1 ? gate : undefined;
    });
  });
  const link = await dial(server.url, { hello: hello("c"), keepAliveMs: 0 });
  try {
    const payload = new Uint8Array(64 * 1024);
    for (let n = 0; n < 200; n++) link.send({ t: "data", n }, payload); // 12.8 MB
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(got, [0], "nothing is delivered while the first frame is held");
    assert.ok(link.queuedBytes > 0, "the sender is pushed back: its bytes wait on its side");
    release();
    await link.drain();
    for (let i = 0; i < 200 && got.length < 200; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(got, Array.from({ length: 200 }, (_, n) => n), "then all, in order");
    assert.equal(serverLink?.isClosed, false);
  } finally {
    link.close();
    await server.close();
  }
});

Deno.test("link: a peer that stops reading is dropped after the write stall timeout", async () => {
  const logger = new MemoryLogger();
  let serverLink: FramedLink | undefined;
  const reply = new Uint8Array(1 << 20);
  const server = await serve("tcp://127.0.0.1:0", {
    hello: hello("s"),
    keepAliveMs: 0,
    writeStallMs: 300,
    maxQueuedBytes: 8 << 20,
    logger,
  }, (link) => {
    serverLink = link;
    link.receive((_frame: Frame) => {
      if (link.queuedBytes + reply.length > (8 << 20)) return link.drain(); // bounded here
      link.send({ t: "big" }, reply);
      return undefined;
    });
  });
  const peer = new RawPeer(await tcpTransport.connect(server.url));
  try {
    await peer.handshake({ version: 1, node: "sloth" });
    // Asks for ever more and reads nothing.
    for (let i = 0; i < 64; i++) await peer.send({ t: "more", i });
    const closed = await serverLink!.closed;
    assert.equal(closed.by, "error");
    assert.match(closed.reason, /^peer stopped reading: \d+ bytes unsent for \d+ ms$/);
    assert.ok(logger.entries.some((e) => /peer stopped reading/.test(String(e.fields.reason))));
  } finally {
    peer.close();
    await server.close();
  }
});
