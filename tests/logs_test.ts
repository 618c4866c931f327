/**
 * Logs an operator can use, through the real `dst export`: every line carries a UTC timestamp,
 * `--log-level` filters, `--log-format json` writes one JSON object per line (time, level,
 * source, msg and the event's fields), DST_LOG_LEVEL sets the default and a bad value is named.
 * And no line from Deno's Node layer: a timer whose deadline already passed does not print a
 * TimeoutNegativeWarning.
 */
import assert from "node:assert/strict";
import { spawnDst } from "./support/dst_process.ts";
import { dst, withTempDir } from "./support/cli_run.ts";

/** Runs `dst export` on a memory device until SIGTERM: all it wrote on stderr. */
async function exportLog(dir: string, extra: string[], env?: Record<string, string>) {
  const server = await spawnDst([
    "export",
    "--listen",
    `unix://${dir}/nbd-${extra.join("_").replace(/\W/g, "")}.sock`,
    "--memory",
    "1M",
    ...extra,
  ], { ready: /^nbd/, ...(env === undefined ? {} : { env }) });
  const { code, stderr } = await server.stop("SIGTERM");
  assert.equal(code, 0, stderr);
  return stderr.trim().split("\n").filter((l) => l !== "");
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

Deno.test("logs: text lines carry a UTC timestamp; --log-level warn keeps only warnings", async () => {
  await withTempDir("dst-logs-", async (dir) => {
    const lines = await exportLog(dir, []);
    assert.ok(lines.length >= 2, lines.join("\n"));
    for (const line of lines) {
      const [time, ...rest] = line.split(" ");
      assert.match(time!, ISO, line);
      assert.match(rest.join(" "), /^dst export (debug|info|warn|error) /, line);
    }
    assert.ok(lines.some((l) => / info shutting down signal="SIGTERM"/.test(l)), lines.join("\n"));
    assert.deepEqual(await exportLog(dir, ["--log-level", "warn"]), []);
    assert.deepEqual(await exportLog(dir, [], { DST_LOG_LEVEL: "error" }), []);
  });
});

Deno.test("logs: --log-format json writes one object per line with the event's fields", async () => {
  await withTempDir("dst-logs-", async (dir) => {
    const lines = await exportLog(dir, ["--log-format", "json"]);
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const record of records) {
      assert.match(String(record.time), ISO);
      assert.ok(["debug", "info", "warn", "error"].includes(String(record.level)));
      assert.equal(record.source, "dst export");
      assert.equal(typeof record.msg, "string");
    }
    const stop = records.find((r) => r.msg === "shutting down");
    assert.equal(stop?.signal, "SIGTERM", "fields are keys of the object");
  });
});

Deno.test("logs: a bad level or format is named with where it came from", async () => {
  const flag = await dst(["export", "--log-level", "loud"]);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /--log-level: "loud" is not a log level: use one of debug, info/);
  const env = await dst(["export", "--memory", "1M"], { env: { DST_LOG_FORMAT: "xml" } });
  assert.equal(env.code, 2);
  assert.match(env.stderr, /DST_LOG_FORMAT: "xml" is not a log format/);
});

Deno.test("logs: a deadline already past fires at once, without a TimeoutNegativeWarning", async () => {
  const clock = new URL("../util/clock.ts", import.meta.url).href;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { systemClock } from "${clock}";
       let fired = 0;
       systemClock.setTimeout(() => fired++, -25);
       systemClock.setTimeout(() => fired++, Number.NaN);
       systemClock.setTimeout(() => console.log("fired " + fired), 20);`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  assert.equal(text.decode(out.stdout).trim(), "fired 2");
  assert.doesNotMatch(text.decode(out.stderr), /Warning/, text.decode(out.stderr));
});
