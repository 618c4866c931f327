/**
 * One conformance suite, a list of cases, run against every transport (tcp, unix, quic, mem)
 * through real links: ordering, pipelining, payload sizes, close and reset, keepalive, refusals,
 * and bad input that must close only the offending link while the server keeps serving.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { ManualClock } from "../util/clock.ts";
import { MemoryLogger } from "../util/log.ts";
import { SeededRandom } from "../util/random.ts";
import type { DialOptions, Server } from "./dial.ts";
import { dial, serve, transportFor } from "./dial.ts";
import { encodeFrame, FrameReader, writePrefix } from "./frame.ts";
import { LINK_PROTOCOL_VERSION } from "./handshake.ts";
import { LinkRefused } from "./link.ts";
import { MemoryNetwork, MemoryTransport } from "./memory.ts";
import { makeTestCerts } from "../tests/support/certs.ts";
import { RawPeer } from "../tests/support/raw_peer.ts";
import type { Duplex, Frame, Hello, Link } from "./types.ts";
import { z } from "zod";

/** A medium under test: how to name a fresh address and what options reach it. */
interface Medium {
  readonly name: string;
  /** A fresh listen URL and the dial/serve options for it. */
  fresh(): { url: string; options: Partial<DialOptions> };
}

let serial = 0;
const certs = await makeTestCerts();

const media: Medium[] = [
  { name: "tcp", fresh: () => ({ url: "tcp://127.0.0.1:0", options: {} }) },
  {
    name: "unix",
    fresh: () => ({ url: `unix:///tmp/dst-conformance-${Deno.pid}-${++serial}.sock`, options: {} }),
  },
  {
    name: "quic",
    fresh: () => ({
      url: "quic://127.0.0.1:0",
      options: { tls: { cert: certs.cert, key: certs.key, caCerts: [certs.caCert] } },
    }),
  },
  {
    name: "mem",
    fresh: () => ({
      url: `mem://conformance-${++serial}`,
      options: { transports: [new MemoryTransport(new MemoryNetwork({ seed: serial }))] },
    }),
  },
];

const serverHello: Hello = { version: 1, node: "server", info: { size: 4096 } };
const clientHello: Hello = { version: 1, node: "client", info: {} };

/** What a case gets: a medium's fresh address and helpers bound to it. */
class Bench {
  readonly logger = new MemoryLogger();
  readonly url: string;
  readonly base: Partial<DialOptions>;
  #server: Server | undefined;
  readonly #links: Link[] = [];
  readonly #raw: Duplex[] = [];

  constructor(medium: Medium) {
    const { url, options } = medium.fresh();
    this.url = url;
    this.base = options;
  }

  get server(): Server {
    assert.ok(this.#server, "start() first");
    return this.#server;
  }

  async start(onLink: (link: Link) => void, options: Partial<DialOptions> = {}): Promise<Server> {
    this.#server = await serve(
      this.url,
      { ...this.base, hello: serverHello, logger: this.logger, ...options },
      onLink,
    );
    return this.#server;
  }

  async dial(options: Partial<DialOptions> = {}): Promise<Link> {
    const link = await dial(this.server.url, { ...this.base, hello: clientHello, ...options });
    this.#links.push(link);
    return link;
  }

  /** A bare byte stream to the server, for speaking the protocol by hand. */
  async raw(): Promise<Duplex> {
    const duplex = await transportFor(this.server.url, this.base as DialOptions).connect(
      this.server.url,
    );
    this.#raw.push(duplex);
    return duplex;
  }

