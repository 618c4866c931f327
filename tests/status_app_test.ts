/**
 * The status app through `app.request()`: every route, the token check (401 and nothing changed),
 * bad bodies (400 with zod issues), unknown nodes and actions (404), refusals (409), a process
 * without control (501), and /metrics checked by promtool, Prometheus' own parser and linter.
 */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { statusApp, type StatusSource } from "../status/app.ts";
import { statusFixture } from "./support/status_fixture.ts";
import { CountingBlockDevice } from "../status/io.ts";
import type { StatusJson, TreeJson } from "../status/tree.ts";
import { skipWithout } from "./support/nbd_harness.ts";
import { DST_VERSION } from "../status/process.ts";

const TOKEN = "0123456789abcdef-test-token";
const auth = { Authorization: `Bearer ${TOKEN}` };

function setup(extra: Partial<StatusSource> = {}) {
  const fixture = statusFixture();
  const device = new CountingBlockDevice(new MemoryBlockDevice({ size: 1024 * 1024 }));
  const app = statusApp({
    name: "m",
    tree: fixture.tree,
    exports: ["nbd://127.0.0.1:10809/dst"],
    io: device.stats,
    control: fixture.control,
    token: TOKEN,
    ...extra,
  });
  return { app, device, ...fixture };
}

async function json(response: Response): Promise<Record<string, unknown>> {
  assert.match(response.headers.get("content-type") ?? "", /application\/json/);
  return await response.json();
}

