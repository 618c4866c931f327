/** Unit tests of the memory medium's seeded faults, and of links living through them. */

import assert from "node:assert/strict";
import { ManualClock } from "../util/clock.ts";
import { dial, serve } from "./dial.ts";
import type { Faults } from "./memory.ts";
import { ConnectionResetError, MemoryNetwork, MemoryTransport, noFaults } from "./memory.ts";
import type { Duplex, Frame, Link } from "./types.ts";

const text = new TextEncoder();
const hello = (node: string) => ({ version: 1, node, info: {} });

/** A connected pair of raw duplexes on a fresh network. */
async function pair(
  faults: Partial<Faults> = {},
  seed = 1,
  clock?: ManualClock,
): Promise<{ network: MemoryNetwork; a: Duplex; b: Duplex; close(): void }> {
  const network = new MemoryNetwork(
    clock === undefined ? { seed, faults } : { seed, faults, clock },
  );
  const listener = network.listen("mem://pair");
  const accepted = listener[Symbol.asyncIterator]().next();
  const a = network.connect("mem://pair");
  const b = (await accepted).value as Duplex;
  return {
    network,
    a,
    b,
    close() {
      a.close();
      b.close();
      listener.close();
    },
  };
}

async function readString(duplex: Duplex, size = 64): Promise<string | null> {
  const into = new Uint8Array(size);
  const n = await duplex.read(into);
  return n === null ? null : new TextDecoder().decode(into.subarray(0, n));
}

/** Which of `count` single-byte units survive a drop rate, as a string of 0/1. */
async function survivors(seed: number, count: number): Promise<string> {
  const { a, b, close } = await pair({ drop: 0.5 }, seed);
  for (let i = 0; i < count; i++) await a.write(new Uint8Array([i]));
  a.close();
  const got = new Set<number>();
  const into = new Uint8Array(count);
  for (;;) {
    const n = await b.read(into);
    if (n === null) break;
    for (const byte of into.subarray(0, n)) got.add(byte);
  }
  close();
  return Array.from({ length: count }, (_, i) => (got.has(i) ? "1" : "0")).join("");
}

Deno.test("drop: units vanish at the given rate, the same ones for the same seed", async () => {
  const first = await survivors(11, 200);
  assert.equal(first, await survivors(11, 200), "replayable from the seed");
  assert.notEqual(first, await survivors(12, 200), "another seed, another pattern");
  const kept = [...first].filter((c) => c === "1").length;
  assert.ok(kept > 60 && kept < 140, `${kept} of 200 kept at drop 0.5`);
});

Deno.test("delay: a unit arrives only when the clock passes its delay, in order", async () => {
  const clock = new ManualClock();
  const { a, b, close } = await pair({ delayMs: 50 }, 1, clock);
  await a.write(text.encode("one"));
  await a.write(text.encode("two"));
  let got: string | null | undefined;
  const reading = readString(b).then((s) => (got = s));
  clock.advance(49);
  await Promise.resolve();
  assert.equal(got, undefined, "nothing before 50 ms");
  clock.advance(1);
  await reading;
  assert.equal(got, "onetwo");
  close();
});

Deno.test("reorder: a held unit is delivered after the next one", async () => {
  const { a, b, network, close } = await pair({ reorder: 1 });
  await a.write(text.encode("1"));
  await a.write(text.encode("2"));
  network.faults.reorder = 0;
  await a.write(text.encode("3"));
  assert.equal(await readString(b), "213");
  close();
});

Deno.test("corrupt: exactly one bit of the unit flips", async () => {
  const { a, b, close } = await pair({ corrupt: 1 });
  const sent = new Uint8Array(1000).fill(0x55);
  await a.write(sent);
  const into = new Uint8Array(1000);
  let n = 0;
  while (n < 1000) n += (await b.read(into.subarray(n)))!;
  let flipped = 0;
  for (let i = 0; i < 1000; i++) {
    for (let x = into[i]! ^ 0x55; x !== 0; x &= x - 1) flipped++;
  }
  assert.equal(flipped, 1);
  close();
});

Deno.test("reset: the writer gets a reset error and so does the reader", async () => {
  const { a, b, network, close } = await pair();
  const pending = b.read(new Uint8Array(10));
  network.faults.reset = 1;
  await assert.rejects(a.write(text.encode("x")), ConnectionResetError);
  await assert.rejects(pending, ConnectionResetError);
  assert.equal(network.openConnections, 0);
  close();
});

Deno.test("partition: units vanish and new connections are refused until healed", async () => {
  const { a, b, network, close } = await pair();
  network.faults.partitioned = true;
  await a.write(text.encode("lost"));
  assert.throws(() => network.connect("mem://pair"), /partitioned/);
  network.faults.partitioned = false;
  await a.write(text.encode("kept"));
  assert.equal(await readString(b), "kept");
  close();
});

Deno.test("close: the peer reads what was in flight, then end of stream", async () => {
  const { a, b, close } = await pair();
  await a.write(text.encode("last words"));
  a.close();
  assert.equal(await readString(b), "last words");
  assert.equal(await readString(b), null);
  await assert.rejects(b.write(text.encode("x")), /closed by the peer/);
  close();
});