  async cleanup(): Promise<void> {
    for (const duplex of this.#raw) duplex.close();
    await Promise.all(this.#raw.map((duplex) => duplex.finished));
    for (const link of this.#links) link.close("test over");
    await Promise.all(this.#links.map((link) => link.closed));
    await this.#server?.close();
  }
}

/** Echoes every frame back with `t: "echo"`. */
function echo(link: Link): void {
  link.receive((frame) => link.send({ ...frame.header, t: "echo" }, frame.payload));
}

/** Collects frames into an array; returns a waiter for the n-th. */
function collect(link: Link): { frames: Frame[]; until(n: number): Promise<void> } {
  const frames: Frame[] = [];
  let want = Infinity;
  let wake: (() => void) | undefined;
  link.receive((frame) => {
    frames.push(frame);
    if (frames.length >= want) wake?.();
  });
  return {
    frames,
    until(n: number) {
      if (frames.length >= n) return Promise.resolve();
      want = n;
      return new Promise((resolve) => (wake = resolve));
    },
  };
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  const words = new Uint32Array(out.buffer, 0, length >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = Math.imul(i + seed, 2654435761);
  for (let i = words.length * 4; i < length; i++) out[i] = i ^ seed;
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length)
    .equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

/** Speaks the client half of the handshake by hand; returns a reader positioned after it. */
async function rawHandshake(duplex: Duplex, version = 1): Promise<FrameReader> {
  const peer = new RawPeer(duplex);
  const hello = await peer.handshake({ version, node: "raw" });
  assert.deepEqual(hello, serverHello);
  return peer.reader;
}

/** Waits until the server's logger holds an entry whose reason matches. */
async function loggedReason(logger: MemoryLogger, pattern: RegExp): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (logger.entries.some((e) => pattern.test(String(e.fields.reason ?? "")))) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.fail(`no logged reason matching ${pattern}: ${JSON.stringify(logger.entries)}`);
}

/** A fresh link to the same server still works. */
async function stillServing(bench: Bench): Promise<void> {
  const link = await bench.dial();
  const got = collect(link);
  link.send({ t: "ping-app", n: 7 }, pattern(100, 7));
  await got.until(1);
  assert.equal(got.frames[0]!.header.n, 7);
  assert.ok(sameBytes(got.frames[0]!.payload, pattern(100, 7)));
}

const appHeader = z.object({ t: z.string(), id: z.number().int().nonnegative().optional() })
  .passthrough();

interface Case {
  readonly name: string;
  run(bench: Bench): Promise<void>;
}

const cases: Case[] = [
  {
    name: "frames arrive in the order sent",
    async run(bench) {
      await bench.start(echo);
      const link = await bench.dial();
      assert.deepEqual(link.peer, serverHello);
      const got = collect(link);
      for (let n = 0; n < 3000; n++) {
        link.send({ t: "seq", n }, n % 3 === 0 ? pattern(n, n) : undefined);
      }
      await got.until(3000);
      got.frames.forEach((frame, n) => {
        assert.equal(frame.header.n, n);
        assert.equal(frame.payload.length, n % 3 === 0 ? n : 0);
      });
    },
  },
  {
    name: "1000 requests in flight, replies out of order matched by id",
    async run(bench) {
      const random = new SeededRandom(42);
      await bench.start((link) => {
        const held: Frame[] = [];
        link.receive((frame) => {
          held.push({ header: frame.header, payload: frame.payload.slice() });
          if (held.length < 1000) return;
          for (let i = held.length - 1; i > 0; i--) { // shuffle, then answer all
            const j = random.below(i + 1);
            [held[i], held[j]] = [held[j]!, held[i]!];
          }
          for (const f of held) link.send({ t: "reply", id: f.header.id }, f.payload);
        });
      });
      const link = await bench.dial();
      const waiting = new Map<number, (payload: Uint8Array) => void>();
      link.receive((frame) => waiting.get(frame.header.id as number)!(frame.payload));
      const replies = Array.from({ length: 1000 }, (_, id) =>
        new Promise<void>((resolve) => {
          waiting.set(id, (payload) => {
            assert.ok(sameBytes(payload, pattern(64, id)), `reply ${id} carries its own payload`);
            resolve();
          });
          link.send({ t: "req", id }, pattern(64, id));
        }));
      await Promise.all(replies);
    },
  },
  {
    name: "payloads of 0 B, 1 B, 4 KiB, 1 MiB and 32 MiB come back byte for byte",
    async run(bench) {
      await bench.start(echo);
      const link = await bench.dial();
      const got = collect(link);
      const sizes = [0, 1, 4096, 1 << 20, 32 << 20];
      for (const [i, size] of sizes.entries()) {
        const sent = pattern(size, i + 1);
        link.send({ t: "blob", i }, sent);
        await link.drain();
        await got.until(i + 1);
        const back = got.frames[i]!;
        assert.equal(back.header.i, i);
        assert.equal(back.payload.length, size);
        assert.ok(sameBytes(back.payload, sent), `${size} bytes intact`);
      }
    },
  },
  {
    name: "frames given back with recycle() leave held frames intact while memory is reused",
    async run(bench) {
      // The server gives each frame back once its echo was written; the client keeps every
      // 7th reply and gives the rest back, so reused memory is all around the held frames.
      await bench.start((link) => {
        link.receive((frame) => {
          link.send({ ...frame.header, t: "echo" }, frame.payload);
          void link.drain().then(() => link.recycle(frame), () => {});
        });
      });
      const link = await bench.dial();
      const held: Frame[] = [];
      let count = 0;
      let wake: (() => void) | undefined;
      const sizes = [4096, 300_000, 100, 1 << 20];
      link.receive((frame) => {
        const i = frame.header.i as number;
        assert.ok(sameBytes(frame.payload, pattern(sizes[i % sizes.length]!, i)), `reply ${i}`);
        if (i % 7 === 0) held.push(frame);
        else link.recycle(frame);
        if (++count === 200) wake?.();
      });
      const done = new Promise<void>((resolve) => (wake = resolve));
      for (let i = 0; i < 200; i++) {
        link.send({ t: "blob", i }, pattern(sizes[i % sizes.length]!, i));
        if (i % 16 === 15) await link.drain();
      }
      const ended = await Promise.race([done.then(() => undefined), link.closed]);
      assert.equal(ended, undefined, `link closed early: ${ended?.reason}`);
      for (const frame of held) {
        const i = frame.header.i as number;
        assert.ok(sameBytes(frame.payload, pattern(sizes[i % sizes.length]!, i)), `held ${i}`);
      }
    },
  },
  {
    name: "a peer's close reaches this end with its reason",
    async run(bench) {
      const serverLinks: Link[] = [];
      await bench.start((link) => serverLinks.push(link));
      const link = await bench.dial();
      while (serverLinks.length === 0) await new Promise((r) => setTimeout(r, 1));
      serverLinks[0]!.close("maintenance window");
      const closed = await link.closed;
      assert.equal(closed.by, "remote");
      assert.match(closed.reason, /maintenance window/);
      assert.ok(link.isClosed);
      assert.throws(() => link.send({ t: "late" }), /closed/);
      assert.deepEqual(await serverLinks[0]!.closed, { by: "local", reason: "maintenance window" });
    },
  },
  {
    name: "a peer that vanishes without a goodbye (reset) closes the link as remote",
    async run(bench) {
      const serverLinks: Link[] = [];
      await bench.start((link) => {
        serverLinks.push(link);
        link.receive(() => {});
        link.send({ t: "unread" }, pattern(1000, 1)); // unread data makes TCP reset on close
      });
      const duplex = await bench.raw();
      await rawHandshake(duplex);
      while (serverLinks.length === 0) await new Promise((r) => setTimeout(r, 1));
      await new Promise((r) => setTimeout(r, 20));
      // The memory medium can reset for real; sockets close with unread data (TCP sends RST).
      const resettable = duplex as Duplex & { reset?: () => void };
      if (resettable.reset !== undefined) resettable.reset();
      else duplex.close();
      const closed = await serverLinks[0]!.closed;
      assert.equal(closed.by, "remote");
      assert.match(closed.reason, /connection lost|without a goodbye/);
    },
  },
  {
    name: "a silent peer is detected by keepalive",
    async run(bench) {
      const clock = new ManualClock();
      const serverLinks: Link[] = [];
      await bench.start((link) => serverLinks.push(link), {
        clock,
        keepAliveMs: 1000,
        deadAfterMs: 5000,
      });
      const duplex = await bench.raw();
      await rawHandshake(duplex); // then says nothing more
      while (serverLinks.length === 0) await new Promise((r) => setTimeout(r, 1));
      const link = serverLinks[0]!;
      link.receive(() => {});
      clock.advance(4000);
      assert.equal(link.isClosed, false, "not dead before deadAfterMs");
      clock.advance(1000);
      const closed = await link.closed;
      assert.equal(closed.by, "error");
      assert.match(closed.reason, /^peer silent for 5000 ms$/);
      await loggedReason(bench.logger, /peer silent for 5000 ms/);
    },
  },
  {
    name: "keepalive keeps a quiet but live link open",
    async run(bench) {
      await bench.start(echo, { keepAliveMs: 20, deadAfterMs: 100 });
      const link = await bench.dial({ keepAliveMs: 20, deadAfterMs: 100 });
      const got = collect(link);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(link.isClosed, false);
      link.send({ t: "still-there" });
      await got.until(1);
    },
  },
  {
    name: "a protocol version mismatch is refused naming both versions",
    async run(bench) {
      await bench.start(echo);
      await assert.rejects(
        bench.dial({ hello: { ...clientHello, version: 2 } }),
        (error: Error) => {
          assert.ok(error instanceof LinkRefused);
          assert.match(error.message, /peer speaks protocol 1, we speak 2/);
          return true;
        },
      );
      await loggedReason(bench.logger, /peer speaks protocol 2, we speak 1/);
      await stillServing(bench);
    },
  },
  {
    name: "a wrong or missing shared secret is refused; the right one is accepted",
    async run(bench) {
      await bench.start(echo, { secret: "right horse battery" });
      await assert.rejects(bench.dial({ secret: "wrong" }), /wrong secret/);
      await loggedReason(bench.logger, /wrong secret/);
      await assert.rejects(bench.dial(), /requires a shared secret|has no shared secret/);
      await loggedReason(bench.logger, /peer has no shared secret/);
      const link = await bench.dial({ secret: "right horse battery" });
      const got = collect(link);
      link.send({ t: "authed" });
      await got.until(1);
    },
  },
  {
    name: "garbage bytes close that link with a logged reason; the server keeps serving",
    async run(bench) {
      await bench.start(echo);
      const duplex = await bench.raw();
      await rawHandshake(duplex);
      await duplex.write(pattern(4096, 99).map((b) => b | 0x80));
      await loggedReason(bench.logger, /bad frame from peer/);
      await stillServing(bench);
    },
  },
  {
    name: "a truncated frame closes that link with a logged reason",
    async run(bench) {
      await bench.start(echo);
      const duplex = await bench.raw();
      await rawHandshake(duplex);
      const frame = encodeFrame({ t: "cut" }, pattern(1000, 1));
      await duplex.write(frame.subarray(0, 500));
      duplex.close();
      await loggedReason(bench.logger, /truncated frame/);
      await stillServing(bench);
    },
  },
  {
    name: "a length over the limit closes that link with a logged reason",
    async run(bench) {
      await bench.start(echo, { maxPayloadBytes: 1 << 20 });
      const duplex = await bench.raw();
      await rawHandshake(duplex);
      const prefix = new Uint8Array(8);
      writePrefix(prefix, 0, 10, (1 << 20) + 1);
      await duplex.write(prefix);
      await loggedReason(bench.logger, /payload of 1048577 bytes is over the 1048576 byte limit/);
      await stillServing(bench);
    },
  },
  {
    name: "a header failing validation closes that link with a logged reason",
    async run(bench) {
      await bench.start(echo, { headerSchema: appHeader });
      const duplex = await bench.raw();
      await rawHandshake(duplex);
      await duplex.write(encodeFrame({ t: "req", id: -5 }));
      await loggedReason(bench.logger, /invalid header from peer: id:/);
      await stillServing(bench);
    },
  },
  {
    name: "a bad hello is refused with a logged reason",
    async run(bench) {
      await bench.start(echo);
      const duplex = await bench.raw();
      await duplex.write(
        encodeFrame({ t: "hello", link: LINK_PROTOCOL_VERSION, version: 1, node: 42 }),
      );
      await loggedReason(bench.logger, /invalid hello from peer/);
      await stillServing(bench);
    },
  },
];

for (const medium of media) {
  for (const testCase of cases) {
    Deno.test(`${medium.name}: ${testCase.name}`, async () => {
      const bench = new Bench(medium);
      try {
        await testCase.run(bench);
      } finally {
        await bench.cleanup();
      }
    });
  }
}
