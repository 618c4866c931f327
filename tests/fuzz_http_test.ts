/**
 * Fuzzes the status app's HTTP edge with a fixed seed: thousands of requests with odd methods,
 * paths, tokens and bodies through `app.request()`, then a few hundred, raw garbage and an
 * endless body against a real `dst serve --status` listener. Every request without exactly the
 * right bearer token leaves the storage untouched (401 on every control route), nothing answers
 * 500, bodies are never read past their limit, and the process keeps serving an NBD client that
 * writes and reads back self-describing data.
 */
import assert from "node:assert/strict";
import { statusApp } from "../status/app.ts";
import { statusFixture } from "./support/status_fixture.ts";
import type { StatusJson } from "../status/tree.ts";
import { type DstProcess, spawnDst } from "./support/dst_process.ts";
import { caseSeed, FuzzGen } from "./support/fuzz_gen.ts";
import { endlessBody, type HttpCase, httpCase } from "./support/fuzz_http.ts";
import { Verifier } from "./support/nbd_verifier.ts";

/** Fixed, so CI runs the same cases every time; DST_FUZZ_SEED explores others by hand. */
const SEED = Number(Deno.env.get("DST_FUZZ_SEED") ?? 0x5eed0022);
const TOKEN = "fuzz-token-0123456789abcdef";
const ANSWERS = new Set([200, 400, 401, 404, 409, 413, 501]);
const CONTROL_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** The path on the server at `base` (not resolved against it: "//x" stays a path). */
function urlOf(path: string, base: string): URL {
  return new URL(new URL(base).origin + path);
}

/** The request a case describes, and how much of an endless body was pulled. */
function requestOf(c: HttpCase, base: string): { request: Request; pulled: () => number } {
  let pulled = () => 0;
  let body: BodyInit | null = c.body === "endless" ? null : c.body;
  if (c.body === "endless") {
    const endless = endlessBody();
    body = endless.stream;
    pulled = endless.pulled;
  }
  const request = new Request(urlOf(c.path, base), {
    method: c.method,
    headers: c.headers,
    body,
    ...(c.body === "endless" ? { duplex: "half" } : {}),
  } as RequestInit);
  return { request, pulled };
}

/**
 * What every answer must satisfy, whoever asked. `maxPulled` bounds how much of an endless body
 * may have left the client: exact for `app.request`, socket buffers included over TCP.
 */
async function judge(
  c: HttpCase,
  response: Response,
  pulled: number,
  base: string,
  maxPulled: number,
) {
  const what = `case ${c.index} (seed ${SEED}): ${c.method} ${c.path} auth=${
    c.headers["Authorization"] ?? "-"
  } body=${c.body === null ? "-" : c.body.slice(0, 60)}`;
  const text = await response.text();
  assert.ok(ANSWERS.has(response.status), `${what}: answered ${response.status} ${text}`);
  const pathname = urlOf(c.path, base).pathname;
  const control = CONTROL_METHODS.has(c.method) && pathname.startsWith("/api/");
  if (control && !c.authorized) assert.equal(response.status, 401, `${what}: ${text}`);
  if (pathname.startsWith("/api/") && c.method !== "HEAD") {
    assert.match(response.headers.get("content-type") ?? "", /json/, what);
    JSON.parse(text);
  }
  assert.ok(pulled <= maxPulled, `${what}: the server read ${pulled} bytes of an endless body`);
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("fuzz http: 3000 seeded requests to the status app; control only with the token", async () => {
  const fixture = statusFixture();
  const app = statusApp({
    name: "m",
    tree: fixture.tree,
    exports: ["nbd://127.0.0.1:10809/dst"],
    control: fixture.control,
    token: TOKEN,
  });
  const base = "http://localhost/";
  let authorizedCalls = 0;
  for (let i = 0; i < 3000; i++) {
    const c = httpCase(caseSeed(SEED, i), i, TOKEN);
    const before = fixture.calls.length;
    const { request, pulled } = requestOf(c, base);
    const response = await withTimeout(
      Promise.resolve(app.request(request)),
      5000,
      `case ${i}: ${c.method} ${c.path}`,
    );
    await judge(c, response, pulled(), base, 1024 * 1024);
    const acted = fixture.calls.length - before;
    if (!c.authorized) {
      assert.equal(acted, 0, `case ${i}: ${c.method} ${c.path} acted without the token`);
    }
    authorizedCalls += acted;
    if (i % 100 === 0) {
      const tree = await app.request("/api/tree");
      assert.equal(tree.status, 200);
      assert.equal(((await tree.json()) as StatusJson).name, "m");
    }
  }
  // The authorized cases did reach the control, so the checks above could have failed.
  assert.ok(authorizedCalls > 10, `only ${authorizedCalls} authorized actions happened`);
});

/** Sends raw bytes to HOST:PORT and reads until the server closes or 300 ms pass. */
async function raw(port: number, bytes: Uint8Array): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 300);
  try {
    await conn.write(bytes).catch(() => 0);
    const buffer = new Uint8Array(65536);
    while ((await conn.read(buffer).catch(() => null)) !== null) { /* drain */ }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // closed by the timer
    }
  }
}

