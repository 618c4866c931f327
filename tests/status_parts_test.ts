/**
 * The status endpoint's parts on their own: the counting device wrapper (requests, bytes, errors,
 * in-flight, latency buckets), the control token (file made once with mode 0600, reused, env,
 * constant-time check), the terminal rendering with progress bars, and `dst status` URL forms.
 */
import { dashboardHtml } from "../status/dashboard.ts";
import assert from "node:assert/strict";
import { BlockError } from "../actors/block/contract.ts";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { treeUrl } from "../cli/status.ts";
import { statusSnapshot } from "../status/app.ts";
import { statusFixture } from "./support/status_fixture.ts";
import { CountingBlockDevice } from "../status/io.ts";
import { LATENCY_BUCKETS } from "../util/latency_histogram.ts";
import { progressBar, statusText } from "../status/text.ts";
import { bearerMatches, loadStatusToken } from "../status/token.ts";

Deno.test("status io: the counting wrapper counts each op, its bytes, errors and latency", async () => {
  const inner = new MemoryBlockDevice({ size: 1024 * 1024 });
  const device = new CountingBlockDevice(inner);
  const data = new Uint8Array(4096).fill(9);
  await device.write(4096, data, true);
  const into = new Uint8Array(4096);
  const read = await device.read(4096, 4096, into);
  assert.equal(read.buffer, into.buffer, "reads land in the caller's buffer, no copy");
  assert.equal(read[0], 9);
  await device.zero(0, 8192, { fua: false, fastZero: false, mayTrim: true });
  await device.trim(0, 4096, false);
  await device.flush();
  await device.extents(0, 4096);
  await device.cache(0, 4096);
  await assert.rejects(device.write(1024 * 1024, data, false), BlockError);
  const s = device.stats.snapshot();
  assert.deepEqual(
    Object.fromEntries(
      Object.entries(s.ops).map(([op, c]) => [op, [c.requests, c.bytes, c.errors]]),
    ),
    {
      read: [1, 4096, 0],
      write: [2, 4096, 1],
      flush: [1, 0, 0],
      trim: [1, 4096, 0],
      zero: [1, 8192, 0],
      extents: [1, 0, 0],
      cache: [1, 4096, 0],
    },
  );
  for (const c of Object.values(s.ops)) {
    assert.equal(c.buckets.length, LATENCY_BUCKETS.length + 1);
    assert.equal(c.buckets.at(-1), c.requests, "the last bucket (+Inf) holds every request");
    assert.ok(c.buckets.every((n, i) => i === 0 || n >= c.buckets[i - 1]!), "cumulative");
    assert.ok(c.latencySeconds >= 0 && c.latencySeconds < 1);
  }
  assert.equal(s.inFlight, 0);
  assert.equal(device.info().size, 1024 * 1024);
});

Deno.test("status io: in-flight requests are counted until they answer", async () => {
  const gate = Promise.withResolvers<void>();
  const inner = new MemoryBlockDevice({ size: 65536 });
  const slow = Object.assign(Object.create(inner) as MemoryBlockDevice, {
    flush: async () => await gate.promise,
  });
  const device = new CountingBlockDevice(slow);
  const pending = [device.flush(), device.flush()];
  assert.equal(device.stats.inFlight, 2);
  assert.equal(device.stats.snapshot().ops.flush.requests, 0);
  await new Promise((r) => setTimeout(r, 15));
  gate.resolve();
  await Promise.all(pending);
  const flush = device.stats.snapshot().ops.flush;
  assert.equal(device.stats.inFlight, 0);
  assert.equal(flush.requests, 2);
  assert.ok(flush.latencySeconds >= 0.02, `two waits of ~15 ms: ${flush.latencySeconds}`);
  const under10ms = flush.buckets[LATENCY_BUCKETS.indexOf(0.01)]!;
  assert.equal(under10ms, 0, "neither answered within 10 ms");
});

