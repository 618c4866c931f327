/**
 * NBD_OPT_STARTTLS over a raw socket, byte by byte as the protocol document's TLS section says:
 * in FORCEDTLS (`require`) every option but STARTTLS and ABORT is refused with
 * NBD_REP_ERR_TLS_REQD and the export is neither listed nor served until the client upgraded;
 * after STARTTLS the usual options work over TLS, and what was haggled before is forgotten. In
 * SELECTIVETLS (`on`) plain clients keep working. Hostile clients: bytes pipelined after
 * STARTTLS, a second STARTTLS, STARTTLS with data, a client that never starts the TLS handshake,
 * one that floods a TLS connection the server does not read.
 */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { NbdServer } from "../nbd/server.ts";
import { X509Certificate } from "node:crypto";
import { clientRefusal, NbdTls, TlsConfigError, type TlsMode } from "../nbd/tls.ts";
import { acceptTls, MAX_AHEAD } from "../nbd/tls_stream.ts";
import { makeTestCerts } from "./support/certs.ts";
import { concat, goData, metaData, RawNbdClient, u32 } from "./support/nbd_raw_client.ts";

const OPT_EXPORT_NAME = 1;
const OPT_ABORT = 2;
const OPT_LIST = 3;
const OPT_STARTTLS = 5;
const OPT_INFO = 6;
const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const OPT_SET_META_CONTEXT = 10;
const REP_ACK = 1;
const REP_SERVER = 2;
const REP_ERR_UNSUP = 0x80000001;
const REP_ERR_INVALID = 0x80000003;
const REP_ERR_TLS_REQD = 0x80000005;

const certs = await makeTestCerts({ client: true });
const other = await makeTestCerts({ client: true });
const otherCa = other.caCert;

async function tlsServer(
  mode: TlsMode | undefined,
  limits: { handshakeTimeoutMs?: number; stallTimeoutMs?: number; maxInFlightBytes?: number } = {},
) {
  const device = new MemoryBlockDevice({ size: 64 * 1024 * 1024 });
  await device.write(0, new TextEncoder().encode("secret data"), false);
  const server = new NbdServer({
    exports: [{ name: "dst", device, description: "tls test export" }],
    ...(mode === undefined ? {} : { tls: new NbdTls({ mode, cert: certs.cert, key: certs.key }) }),
    ...limits,
  });
  const bound = await server.listen("tcp://127.0.0.1:0");
  const port = bound.address.transport === "tcp" ? bound.address.port : 0;
  return {
    server,
    port,
    async close() {
      await server.close();
      await device.close();
    },
  };
}

/** Sends `option` and returns the type of its final reply (and the replies before it). */
async function ask(client: RawNbdClient, option: number, data?: Uint8Array) {
  await client.option(option, data);
  const replies = await client.optionReplies();
  return { type: replies.at(-1)!.type, replies };
}

