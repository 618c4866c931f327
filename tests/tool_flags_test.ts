/**
 * The developer entrypoints (`deno task sim`, `deno task bench*`) refuse a bad flag with one line
 * naming it and their usage, exit 2, before running anything; `--help` prints the usage.
 */
import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;

async function run(script: string, args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--unstable-net", `${root}${script}`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

for (const script of ["sim/main.ts", "bench/nbd.ts", "bench/storage.ts", "bench/resync.ts"]) {
  Deno.test(`${script}: an unknown flag is named, with the usage, exit 2`, async () => {
    const r = await run(script, ["--bogus"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /Unknown option '--bogus'/);
    assert.match(r.stderr, /usage: deno task /);
  });
  Deno.test(`${script}: --help prints the usage, exit 0`, async () => {
    const r = await run(script, ["--help"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^usage: deno task /);
  });
}

Deno.test("sim/main.ts: a count that is not a number is named", async () => {
  const r = await run("sim/main.ts", ["--seeds", "many"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--seeds must be a whole number, got "many"/);
});

Deno.test("bench/nbd.ts: a transport it does not know is named", async () => {
  const r = await run("bench/nbd.ts", ["--transport", "udp"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--transport must be tcp, unix or both, got "udp"/);
});