Deno.test("status app: GET / serves the dashboard page with its polling script", async () => {
  const { app } = setup({ name: "m<&>" });
  const response = await app.request("/");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /text\/html/);
  const html = await response.text();
  assert.match(html, /<title>dst — m&#60;&#38;&#62;<\/title>/, "the title is escaped");
  assert.match(html, /fetch\("api\/tree"/);
  assert.match(html, /setInterval\(refresh, 1000\)/);
});

Deno.test("status app: GET /api/tree has the tree, facts, counters and exports", async () => {
  const { app, device } = setup();
  await device.write(0, new Uint8Array(8192), false);
  await device.read(0, 4096);
  await assert.rejects(device.read(1024 * 1024, 4096));
  const status = await json(await app.request("/api/tree")) as unknown as StatusJson;
  assert.equal(status.name, "m");
  assert.equal(status.control, true);
  assert.deepEqual(status.exports, ["nbd://127.0.0.1:10809/dst"]);
  assert.ok(Math.abs(status.time - Date.now()) < 5000);
  assert.equal(status.io?.ops.write.requests, 1);
  assert.equal(status.io?.ops.write.bytes, 8192);
  assert.equal(status.io?.ops.read.requests, 2);
  assert.equal(status.io?.ops.read.errors, 1);
  assert.equal(status.io?.ops.read.bytes, 4096);
  assert.equal(status.io?.inFlight, 0);
  const root = status.tree;
  assert.deepEqual(
    [root.name, root.kind, root.state, root.children.map((c) => [c.name, c.kind, c.state])],
    ["m", "mirror", "down", [["a", "remote", "rebuilding"], ["b", "file", "suspended"]]],
  );
  assert.equal(root.facts.legs?.[1]?.errors, 1);
  const a = root.children[0]!;
  assert.equal(a.address, "unix:///tmp/a.sock");
  assert.deepEqual(a.facts.generations, { current: "aa11", bitmap: "bb22", history: "cc33,dd44" });
  assert.equal(a.facts.checksum, "xxh64");
  assert.equal(a.facts.checksumErrors, 1);
  assert.equal(a.facts.resync?.totalBytes, 64 * 1024 * 1024);
  assert.equal(a.facts.resync?.progress, 0.25);
  assert.equal(a.facts.resync?.etaSeconds, 6);
  assert.equal((a.detail?.resync as { bytesCopied: number }).bytesCopied, 12 * 1024 * 1024);
});

Deno.test("status app: GET /api/nodes/:node answers one node, 404 for an unknown one", async () => {
  const { app } = setup();
  const b = await json(await app.request("/api/nodes/b")) as unknown as TreeJson;
  assert.equal(b.state, "suspended");
  assert.equal(b.facts.outOfSyncBytes, 4096);
  const missing = await app.request("/api/nodes/zz");
  assert.equal(missing.status, 404);
  assert.match(String((await json(missing)).error), /no node named "zz"/);
  const page = await app.request("/no/such/page");
  assert.equal(page.status, 404);
  assert.match(String((await json(page)).error), /no such page/);
});

Deno.test("status app: control without the token answers 401 and changes nothing", async () => {
  const { app, calls } = setup();
  const attempts: [string, string, Record<string, string>][] = [
    ["POST", "/api/nodes/a/suspend", {}],
    ["POST", "/api/nodes/a/suspend", { Authorization: "Bearer wrong-token-0000000000" }],
    ["POST", "/api/nodes/a/suspend", { Authorization: TOKEN }],
    ["POST", "/api/nodes/a/suspend", { Authorization: `Basic ${btoa(`x:${TOKEN}`)}` }],
    ["POST", "/api/nodes/a/suspend", { Authorization: `Bearer ${TOKEN}x` }],
    ["POST", "/api/nodes/zz/suspend", {}],
    ["POST", "/api/nodes/m/legs", {}],
    ["DELETE", "/api/nodes/m/legs/b", {}],
    ["POST", "/api/nodes/m/verify", {}],
    ["POST", "/api/anything", {}],
  ];
  for (const [method, path, headers] of attempts) {
    const response = await app.request(path, { method, headers, body: "{}" });
    assert.equal(response.status, 401, `${method} ${path} ${JSON.stringify(headers)}`);
    assert.equal(response.headers.get("www-authenticate"), 'Bearer realm="dst"');
    assert.match(String((await json(response)).error), /Bearer TOKEN/);
  }
  assert.deepEqual(calls, []);
  const tree = await json(await app.request("/api/tree")) as unknown as StatusJson;
  assert.equal(tree.tree.children[0]!.state, "rebuilding", "nothing changed");
});

Deno.test("status app: each simple action reaches the control and changes the tree", async () => {
  const { app, calls } = setup();
  for (const action of ["suspend", "resume", "clean", "dirty"]) {
    const response = await app.request(`/api/nodes/a/${action}`, { method: "POST", headers: auth });
    assert.equal(response.status, 200, action);
    assert.equal((await json(response)).ok, true);
  }
  const verify = await app.request("/api/nodes/m/verify", {
    method: "POST",
    headers: { ...auth, "Content-Type": "application/json" },
    body: "{}",
  });
  assert.deepEqual(await json(verify), { ok: true, message: "verify started" });
  assert.deepEqual(calls.map((c) => [c.action, ...c.args]), [
    ["suspend", "a"],
    ["resume", "a"],
    ["clean", "a"],
    ["dirty", "a"],
    ["verify", "m"],
  ]);
  await app.request("/api/nodes/a/suspend", { method: "POST", headers: auth });
  const a = await json(await app.request("/api/nodes/a")) as unknown as TreeJson;
  assert.equal(a.state, "suspended");
});

Deno.test("status app: adding and removing a leg", async () => {
  const { app, calls } = setup();
  const add = await app.request("/api/nodes/m/legs", {
    method: "POST",
    headers: auth,
    body: JSON.stringify({ name: "c", spec: { kind: "remote", url: "tcp://127.0.0.1:7003" } }),
  });
  assert.equal(add.status, 200);
  assert.equal((await json(add)).message, "c added to m");
  const file = await app.request("/api/nodes/m/legs", {
    method: "POST",
    headers: auth,
    body: JSON.stringify({ name: "d", spec: { kind: "file", path: "/x/d.img", size: "64M" } }),
  });
  assert.equal(file.status, 200);
  const remove = await app.request("/api/nodes/m/legs/b", { method: "DELETE", headers: auth });
  assert.equal(remove.status, 200);
  assert.deepEqual(calls.map((c) => [c.action, ...c.args]), [
    ["addLeg", "m", "c", { kind: "remote", url: "tcp://127.0.0.1:7003" }],
    ["addLeg", "m", "d", { kind: "file", path: "/x/d.img", size: "64M" }],
    ["removeLeg", "m", "b"],
  ]);
});

Deno.test("status app: a bad request answers 400 with the zod issues and changes nothing", async () => {
  const { app, calls } = setup();
  const bad: [string, string, string, RegExp][] = [
    ["POST", "/api/nodes/a/suspend", '{"force": true}', /force/],
    ["POST", "/api/nodes/a/suspend", "[1, 2]", /object/i],
    ["POST", "/api/nodes/a/suspend", "{not json", /not JSON/],
    ["POST", "/api/nodes/m/legs", "{}", /name/],
    ["POST", "/api/nodes/m/legs", '{"name": "c", "spec": {"kind": "tape"}}', /kind/],
    [
      "POST",
      "/api/nodes/m/legs",
      '{"name": "c", "spec": {"kind": "remote", "url": "http://x"}}',
      /tcp:\/\//,
    ],
    [
      "POST",
      "/api/nodes/m/legs",
      '{"name": "../etc", "spec": {"kind": "memory", "size": 1}}',
      /name/,
    ],
    ["DELETE", "/api/nodes/m/legs/b", '{"now": 1}', /now/],
  ];
  for (const [method, path, body, why] of bad) {
    const response = await app.request(path, { method, headers: auth, body });
    assert.equal(response.status, 400, `${method} ${path} ${body}`);
    const answer = await json(response);
    assert.match(String(answer.error), why, `${path} ${body}: ${answer.error}`);
    if (!body.startsWith("{not")) assert.ok(Array.isArray(answer.issues), "zod issues included");
  }
  assert.deepEqual(calls, []);
});

Deno.test("status app: unknown nodes and actions answer 404, refusals 409", async () => {
  const { app, calls } = setup();
  for (const path of ["/api/nodes/zz/suspend", "/api/nodes/zz/legs", "/api/nodes/m/explode"]) {
    const response = await app.request(path, { method: "POST", headers: auth });
    assert.equal(response.status, 404, path);
    await response.body?.cancel();
  }
  const removeUnknown = await app.request("/api/nodes/m/legs/zz", {
    method: "DELETE",
    headers: auth,
  });
  assert.equal(removeUnknown.status, 404);
  await removeUnknown.body?.cancel();
  assert.deepEqual(calls, []);
  const refused = await app.request("/api/nodes/b/suspend", { method: "POST", headers: auth });
  assert.equal(refused.status, 409);
  assert.deepEqual(await json(refused), { error: "b is already suspended", code: "impossible" });
  const notMirror = await app.request("/api/nodes/a/verify", { method: "POST", headers: auth });
  assert.equal(notMirror.status, 409);
  await notMirror.body?.cancel();
});

Deno.test("status app: a process without control answers 501 behind the token", async () => {
  const fixture = statusFixture();
  const app = statusApp({ name: "n", tree: fixture.tree, exports: [] });
  const response = await app.request("/api/nodes/a/suspend", { method: "POST" });
  assert.equal(response.status, 401, "no token configured: no control for anyone");
  await response.body?.cancel();
  const tree = await json(await app.request("/api/tree")) as unknown as StatusJson;
  assert.equal(tree.control, false);
  assert.equal(tree.io, undefined);
  const withToken = statusApp({ name: "n", tree: fixture.tree, exports: [], token: TOKEN });
  const refused = await withToken.request("/api/nodes/a/suspend", {
    method: "POST",
    headers: auth,
  });
  assert.equal(refused.status, 501);
  assert.match(String((await json(refused)).error), /no control actions/);
  assert.throws(
    () => statusApp({ name: "n", tree: fixture.tree, exports: [], control: fixture.control }),
    /need a bearer token/,
  );
});

/** Runs promtool's parser and linter on `text`: exit code and what it said. */
async function promtool(text: string): Promise<{ code: number; output: string }> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
}