/** A server and a client link on one faulty network; the client gets what the server sends. */
async function linked(faults: Partial<Faults>, seed: number, clock = new ManualClock()) {
  const network = new MemoryNetwork({ seed, clock });
  const options = { transports: [new MemoryTransport(network)], clock };
  const links: Link[] = [];
  const server = await serve("mem://s", { ...options, hello: hello("s") }, (l) => links.push(l));
  const client = await dial("mem://s", { ...options, hello: hello("c") });
  while (links.length === 0) await new Promise((r) => setTimeout(r, 1));
  Object.assign(network.faults, faults);
  return { network, clock, server, client, serverLink: links[0]! };
}

Deno.test("a link survives dropped frames: later frames still decode, in order", async () => {
  const { network, server, client, serverLink } = await linked({ drop: 0.3 }, 5);
  const got: Frame[] = [];
  client.receive((frame) => got.push(frame));
  for (let n = 0; n < 300; n++) {
    serverLink.send({ t: "n", n, same: "shape", every: "time" });
    await serverLink.drain(); // one frame per write unit, so drops take single frames
  }
  network.faults.drop = 0;
  serverLink.send({ t: "end" });
  while (got.at(-1)?.header.t !== "end") await new Promise((r) => setTimeout(r, 1));
  const ns = got.slice(0, -1).map((f) => f.header.n as number);
  assert.ok(ns.length > 150 && ns.length < 260, `${ns.length} of 300 arrived`);
  assert.deepEqual(ns, [...ns].sort((x, y) => x - y), "in order");
  assert.equal(client.isClosed, false);
  await server.close();
  await client.closed;
});

Deno.test("a partitioned link is closed by keepalive as a silent peer", async () => {
  const { clock, server, client, network } = await linked({}, 9);
  client.receive(() => {});
  network.faults.partitioned = true;
  for (let i = 0; i < 12; i++) {
    clock.advance(500);
    await new Promise((r) => setTimeout(r, 0));
  }
  const closed = await client.closed;
  assert.equal(closed.by, "error");
  assert.match(closed.reason, /peer silent for \d+ ms/);
  network.faults.partitioned = false;
  await server.close();
});

Deno.test("a corrupted header closes the link with a reason, not a crash", async () => {
  const { network, server, client, serverLink } = await linked({}, 3);
  client.receive(() => {});
  network.faults.corrupt = 1;
  // Every unit gets a bit flipped; within a few frames one lands in a prefix or header.
  for (let i = 0; i < 200 && !client.isClosed; i++) {
    serverLink.send({ t: "x", i }, new Uint8Array(4));
    await serverLink.drain().catch(() => {});
    await new Promise((r) => setTimeout(r, 0));
  }
  const closed = await client.closed;
  assert.equal(closed.by, "error");
  assert.match(closed.reason, /bad frame|invalid/);
  network.faults.corrupt = 0;
  await server.close();
});

Deno.test("reorder: a held unit no later unit overtakes is delivered a little late", async () => {
  const clock = new ManualClock();
  const { a, b, close } = await pair({ reorder: 1 }, 1, clock);
  await a.write(text.encode("alone"));
  let got: string | null | undefined;
  const reading = readString(b).then((s) => (got = s));
  await Promise.resolve();
  assert.equal(got, undefined, "held back");
  clock.advance(1);
  await reading;
  assert.equal(got, "alone", "not held forever: a stream waiting for it would wait forever");
  close();
});

Deno.test("duplicate: a unit can arrive twice", async () => {
  const { a, b, close } = await pair({ duplicate: 1 });
  await a.write(text.encode("x"));
  assert.equal(await readString(b), "xx");
  close();
});

Deno.test("faults per connection direction, and the dialing process named", async () => {
  const seen: string[] = [];
  const lost = { ...noFaults(), drop: 1 };
  const network = new MemoryNetwork({
    faultsFor: (from, to, end) => {
      seen.push(`${from}>${to}:${end}`);
      return end === "dialer" ? lost : noFaults();
    },
  });
  const listener = network.listen("mem://node");
  const accepted = listener[Symbol.asyncIterator]().next();
  const a = await new MemoryTransport(network, "exporter").connect("mem://node");
  const b = (await accepted).value as Duplex;
  assert.deepEqual(seen, ["exporter>node:dialer", "exporter>node:listener"]);
  await a.write(text.encode("request")); // the dialer's units vanish
  await b.write(text.encode("reply")); // the listener's arrive
  assert.equal(await readString(a), "reply");
  lost.drop = 0; // the objects are live: changing them changes the connection
  await a.write(text.encode("again"));
  assert.equal(await readString(b), "again");
  a.close();
  b.close();
  listener.close();
});

Deno.test("crash: every connection of a process is reset and its listener is gone", async () => {
  const network = new MemoryNetwork();
  const listener = network.listen("mem://node");
  const accepted = listener[Symbol.asyncIterator]().next();
  const fromExporter = network.connect("mem://node", "exporter");
  const atNode = (await accepted).value as Duplex;
  const other = network.listen("mem://other");
  const otherAccepted = other[Symbol.asyncIterator]().next();
  const unrelated = network.connect("mem://other", "someone");
  await otherAccepted;
  const pending = fromExporter.read(new Uint8Array(8));
  network.crash("node");
  await assert.rejects(pending, /node crashed/);
  await assert.rejects(atNode.write(text.encode("late")), ConnectionResetError);
  assert.throws(() => network.connect("mem://node"), /connection refused/);
  assert.equal(network.openConnections, 2, "the other connection lives on");
  network.resetBetween("someone", "other");
  await assert.rejects(unrelated.write(text.encode("x")), ConnectionResetError);
  assert.equal(network.openConnections, 0);
  other.close();
});
