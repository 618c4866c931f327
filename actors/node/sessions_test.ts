/**
 * Link sessions (sessions.ts): a write the proxy gave up on while the node's disk still held it
 * must not land after a write the proxy sent since. Over real TCP, with a real node server and
 * proxy; only the disk's hang is staged (a gate on a memory device).
 */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../block/memory.ts";
import { tcpTransport } from "../../transport/tcp.ts";
import { RemoteNode } from "./proxy.ts";
import { serveNode } from "./server.ts";
import { LinkSessions, type SessionLink } from "./sessions.ts";

const SIZE = 64 * 1024;
const BLOCK = 4096;

/** A memory device whose next write hangs until `release` (a disk that stalls, then finishes). */
class StallingDevice extends MemoryBlockDevice {
  #armed = true;
  #gate = Promise.withResolvers<void>();
  /** Resolves once the stalled write reached the device. */
  readonly landed = Promise.withResolvers<void>();

  override async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    if (!this.#armed) return super.write(offset, data, fua);
    this.#armed = false;
    const copy = data.slice();
    await this.#gate.promise;
    await super.write(offset, copy, fua);
    this.landed.resolve();
  }

  release(): void {
    this.#gate.resolve();
  }
}

function shut(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed already */ }
}

/**
 * A TCP forwarder that can go silent: `blackhole` stops carrying bytes on the connections open
 * now without closing them (a partition: neither end hears of it); later ones are carried.
 */
function forwarder(target: { hostname: string; port: number }) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open: { cut: boolean; conns: Deno.Conn[] }[] = [];
  const pipe = async (from: Deno.Conn, to: Deno.Conn, flow: { cut: boolean }) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null || flow.cut) break;
        let at = 0;
        while (at < n) at += await to.write(buf.subarray(at, n));
      }
    } catch { /* the other side closed */ }
    if (!flow.cut) shut(to);
  };
  const accepting = (async () => {
    for await (const client of listener) {
      const server = await Deno.connect({ hostname: target.hostname, port: target.port });
      const flow = { cut: false, conns: [client, server] };
      open.push(flow);
      void pipe(client, server, flow);
      void pipe(server, client, flow);
    }
  })().catch(() => {});
  return {
    url: `tcp://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    blackhole: () => {
      for (const f of open) f.cut = true;
    },
    close: async () => {
      listener.close();
      await accepting;
      for (const f of open) f.conns.forEach(shut);
    },
  };
}

Deno.test("sessions: a write sent on a link the proxy gave up on never lands after one sent on its next link (tcp)", async () => {
  const disk = new StallingDevice({ size: SIZE });
  // One request at a time per link: the old write waits on the node behind the stalled one.
  const server = await serveNode("tcp://127.0.0.1:0", disk, {
    node: "n",
    transports: [tcpTransport],
    maxInFlight: 1,
  });
  const port = Number(new URL(server.url).port);
  const net = forwarder({ hostname: "127.0.0.1", port });
  const remote = await RemoteNode.connect(net.url, {
    node: "p",
    transports: [tcpTransport],
    ioTimeoutMs: 0,
    keepAliveMs: 50,
    deadAfterMs: 300,
    backoff: { initialMs: 5, maxMs: 20 },
  });
  try {
    const stalled = remote.write(5 * BLOCK, new Uint8Array(BLOCK).fill(1), false);
    const old = remote.write(0, new Uint8Array(BLOCK).fill(0xaa), false);
    await new Promise((r) => setTimeout(r, 100)); // both reached the node
    net.blackhole();
    await assert.rejects(old, /link to node|is down|lost/);
    await assert.rejects(stalled);
    for (let i = 0; i < 200 && remote.state !== "connected"; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(remote.state, "connected", "the proxy did not reconnect");
    const newer = new Uint8Array(BLOCK).fill(0xbb);
    const second = remote.write(0, newer, false);
    await new Promise((r) => setTimeout(r, 100));
    disk.release();
    await disk.landed.promise;
    await second;
    await new Promise((r) => setTimeout(r, 100)); // what the old link still held may run now
    const back = await remote.read(0, BLOCK);
    assert.equal(
      back[0],
      0xbb,
      `block 0 holds ${back[0]?.toString(16)}: the old write landed last`,
    );
  } finally {
    disk.release();
    await remote.close();
    await server.close();
    await net.close();
  }
});

/** A session link whose requests end when told. */
function fakeLink(): SessionLink & { closed: string | undefined; end: () => void } {
  const running = Promise.withResolvers<void>();
  const link = {
    closed: undefined as string | undefined,
    close: (reason: string) => {
      link.closed = reason;
    },
    idle: () => running.promise,
    end: () => running.resolve(),
  };
  return link;
}

Deno.test("sessions: a newer link closes the older ones and waits for them; an older one is refused", async () => {
  const sessions = new LinkSessions();
  const id = "0".repeat(32);
  const first = fakeLink();
  await sessions.open(id, 1, first);
  const second = fakeLink();
  const ready = sessions.open(id, 2, second);
  assert.ok(ready !== undefined);
  assert.match(first.closed ?? "", /replaced by link 2/);
  let served = false;
  void ready.then(() => (served = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(served, false, "served while the older link still ran a request");
  first.end();
  await ready;
  assert.equal(sessions.open(id, 2, fakeLink()), undefined, "a replayed link number was taken");
  assert.equal(sessions.open(id, 1, fakeLink()), undefined, "an older link number was taken");
  // Another proxy is not held back by this one.
  await sessions.open("1".repeat(32), 1, fakeLink());
});