Deno.test({
  name: "status app: /metrics is Prometheus text that promtool parses and lints clean",
  ignore: skipWithout("promtool"),
  fn: async () => {
    const { app, device } = setup({ name: 'we"ird\\name' });
    await device.write(0, new Uint8Array(4096), true);
    await device.read(0, 4096);
    const response = await app.request("/metrics");
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    const checked = await promtool(text);
    assert.equal(checked.code, 0, checked.output);
    assert.equal(checked.output.trim(), "", "no lint findings");
    // The parser is not lenient: a broken line makes it fail (so the check above means something).
    const broken = await promtool(`${text}dst_io_in_flight{storage="x" 1\n`);
    assert.notEqual(broken.code, 0);

    const has = (line: string) => assert.ok(text.split("\n").includes(line), `missing: ${line}`);
    const s = 'storage="we\\"ird\\\\name"';
    has(`dst_node_state{${s},node="a",kind="remote",state="rebuilding"} 1`);
    has(`dst_node_state{${s},node="a",kind="remote",state="in-sync"} 0`);
    has(`dst_node_state{${s},node="b",kind="file",state="suspended"} 1`);
    has(`dst_out_of_sync_bytes{${s},node="a"} 50331648`);
    has(`dst_resync_bytes_per_second{${s},node="a"} 8388608`);
    has(`dst_resync_eta_seconds{${s},node="a"} 6`);
    has(`dst_checksum_errors_total{${s},node="a",algorithm="xxh64"} 1`);
    has(`dst_remote_reconnects_total{${s},node="a"} 2`);
    has(`dst_leg_requests_total{${s},mirror="m",leg="a",op="write"} 20`);
    has(`dst_node_events_total{${s},node="a",event="bitmapBitsSet"} 7`);
    has(`dst_io_requests_total{${s},op="write"} 1`);
    has(`dst_io_bytes_total{${s},op="read"} 4096`);
    has(`dst_io_latency_seconds_count{${s},op="read"} 1`);
    has(`dst_io_latency_seconds_bucket{${s},op="read",le="+Inf"} 1`);
    has(`dst_io_in_flight{${s}} 0`);
    has("# TYPE dst_io_latency_seconds histogram");
    // What this build is, and the process metrics every exporter has.
    has(`dst_build_info{version="${DST_VERSION}",deno="${Deno.version.deno}"} 1`);
    for (
      const name of [
        "process_start_time_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
      ]
    ) {
      assert.match(text, new RegExp(`^${name} \\d`, "m"), name);
    }
    // Resync progress like node_md_blocks_synced: bytes done of the bytes to do, per leg.
    has(`dst_resync_synced_bytes{${s},node="a"} 16777216`);
    has(`dst_resync_total_bytes{${s},node="a"} 67108864`);
    // Each leg's latency as the mirror saw it.
    has("# TYPE dst_leg_latency_seconds histogram");
    has(`dst_leg_latency_seconds_count{${s},mirror="m",leg="a",op="read"} 10`);
    has(`dst_leg_latency_seconds_bucket{${s},mirror="m",leg="a",op="read",le="0.001"} 7`);
    has(`dst_leg_latency_seconds_bucket{${s},mirror="m",leg="a",op="read",le="+Inf"} 10`);
    has(`dst_leg_latency_seconds_sum{${s},mirror="m",leg="a",op="read"} 0.02`);
    // A label without a value is left out, not sent empty.
    has(`dst_node_info{${s},node="m",kind="mirror"} 1`);
    has(`dst_node_info{${s},node="b",kind="file",address="/var/lib/dst/b.img"} 1`);
    assert.ok(!text.includes('=""'), "no empty label values");
  },
});
