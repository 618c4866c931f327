/**
 * Remote actors between two ActorSystems over real links: the in-memory transport and TCP on
 * loopback. Refs, asks, payload data, overload and dead-target nacks, watches and noconnection.
 */
import assert from "node:assert/strict";
import type { Frame, Header, Link } from "../transport/types.ts";
import { dial, MemoryNetwork, MemoryTransport, serve } from "../transport/mod.ts";
import type { Down } from "./behavior.ts";
import { DeadActorError, NoConnectionError, OverloadedError } from "./errors.ts";
import type { ActorRef } from "./ref.ts";
import { connectNode, type RemoteNode } from "./remote.ts";
import { ActorSystem } from "./system.ts";

const hello = (node: string) => ({ version: 1, node, info: {} });

/** Records what goes out on a link, to check what travels in the header and the payload. */
function spy(link: Link, sent: { header: Header; payload?: Uint8Array }[]): Link {
  return {
    get local() {
      return link.local;
    },
    get peer() {
      return link.peer;
    },
    get closed() {
      return link.closed;
    },
    get isClosed() {
      return link.isClosed;
    },
    send(header, payload) {
      sent.push(payload === undefined ? { header } : { header, payload });
      link.send(header, payload);
    },
    drain: () => link.drain(),
    receive: (handler: (frame: Frame) => void) => link.receive(handler),
    recycle: (frame: Frame) => link.recycle(frame),
    close: (reason) => link.close(reason),
  };
}

interface Pair {
  a: ActorSystem;
  b: ActorSystem;
  /** a's view of b. */
  toB: RemoteNode;
  sentByA: { header: Header; payload?: Uint8Array }[];
  close(): Promise<void>;
}

async function pair(url: string, transports?: MemoryTransport[]): Promise<Pair> {
  const a = new ActorSystem({ node: "a" });
  const b = new ActorSystem({ node: "b" });
  const options = (node: string) => ({
    hello: hello(node),
    keepAliveMs: 0,
    ...(transports ? { transports } : {}),
  });
  let bConnected!: () => void;
  const bSide = new Promise<void>((resolve) => (bConnected = resolve));
  const server = await serve(url, options("b"), (link) => {
    connectNode(b, link);
    bConnected();
  });
  const sentByA: Pair["sentByA"] = [];
  const toB = connectNode(a, spy(await dial(server.url, options("a")), sentByA));
  await bSide;
  return {
    a,
    b,
    toB,
    sentByA,
    async close() {
      toB.close();
      await server.close();
      await toB.closed;
      await a.shutdown();
      await b.shutdown();
    },
  };
}

type Store = { t: "put"; key: string; data: Uint8Array; replyTo: ActorRef<string> } | {
  t: "get";
  key: string;
  replyTo: ActorRef<{ data: Uint8Array }>;
};

/** Spawns on b a store that keeps payloads and echoes them back. */
function spawnStore(b: ActorSystem): ActorRef<Store> {
  return b.spawn<Store>((ctx) => {
    const kept = new Map<string, Uint8Array>();
    return (m) => {
      if (m.t === "put") {
        kept.set(m.key, m.data);
        ctx.tell(m.replyTo, `stored ${m.data.length} bytes`);
      } else {
        ctx.tell(m.replyTo, { data: kept.get(m.key) ?? new Uint8Array() });
      }
    };
  }, { name: "store" });
}

async function exerciseStore(p: Pair): Promise<void> {
  const store = spawnStore(p.b);
  const block = new Uint8Array(64 * 1024).map((_, i) => i * 7);
  const stored = await p.a.ask<Store, string>(
    store,
    (replyTo) => ({ t: "put", key: "k", data: block, replyTo }),
    2000,
  );
  assert.equal(stored, `stored ${block.length} bytes`);
  const put = p.sentByA.find((s) => s.header.t === "actor" && s.header.p === "store");
  assert.ok(put !== undefined);
  assert.equal((put.header.m as Record<string, unknown>).data, undefined, "data left msgpack");
  assert.equal(put.payload, block, "data travelled as the frame payload, uncopied");
  const got = await p.a.ask<Store, { data: Uint8Array }>(
    store,
    (replyTo) => ({ t: "get", key: "k", replyTo }),
    2000,
  );
  assert.ok(got.data instanceof Uint8Array);
  assert.deepEqual(got.data, block);
}

Deno.test("memory transport: remote ask with block data as payload, reply to the asker", async () => {
  const network = new MemoryNetwork();
  const p = await pair("mem://store-1", [new MemoryTransport(network)]);
  try {
    await exerciseStore(p);
  } finally {
    await p.close();
  }
});

