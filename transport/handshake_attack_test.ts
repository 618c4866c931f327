/**
 * The link handshake under a hand-driven attacker (raw TCP connections and the framing code,
 * nothing else): reflection of a node's proof to another connection, replay of an old session,
 * a peer claiming the node's own identity, and a fake responder reflecting the initiator's nonce
 * to make it prove itself. Every one must be refused, and nothing may reach the application.
 */

import assert from "node:assert/strict";
import { dial, serve, type Server } from "./dial.ts";
import { tcpTransport } from "./tcp.ts";
import { LINK_PROTOCOL_VERSION, NONCE_BYTES } from "./handshake.ts";
import { LinkRefused } from "./link.ts";
import { RawPeer } from "../tests/support/raw_peer.ts";
import type { Header, Link } from "./types.ts";
import { encodeFrame, FrameReader } from "./frame.ts";

const SECRET = "correct horse battery staple";
const VERSION = 7;
const NODE = "node-1";

async function raw(url: string): Promise<RawPeer> {
  return new RawPeer(await tcpTransport.connect(url));
}

/** Everything the server says on `peer` until it refuses, closes or goes quiet. */
async function drain(peer: RawPeer, ms = 500): Promise<Header[]> {
  const seen: Header[] = [];
  for (let i = 0; i < 8; i++) {
    const header = await peer.next(ms);
    if (header === null) break;
    seen.push(header);
    if (header.t === "refuse") break;
  }
  return seen;
}

function hello(node: string, nonce: Uint8Array): Header {
  return { t: "hello", link: LINK_PROTOCOL_VERSION, version: VERSION, node, nonce, auth: true };
}

/** Runs `run` against a node with a secret; exactly `legit` links may reach the application. */
async function withServer(
  run: (server: Server, linked: Link[]) => Promise<void>,
  legit = 0,
): Promise<void> {
  const linked: Link[] = [];
  const server = await serve("tcp://127.0.0.1:0", {
    hello: { version: VERSION, node: NODE, info: { size: 4096, storageId: "secret-ish" } },
    secret: SECRET,
    keepAliveMs: 0,
  }, (link) => {
    linked.push(link);
    link.receive((frame) => link.send({ t: "echo", n: frame.header.n }));
  });
  try {
    await run(server, linked);
    assert.equal(linked.length, legit, "no attacker's link reached the application");
    // The server still serves a peer that holds the secret.
    const good = await dial(server.url, {
      hello: { version: VERSION, node: "proxy", info: {} },
      secret: SECRET,
      keepAliveMs: 0,
    });
    assert.deepEqual(good.peer.info, { size: 4096, storageId: "secret-ish" });
    good.close();
    await good.closed;
  } finally {
    await server.close();
  }
}

for (const name of [NODE, "mallory"]) {
  Deno.test(`handshake: reflecting the node's proof from a second connection fails (as ${name})`, async () => {
    await withServer(async (server) => {
      const a = await raw(server.url);
      const b = await raw(server.url);
      try {
        await a.send(hello(name, crypto.getRandomValues(new Uint8Array(NONCE_BYTES))));
        const onA = await drain(a);
        const nonceA = onA.find((h) => h.t === "hello")?.nonce as Uint8Array | undefined;
        // B presents A's nonce (or any, when A got none) and the node's own name.
        await b.send(hello(NODE, nonceA ?? new Uint8Array(NONCE_BYTES)));
        const onB = await drain(b);
        for (const header of [...onA, ...onB]) {
          assert.notEqual(header.t, "auth", `the node proved itself first: ${header.t}`);
          assert.ok(!("info" in header), "nothing but the hello is said before auth");
        }
        // Replay whatever the node said on B as A's proof, then try to use the link.
        for (const header of onB) await a.send({ ...header, t: "auth" }).catch(() => {});
        await a.send({ t: "auth", info: new Uint8Array([0x80]), proof: new Uint8Array(32) })
          .catch(() => {});
        await a.send({ t: "app", n: 1 }).catch(() => {});
        const after = await drain(a);
        assert.ok(!after.some((h) => h.t === "echo" || h.t === "auth"), JSON.stringify(after));
      } finally {
        a.close();
        b.close();
      }
    });
  });
}