Deno.test("nbd tls require: every option before STARTTLS is refused TLS_REQD, nothing listed", async () => {
  const s = await tlsServer("require");
  const client = await RawNbdClient.connect(s.port);
  try {
    await client.greet();
    for (
      const [option, data] of [
        [OPT_LIST, undefined],
        [OPT_INFO, goData("dst")],
        [OPT_GO, goData("dst")],
        [OPT_STRUCTURED_REPLY, undefined],
        [OPT_SET_META_CONTEXT, metaData("dst", ["base:allocation"])],
        [99, new Uint8Array(8)],
      ] as const
    ) {
      const { type, replies } = await ask(client, option, data);
      assert.equal(type, REP_ERR_TLS_REQD, `option ${option}`);
      assert.equal(replies.length, 1, `option ${option}: no export listed or described`);
      assert.match(new TextDecoder().decode(replies[0]!.data), /STARTTLS/);
    }
    // The plain connection is still usable for STARTTLS, and TLS then serves everything.
    assert.equal((await ask(client, OPT_STARTTLS)).type, REP_ACK);
    await client.startTls(certs.caCert);
    const list = await ask(client, OPT_LIST);
    assert.equal(list.type, REP_ACK);
    assert.deepEqual(list.replies.filter((r) => r.type === REP_SERVER).length, 1);
    assert.equal((await ask(client, OPT_STARTTLS)).type, REP_ERR_INVALID, "TLS twice");
    const go = await ask(client, OPT_GO, goData("dst"));
    assert.equal(go.type, REP_ACK);
    await client.request(0, 7, 0, 11);
    const reply = await client.reply(11);
    assert.equal(reply.error, 0);
    assert.equal(new TextDecoder().decode(reply.payload), "secret data");
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("nbd tls require: NBD_OPT_EXPORT_NAME in plain text ends the session, ABORT is acked", async () => {
  const s = await tlsServer("require");
  try {
    const plain = await RawNbdClient.connect(s.port);
    await plain.greet();
    await plain.option(OPT_EXPORT_NAME, new TextEncoder().encode("dst"));
    // The export's size and flags must never be sent: the server closes instead.
    assert.equal(await plain.read(10), null);
    plain.close();

    const aborting = await RawNbdClient.connect(s.port);
    await aborting.greet();
    assert.equal((await ask(aborting, OPT_ABORT)).type, REP_ACK);
    assert.ok(await aborting.closedWithin(5000));
    aborting.close();

    // A client without fixed newstyle cannot do TLS: it is closed at once.
    const old = await RawNbdClient.connect(s.port);
    await old.greet(0);
    assert.ok(await old.closedWithin(5000));
    old.close();
  } finally {
    await s.close();
  }
});

Deno.test("nbd tls on: plain clients work, and what was haggled before STARTTLS is forgotten", async () => {
  const s = await tlsServer("on");
  try {
    const plain = await RawNbdClient.connect(s.port);
    await plain.greet();
    assert.equal((await ask(plain, OPT_LIST)).type, REP_ACK);
    assert.equal((await ask(plain, OPT_GO, goData("dst"))).type, REP_ACK);
    await plain.request(0, 1, 0, 6);
    assert.equal(new TextDecoder().decode((await plain.reply(6)).payload), "secret");
    plain.close();

    const upgrading = await RawNbdClient.connect(s.port);
    await upgrading.greet();
    assert.equal((await ask(upgrading, OPT_STRUCTURED_REPLY)).type, REP_ACK);
    assert.equal((await ask(upgrading, OPT_STARTTLS, new Uint8Array(1))).type, REP_ERR_INVALID);
    assert.equal((await ask(upgrading, OPT_STARTTLS)).type, REP_ACK);
    await upgrading.startTls(certs.caCert);
    // Structured replies were agreed in plain text; after TLS they are off again, so the
    // metadata context (which needs them) is refused until the client asks over TLS.
    const meta = await ask(upgrading, OPT_SET_META_CONTEXT, metaData("dst", ["base:allocation"]));
    assert.equal(meta.type, REP_ERR_INVALID);
    assert.equal((await ask(upgrading, OPT_GO, goData("dst"))).type, REP_ACK);
    await upgrading.request(0, 2, 0, 6);
    const reply = await upgrading.reply(6);
    assert.ok(reply.simple, "simple replies: structured ones were not agreed over TLS");
    assert.equal(new TextDecoder().decode(reply.payload), "secret");
    upgrading.close();
  } finally {
    await s.close();
  }
});

Deno.test("nbd tls: without TLS configured STARTTLS is answered UNSUP and haggling goes on", async () => {
  const s = await tlsServer(undefined);
  const client = await RawNbdClient.connect(s.port);
  try {
    await client.greet();
    assert.equal((await ask(client, OPT_STARTTLS)).type, REP_ERR_UNSUP);
    assert.equal((await ask(client, OPT_LIST)).type, REP_ACK);
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("nbd tls: bytes pipelined after STARTTLS before its reply end the connection", async () => {
  const s = await tlsServer("require");
  const client = await RawNbdClient.connect(s.port);
  try {
    await client.greet();
    // STARTTLS and, in the same write, an option a man in the middle would like to slip in.
    const startTls = concat(u32(0x49484156), u32(0x454f5054), u32(OPT_STARTTLS), u32(0));
    const injected = concat(u32(0x49484156), u32(0x454f5054), u32(OPT_LIST), u32(0));
    await client.send(concat(startTls, injected));
    const reply = await client.optionReply();
    assert.equal(reply.type, REP_ACK);
    assert.ok(await client.closedWithin(5000), "the connection is dropped, not upgraded");
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("nbd tls: a server certificate the client's CA did not sign fails the handshake", async () => {
  const s = await tlsServer("require");
  const client = await RawNbdClient.connect(s.port);
  try {
    await client.greet();
    assert.equal((await ask(client, OPT_STARTTLS)).type, REP_ACK);
    await assert.rejects(client.startTls(otherCa), /certificate|UnknownIssuer/i);
    client.close();
    // The server drops the connection and gives its handshake slot back.
    await until(() => s.server.stats.connections === 0);
    assert.equal(s.server.stats.handshaking, 0);
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("nbd tls: a TLS client that takes none of its replies holds its budget and is dropped", async () => {
  const MiB = 1024 * 1024;
  const s = await tlsServer("require", { stallTimeoutMs: 600, maxInFlightBytes: 8 * MiB });
  const client = await RawNbdClient.connect(s.port);
  try {
    await client.greet();
    assert.equal((await ask(client, OPT_STARTTLS)).type, REP_ACK);
    await client.startTls(certs.caCert);
    assert.equal((await ask(client, OPT_GO, goData("dst"))).type, REP_ACK);
    // 64 reads of 1 MiB, and not one reply taken: replies stop at the budget, and stay
    // counted until TLS has really written them, which it cannot.
    for (let i = 0; i < 64; i++) await client.request(0, i, i * MiB, MiB);
    await until(() => s.server.stats.inFlightBytes >= 8 * MiB);
    assert.ok(s.server.stats.inFlightBytes <= 9 * MiB, `${s.server.stats.inFlightBytes} held`);
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(s.server.stats.inFlightBytes >= 8 * MiB, "replies queued in TLS are still held");
    // The stall timeout drops it, and what it held comes back.
    await until(() => s.server.stats.connections === 0);
    assert.equal(s.server.stats.connections, 0, "the stalled TLS client was dropped");
    await until(() => s.server.stats.inFlightBytes === 0);
    assert.equal(s.server.stats.inFlightBytes, 0);
  } finally {
    client.close();
    await s.close();
  }
});

/** Waits (bounded) until `done` holds. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 20));
}

Deno.test("nbd tls: a client that never starts the TLS handshake is closed at the timeout", async () => {
  const s = await tlsServer("require", { handshakeTimeoutMs: 300 });
  const client = await RawNbdClient.connect(s.port);
  try {
    await client.greet();
    assert.equal((await ask(client, OPT_STARTTLS)).type, REP_ACK);
    assert.equal(s.server.stats.handshaking, 1);
    assert.ok(await client.closedWithin(10_000), "closed by the handshake timeout");
    // The handshake slot is given back.
    await until(() => s.server.stats.handshaking === 0);
    assert.equal(s.server.stats.handshaking, 0);
    assert.equal(s.server.stats.connections, 0);
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("nbd tls stream: a client flooding a connection nobody reads is not read past the bound", async () => {
  const tls = new NbdTls({ mode: "on", cert: certs.cert, key: certs.key });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const accepted = listener.accept();
  const dialled = await Deno.connect({ hostname: "127.0.0.1", port });
  const raw = await accepted;
  const server = acceptTls(raw, tls, () => {});
  const client = await Deno.startTls(dialled, { caCerts: [certs.caCert], hostname: "localhost" });
  const stream = await server;
  const chunk = new Uint8Array(1024 * 1024);
  let flooding = true;
  const flood = (async () => {
    try {
      for (let i = 0; i < 64 && flooding; i++) await client.write(chunk);
    } catch {
      // the server closed
    }
  })();
  try {
    // Let the flood run until the server stops reading (bounded wait, no speed assumed).
    let last = -1;
    for (let i = 0; i < 100; i++) {
      await new Promise((r) => setTimeout(r, 50));
      if (stream.rawBytesRead === last && last > 0) break;
      last = stream.rawBytesRead;
    }
    // What was read is what waits for the reader, plus at most one raw read and TLS framing.
    assert.ok(
      stream.rawBytesRead <= MAX_AHEAD + 2 * 64 * 1024 + 16 * 1024,
      `read ${stream.rawBytesRead} bytes from a client nobody reads`,
    );
    assert.ok(stream.buffered <= MAX_AHEAD + 64 * 1024, `buffered ${stream.buffered}`);
    // Reading again lets the data flow, in order.
    const into = new Uint8Array(4 * 1024 * 1024);
    let got = 0;
    while (got < into.length) {
      const n = await stream.read(into.subarray(got));
      if (n === null) break;
      got += n;
    }
    assert.equal(got, into.length);
  } finally {
    flooding = false;
    stream.close();
    client.close();
    listener.close();
    await flood;
  }
});

Deno.test("nbd tls: client certificates must chain to the configured CA", () => {
  const ca = new X509Certificate(certs.caCert);
  const mine = new X509Certificate(certs.clientCert!);
  const theirs = new X509Certificate(other.clientCert!);
  const theirCa = new X509Certificate(other.caCert);
  assert.equal(clientRefusal(mine, [], [ca]), null);
  assert.match(clientRefusal(theirs, [], [ca])!, /not signed by a CA in --tls-ca/);
  // Sending the other CA along as an "intermediate" does not help: it is not signed by ours.
  assert.match(clientRefusal(theirs, [theirCa], [ca])!, /not signed by a CA/);
  assert.match(clientRefusal(undefined, [], [ca])!, /sent no certificate/);
  const later = mine.validToDate.getTime() + 1000;
  assert.match(clientRefusal(mine, [], [ca], "--tls-ca", later)!, /valid only from/);
});

Deno.test("nbd tls: material is checked at load, each mistake naming its file", () => {
  const load = (parts: Partial<{ cert: string; key: string; ca: string }>) =>
    new NbdTls({
      mode: "require",
      cert: certs.cert,
      key: certs.key,
      ...parts,
      from: { cert: "cert.pem", key: "key.pem", ca: "ca.pem" },
    });
  assert.equal(load({}).verifyClient, false);
  assert.equal(load({ ca: certs.caCert }).verifyClient, true);
  assert.throws(
    () => load({ key: other.key }),
    /key\.pem is not the key of the certificate in cert\.pem/,
  );
  assert.throws(() => load({ cert: "junk" }), /cert\.pem: no PEM certificate/);
  assert.throws(() => load({ key: "junk" }), /key\.pem: not a PEM private key/);
  assert.throws(() => load({ ca: "junk" }), /ca\.pem: no PEM certificate/);
  assert.throws(
    () => new NbdTls({ mode: "on", cert: certs.cert, key: certs.key }, new Date(Date.now() + 9e9)),
    TlsConfigError,
  );
  assert.throws(
    () => new NbdTls({ mode: "maybe" as TlsMode, cert: certs.cert, key: certs.key }),
    /use "on" or "require"/,
  );
});
