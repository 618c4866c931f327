/**
 * Errors a newcomer meets first, through the real `dst` command: each says in a line or two what
 * was wrong and what to do, names the address or value at fault, and leaves nothing behind. A
 * mistake on the command line is never buried under the whole help; `dst help CMD` and
 * `dst --version` answer as other tools do.
 */
import assert from "node:assert/strict";
import { dst, withTempDir } from "./support/cli_run.ts";

Deno.test("cli: an unknown option is one line with the nearest option, not the whole help", async () => {
  const typo = await dst(["export", "--lisen", "tcp://127.0.0.1:0", "--memory", "1M"]);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /^dst export: unknown option --lisen \(did you mean --listen\?\)$/m);
  assert.doesNotMatch(typo.stderr, /Usage:/, "the help is not printed under the error");
  assert.ok(typo.stderr.trim().split("\n").length <= 2, typo.stderr);
  assert.match(typo.stderr, /dst export --help/, "it says where the options are");

  const missing = await dst(["node", "--listen"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^dst node: --listen needs a value$/m);

  const command = await dst(["stat"]);
  assert.equal(command.code, 2);
  assert.match(command.stderr, /unknown command "stat" \(did you mean "status"\?\)/);
});

Deno.test("cli: dst help COMMAND prints that command's help; --version says the version", async () => {
  const help = await dst(["help", "serve"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: dst serve --config FILE/);
  const version = await dst(["--version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^dst \d+\.\d+\.\d+ \(deno \d+\.\d+\.\d+/);
  assert.equal((await dst(["version"])).stdout, version.stdout);
});

Deno.test("cli: --memory 100 is refused as a missing unit, with the guess", async () => {
  // Bounded: a dst that took the size would serve until killed.
  const bounded = { timeoutMs: 15_000 };
  const small = await dst(["export", "--listen", "tcp://127.0.0.1:0", "--memory", "100"], bounded);
  assert.equal(small.code, 2);
  assert.match(small.stderr, /--memory 100: a number without a unit is bytes.*did you mean 100M\?/);
  const odd = await dst(
    ["export", "--listen", "tcp://127.0.0.1:0", "--memory", "2000001"],
    bounded,
  );
  assert.equal(odd.code, 2);
  assert.match(odd.stderr, /not a whole number of 512-byte sectors/);
  const size = await dst(["start", "--size", "64", "--data", "/nonexistent/dst-test"], bounded);
  assert.equal(size.code, 2);
  assert.match(size.stderr, /--size 64: .*did you mean 64M\?/);
});

Deno.test("cli: dst status with a URL of another scheme names the scheme, dials nothing", async () => {
  const typo = await dst(["status", "htp:/foo"]);
  assert.equal(typo.code, 64, "a usage error, not a health verdict");
  assert.match(typo.stderr, /htp:\/foo: "htp:" is not a scheme the status endpoint speaks/);
  assert.doesNotMatch(typo.stderr, /cannot reach/);
  const hostPort = await dst(["status", "localhost:1"]);
  assert.equal(hostPort.code, 2, "HOST:PORT is a host and a port: unreachable here");
  assert.match(hostPort.stderr, /cannot reach http:\/\/localhost:1/);
});

Deno.test("cli: a port in use is named with its address before anything is made", async () => {
  await withTempDir("dst-cli-port-", async (dir) => {
    const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const address = `tcp://127.0.0.1:${(busy.addr as Deno.NetAddr).port}`;
    try {
      await Deno.writeTextFile(
        `${dir}/topology.json`,
        JSON.stringify({
          storage: "m",
          nodes: { m: { kind: "file", path: "m.img", size: "4M" } },
          export: { listen: [address] },
        }),
      );
      const runs = {
        start: ["start", "--data", `${dir}/data`, "--nbd", address, "--status", "127.0.0.1:0"],
        export: ["export", "--listen", address, "--file", `${dir}/e.img`, "--size", "4M"],
        node: ["node", "--listen", address, "--data", `${dir}/n.img`, "--size", "4M"],
        serve: ["serve", "--config", `${dir}/topology.json`],
      };
      for (const [name, args] of Object.entries(runs)) {
        const result = await dst(args);
        assert.equal(result.code, 1, `${name}: ${result.stderr}`);
        assert.match(
          result.stderr,
          new RegExp(`cannot listen on ${address}: address already in use`),
          `${name} names the address`,
        );
        assert.doesNotMatch(result.stderr, /os error/, `${name} speaks words, not errno`);
      }
      const left = [...Deno.readDirSync(dir)].map((e) => e.name);
      assert.deepEqual(left, ["topology.json"], "nothing was made: no data folder, no media");
    } finally {
      busy.close();
    }
  });
});