Deno.test("handshake: an initiator's proof from an earlier session does not open a new one", async () => {
  await withServer(async (server) => {
    // A real session, recorded frame by frame on the wire.
    const recorded: Header[] = [];
    const first = await raw(server.url);
    const send = first.send.bind(first);
    first.send = (header, payload) => {
      recorded.push(header);
      return send(header, payload);
    };
    await first.handshake({ version: VERSION, node: "proxy", secret: SECRET });
    first.close();
    assert.deepEqual(recorded.map((h) => h.t), ["hello", "auth"]);
    // The attacker replays it byte for byte; the node's new nonce makes the old proof worthless.
    const replay = await raw(server.url);
    try {
      await replay.send(recorded[0]!);
      const got = await drain(replay, 200);
      await replay.send(recorded[1]!);
      got.push(...await drain(replay));
      assert.deepEqual(got.map((h) => h.t), ["hello", "refuse"]);
      assert.match(String(got[1]!.reason), /wrong secret/);
    } finally {
      replay.close();
    }
  }, 1); // the recorded session only
});

Deno.test("handshake: a peer claiming the node's own identity is refused, secret or not", async () => {
  await withServer(async (server) => {
    await assert.rejects(
      dial(server.url, {
        hello: { version: VERSION, node: NODE, info: {} },
        secret: SECRET,
        keepAliveMs: 0,
      }),
      (error: Error) => {
        assert.ok(error instanceof LinkRefused);
        assert.match(error.message, /own identity "node-1"/);
        return true;
      },
    );
  });
});

Deno.test("handshake: a responder never proves itself to a peer that has not", async () => {
  await withServer(async (server) => {
    const peer = await raw(server.url);
    try {
      await peer.send(hello("proxy", crypto.getRandomValues(new Uint8Array(NONCE_BYTES))));
      const said = await drain(peer, 300);
      assert.deepEqual(said.map((h) => h.t), ["hello"], "a hello, then it waits for our proof");
      await peer.send({ t: "auth", info: new Uint8Array([0x80]), proof: new Uint8Array(32) });
      const then = await drain(peer);
      assert.deepEqual(then.map((h) => h.t), ["refuse"]);
      assert.match(String(then[0]!.reason), /wrong secret/);
    } finally {
      peer.close();
    }
  });
});

/** A fake responder that answers every hello with `answer(theirs)` and records what follows. */
async function fakeResponder(
  answer: (theirs: Header) => Header,
): Promise<{ url: string; heard: Header[]; close(): void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const heard: Header[] = [];
  const conns: Deno.Conn[] = [];
  void (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      const reader = new FrameReader(conn);
      try {
        const theirs = (await reader.next())!.header;
        heard.push(theirs);
        await conn.write(encodeFrame(answer(theirs)));
        for (;;) {
          const frame = await reader.next();
          if (frame === null) break;
          heard.push(frame.header);
        }
      } catch { /* the initiator hung up */ }
    }
  })();
  return {
    url: `tcp://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    heard,
    close() {
      listener.close();
      for (const conn of conns) conn.close();
    },
  };
}

for (
  const [what, answer, refusal] of [
    ["its own nonce", (h: Header) => ({ ...h, node: NODE }), /reflected this end's nonce/],
    ["its own hello", (h: Header) => ({ ...h }), /own identity "proxy"/],
  ] as const
) {
  Deno.test(`handshake: an initiator refuses a responder that reflects ${what}`, async () => {
    const fake = await fakeResponder(answer);
    try {
      await assert.rejects(
        dial(fake.url, {
          hello: { version: VERSION, node: "proxy", info: {} },
          secret: SECRET,
          keepAliveMs: 0,
        }),
        refusal,
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(fake.heard.map((h) => h.t), ["hello", "refuse"], "no proof was sent");
    } finally {
      fake.close();
    }
  });
}