Deno.test("status token: a token file is made once (0600) and reused; env and fresh tokens", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dst-token-" });
  try {
    const file = `${dir}/token`;
    const made = await loadStatusToken(file);
    assert.equal(made.generated, true);
    assert.match(made.token, /^[0-9a-f]{64}$/);
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    const again = await loadStatusToken(file);
    assert.deepEqual(again, { token: made.token, generated: false, source: file });
    await Deno.writeTextFile(`${dir}/short`, "abc\n");
    await assert.rejects(loadStatusToken(`${dir}/short`), /fewer than 16 characters/);
    await assert.rejects(loadStatusToken(`${dir}/no/such/dir/token`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  Deno.env.set("DST_STATUS_TOKEN", "from-the-environment-1234");
  try {
    assert.deepEqual(await loadStatusToken(), {
      token: "from-the-environment-1234",
      generated: false,
      source: "DST_STATUS_TOKEN",
    });
  } finally {
    Deno.env.delete("DST_STATUS_TOKEN");
  }
  const a = await loadStatusToken();
  const b = await loadStatusToken();
  assert.equal(a.generated, true);
  assert.notEqual(a.token, b.token);
});

Deno.test("status token: only exactly 'Bearer TOKEN' matches", () => {
  const token = "s3cret-token-value";
  assert.equal(bearerMatches(`Bearer ${token}`, token), true);
  assert.equal(bearerMatches(`bearer   ${token} `, token), true);
  for (
    const header of [
      undefined,
      "",
      token,
      `Bearer`,
      `Bearer ${token}x`,
      `Bearer ${token.slice(1)}`,
      `Bearer ${token} extra`,
      `Basic ${token}`,
    ]
  ) {
    assert.equal(bearerMatches(header, token), false, String(header));
  }
});

Deno.test("status text: the tree with branches, states, facts and resync progress bars", () => {
  const { tree, control } = statusFixture();
  const status = statusSnapshot({ name: "m", tree, exports: ["nbd://h/dst"], control, token: "x" });
  const text = statusText(status, { barWidth: 20 });
  const lines = text.trimEnd().split("\n");
  assert.equal(lines[0], "storage m");
  assert.equal(lines[1], "  health down", "the verdict dst status exits with");
  assert.equal(lines[2], "  attach nbd://h/dst");
  assert.match(lines[3]!, /^m \(mirror\) down {2}64 MiB$/);
  assert.match(lines[4]!, /^├─ a \(remote\) rebuilding {2}64 MiB {2}unix:\/\/\/tmp\/a\.sock/);
  assert.match(lines[4]!, /gen aa11 {2}r 10 w 20 {2}reconnects 2 {2}checksum xxh64 \(1 bad\)$/);
  assert.equal(
    lines[5],
    "│     [#####...............]  25.0%  resync  from b  48 MiB left  8 MiB/s  ETA 6s",
  );
  assert.match(lines[6]!, /^└─ b \(file\) suspended {2}64 MiB .* errors 1$/);
  assert.equal(lines[7], "      suspended");
  assert.equal(lines.length, 8);
  const coloured = statusText(status, { colour: true });
  assert.ok(coloured.includes("\x1b[35msuspended\x1b[0m"), "states are coloured");
  assert.equal(progressBar(2, 4), "[####] 100.0%");
  assert.equal(progressBar(0, 4), "[....]   0.0%");
});

Deno.test("dst status: URL forms", () => {
  assert.equal(treeUrl("127.0.0.1:8080").href, "http://127.0.0.1:8080/api/tree");
  assert.equal(treeUrl("http://h:1/").href, "http://h:1/api/tree");
  assert.equal(treeUrl("https://h/dst").href, "https://h/dst/api/tree");
  assert.throws(() => treeUrl("ftp://h/"), /http/);
  assert.throws(() => treeUrl("http://"), /not a URL/);
});

Deno.test("dashboard: its script parses (a syntax error would leave the page blank)", () => {
  const html = dashboardHtml("m");
  const script = html.split("<script>")[1]!.split("</script>")[0]!;
  // Parsing is enough: the browser test runs it.
  new Function(script);
});