Deno.test("tcp: remote ask with block data as payload between two systems", async () => {
  const p = await pair("tcp://127.0.0.1:0");
  try {
    await exerciseStore(p);
  } finally {
    await p.close();
  }
});

Deno.test("a ref sent to another node is used there like a local one", async () => {
  const p = await pair("mem://refs", [new MemoryTransport(new MemoryNetwork())]);
  try {
    const heard: string[] = [];
    let heardAll!: () => void;
    const done = new Promise<void>((resolve) => (heardAll = resolve));
    const listener = p.a.spawn<string>(() => (m) => {
      heard.push(m);
      if (heard.length === 2) heardAll();
    }, { name: "listener" });
    type Fwd = { to: ActorRef<string>; text: string };
    const forwarder = p.b.spawn<Fwd>((ctx) => (m) => void ctx.tell(m.to, `b says ${m.text}`));
    assert.equal(p.a.tell(forwarder, { to: listener, text: "one" }), "accepted");
    assert.equal(p.a.tell(forwarder, { to: listener, text: "two" }), "accepted");
    await done;
    assert.deepEqual(heard, ["b says one", "b says two"]);
    const gone = p.a.terminated(forwarder); // the watch frame goes out before the stop frame
    assert.equal(p.a.stop(forwarder), "accepted");
    assert.equal((await gone).reason, "normal");
    assert.equal(p.b.resolve(forwarder.path), undefined);
  } finally {
    await p.close();
  }
});

Deno.test("a remote ask to a dead or overloaded actor fails at once, not at its deadline", async () => {
  const p = await pair("mem://nack", [new MemoryTransport(new MemoryNetwork())]);
  let release!: () => void;
  const hold = new Promise<void>((resolve) => (release = resolve));
  try {
    type Q = { replyTo: ActorRef<string> };
    const ghost: ActorRef<Q> = { node: "b", path: "ghost", incarnation: 1 };
    await assert.rejects(
      p.a.ask<Q, string>(ghost, (replyTo) => ({ replyTo }), 10_000),
      DeadActorError,
    );
    const busy = p.b.spawn<Q>(() => () => hold, { name: "busy", capacity: 1 });
    const asks = [1, 2, 3].map(() =>
      p.a.ask<Q, string>(busy, (replyTo) => ({ replyTo }), 10_000).catch((e) => e)
    );
    const third = await asks[2];
    assert.ok(third instanceof OverloadedError, String(third));
    assert.ok(p.b.stats.overloaded >= 1);
    release();
    p.b.stop(busy);
  } finally {
    release();
    await p.close();
  }
});

Deno.test("watching a remote actor: its stop comes as a down; a lost link as noconnection", async () => {
  const p = await pair("mem://watch", [new MemoryTransport(new MemoryNetwork())]);
  try {
    const short = p.b.spawn<string>((ctx) => () => ctx.stop(), { name: "short" });
    const long = p.b.spawn<unknown>(() => () => {}, { name: "long" });
    const downs: Down[] = [];
    let wake!: () => void;
    const arrived = () => new Promise<void>((resolve) => (wake = resolve));
    let next = arrived();
    const record = (d: Down) => (downs.push(d), wake());
    p.a.watch(short, record);
    p.a.watch(long, record);
    // A round trip makes sure both watches reached b before short stops.
    type Q = { replyTo: ActorRef<string> };
    const echo = p.b.spawn<Q>((ctx) => (m) => void ctx.tell(m.replyTo, "pong"));
    await p.a.ask<Q, string>(echo, (replyTo) => ({ replyTo }), 2000);
    p.a.tell(short, "stop please");
    await next;
    assert.deepEqual(downs.map((d) => [d.ref.path, d.reason]), [["short", "normal"]]);
    next = arrived();
    const pending = p.a.ask<Q, string>(long, (replyTo) => ({ replyTo }), 60_000);
    p.toB.close("test cuts the link");
    await next;
    assert.deepEqual(downs.map((d) => [d.ref.path, d.reason]), [
      ["short", "normal"],
      ["long", "noconnection"],
    ]);
    await assert.rejects(pending, NoConnectionError);
    assert.equal(p.a.tell(long, "x"), "unreachable");
    await assert.rejects(
      p.a.ask<Q, string>(echo, (replyTo) => ({ replyTo }), 100),
      NoConnectionError,
    );
  } finally {
    await p.close();
  }
});