/** Malformed HTTP: garbage, broken request lines and headers, lying lengths, bad chunking. */
function garbage(g: FuzzGen): Uint8Array {
  const enc = new TextEncoder();
  const kinds = [
    () => g.bytes(g.between(1, 2000)),
    () => enc.encode(`GET /${"a".repeat(g.pick([8000, 70000]))} HTTP/1.1\r\nHost: x\r\n\r\n`),
    () => enc.encode(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"b".repeat(100_000)}\r\n\r\n`),
    () =>
      enc.encode(`POST /api/nodes/a/suspend HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{`),
    () =>
      enc.encode(
        `POST /api/nodes/a/suspend HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n` +
          `Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
      ),
    () =>
      enc.encode(
        `POST /api/nodes/a/suspend HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n` +
          `Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST /api/nodes/b/suspend HTTP/1.1\r\n\r\n`,
      ),
    () => enc.encode(`GET / HTTP/9.9\r\n\r\n`),
    () => enc.encode(`\u00ff\u00fe / HTTP/1.1\r\n\r\n`),
    () => enc.encode(`GET /api/tree HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(g.between(2, 50))),
    () => enc.encode(`GET /api/tree HTTP/1.1\r\n${"X: y\r\n".repeat(2000)}\r\n`),
    () => enc.encode(`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`),
  ];
  return g.pick(kinds)();
}

async function startServe(dir: string): Promise<DstProcess> {
  const config = `${dir}/topology.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      storage: "m",
      nodes: {
        m: { kind: "mirror", legs: ["a", "b"] },
        a: { kind: "memory", size: "16M" },
        b: { kind: "memory", size: "16M" },
      },
      export: { listen: ["tcp://127.0.0.1:0"] },
    }),
  );
  await Deno.writeTextFile(`${dir}/token`, `${TOKEN}\n`, { mode: 0o600 });
  return await spawnDst(
    ["serve", "--config", config, "--status", "127.0.0.1:0", "--status-token-file", `${dir}/token`],
    { ready: /^(nbd|status)/, readyLines: 2 },
  );
}

Deno.test("fuzz http: a real dst serve --status survives requests, garbage and an endless body", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dst-fuzz-http-" });
  const p = await startServe(dir);
  let stopped = false;
  let verifier: Verifier | undefined;
  try {
    const url = p.lines.find((l) => l.startsWith("status "))!.slice("status ".length);
    const port = Number(new URL(url).port);
    const nbd = p.lines.find((l) => l.startsWith("nbd://"))!;
    verifier = await Verifier.connect(Number(/:(\d+)\//.exec(nbd)![1]));
    const states = async () =>
      ((await (await fetch(`${url}api/tree`)).json()) as StatusJson).tree.children.map((n) =>
        n.state
      );
    const initially = await states();

    // Requests without exactly the right token: nothing may change.
    let sent = 0;
    for (let i = 0; sent < 300; i++) {
      const c = httpCase(caseSeed(SEED ^ 0xff, i), i, TOKEN);
      if (c.authorized) continue;
      sent++;
      const { request, pulled } = requestOf(c, url);
      const response = await withTimeout(fetch(request), 5000, `${c.method} ${c.path}`);
      await judge(c, response, pulled(), url, 16 * 1024 * 1024);
      if (sent % 50 === 0) await verifier.roundTrip(sent * 4096, 4096);
    }
    const g = new FuzzGen(SEED);
    for (let i = 0; i < 40; i++) {
      await raw(port, garbage(g));
      if (i % 10 === 0) await verifier.roundTrip(2 * 1024 * 1024 + i * 4096, 4096);
    }
    assert.deepEqual(await states(), initially, "a request without the token changed the tree");

    // With the token, an endless body is refused after its limit, not buffered.
    const endless = endlessBody();
    const refused = await withTimeout(
      fetch(`${url}api/nodes/b/suspend`, {
        method: "POST",
        headers: { Authorization: `Bearer ${TOKEN}` },
        body: endless.stream,
        duplex: "half",
      } as RequestInit),
      10_000,
      "endless body",
    );
    assert.equal(refused.status, 413, await refused.clone().text());
    await refused.body?.cancel();
    assert.ok(endless.pulled() <= 16 * 1024 * 1024, `the server read ${endless.pulled()} bytes`);
    assert.deepEqual(await states(), initially);

    // The control route works with the token, so "nothing changed" above meant something.
    const done = await fetch(`${url}api/nodes/b/suspend`, {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(done.status, 200, await done.clone().text());
    await done.body?.cancel();
    assert.equal((await states())[1], "suspended");
    await verifier.roundTrip(8 * 1024 * 1024, 65536);
    verifier.close();
    const { code, stderr } = await p.stop();
    stopped = true;
    assert.equal(code, 0, stderr);
  } finally {
    verifier?.close();
    if (!stopped) await p.stop("SIGKILL");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
