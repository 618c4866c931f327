/**
 * What a server lets peers make it hold, over real TCP sockets: a bound on links (a proven peer
 * beyond it is refused with the reason), a bound on pending handshakes (a flood of idle
 * connections loses its oldest, so a real peer still gets in), refusals logged once per burst.
 */

import assert from "node:assert/strict";
import { MemoryLogger } from "../util/log.ts";
import { dial, serve, type ServeOptions, type Server } from "./dial.ts";
import { tcpTransport } from "./tcp.ts";
import { RawPeer } from "../tests/support/raw_peer.ts";
import type { Link } from "./types.ts";

const SECRET = "s3cret";
const hello = (node: string) => ({ version: 1, node, info: {} });

async function echoServer(options: Partial<ServeOptions>, logger = new MemoryLogger()) {
  return await serve("tcp://127.0.0.1:0", {
    hello: hello("server"),
    secret: SECRET,
    keepAliveMs: 0,
    logger,
    ...options,
  }, (link) => link.receive((frame) => link.send({ t: "echo", n: frame.header.n })));
}

async function client(server: Server, node: string): Promise<Link> {
  return await dial(server.url, { hello: hello(node), secret: SECRET, keepAliveMs: 0 });
}

/** One request, one echo: the link works end to end. */
async function roundTrip(link: Link, n: number): Promise<void> {
  const got = new Promise<number>((resolve) => link.receive((f) => resolve(f.header.n as number)));
  link.send({ t: "ask", n });
  assert.equal(await got, n);
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.fail(`timed out waiting for ${what}`);
}

Deno.test("serve: a proven peer beyond maxLinks is refused with the reason; a freed slot is used again", async () => {
  const server = await echoServer({ maxLinks: 2 });
  const links: Link[] = [];
  try {
    links.push(await client(server, "p1"), await client(server, "p2"));
    await assert.rejects(client(server, "p3"), /server full: it holds 2 links, its limit/);
    links[0]!.close();
    await until(() => server.links.size === 1, "the closed link to leave");
    links.push(await client(server, "p4"));
    await roundTrip(links[2]!, 4);
  } finally {
    for (const link of links) link.close();
    await server.close();
  }
});

Deno.test("serve: idle connections beyond the pending bound lose their oldest; a real peer gets in; one log line", async () => {
  const logger = new MemoryLogger();
  const server = await echoServer({ maxPendingHandshakes: 8 }, logger);
  const idle: RawPeer[] = [];
  try {
    for (let i = 0; i < 60; i++) {
      idle.push(new RawPeer(await tcpTransport.connect(server.url)));
      assert.ok(server.pending <= 8, `pending ${server.pending} over the bound`);
    }
    await until(() => server.pending === 8, "the server to settle at its bound");
    // The oldest got told why before the stream ended.
    const first = await idle[0]!.next();
    assert.equal(first?.t, "refuse");
    assert.match(String(first?.reason), /server busy: 8 handshakes pending, its limit/);
    const link = await client(server, "real");
    await roundTrip(link, 1);
    link.close();
    const busy = logger.entries.filter((e) => /server busy/.test(String(e.fields.reason)));
    assert.equal(busy.length, 1, "one line for the burst, not one per connection");
  } finally {
    for (const peer of idle) peer.close();
    await server.close();
  }
  const summary = logger.entries.find((e) => e.message === "link refused again");
  assert.ok(summary, "the burst is summed up when it ends");
  assert.ok((summary.fields.times as number) >= 50, JSON.stringify(summary.fields));
});
