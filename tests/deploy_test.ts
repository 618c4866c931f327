/**
 * The deployment story, checked for real: `deno task install` makes a `dst` that names no
 * checkout path, carries no test dependency, and runs from any folder with an empty module cache
 * (its `dst start` spawning its own nodes from the installed bundle); the systemd units in
 * deploy/systemd pass `systemd-analyze verify` run on that installed dst; and the example
 * configuration under deploy/etc/dst is what dst itself accepts.
 */
import assert from "node:assert/strict";
import { planNode } from "../cli/node.ts";
import { FENCED_EXIT } from "../cli/serve.ts";
import { loadTopology } from "../storage/topology.ts";
import { run, skipWithout } from "./support/nbd_harness.ts";
import { kill, withTempDir } from "./support/cli_run.ts";

const checkout = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const deploy = `${checkout}/deploy`;

/** Runs `deno task install --root ROOT`: the installed shim's path. */
async function install(root: string): Promise<string> {
  const result = await run(Deno.execPath(), [
    "task",
    "--config",
    `${checkout}/deno.json`,
    "install",
    "--root",
    root,
  ], {
    timeoutMs: 120_000,
  });
  assert.equal(result.code, 0, result.stderr);
  return `${root}/bin/dst`;
}

Deno.test("install: the installed dst names no checkout, holds no test dependency, runs anywhere", async () => {
  await withTempDir("dst-install-", async (root) => {
    const bin = await install(root);
    for (const file of [bin, `${root}/lib/dst/dst.js`]) {
      const text = await Deno.readTextFile(file);
      assert.ok(!text.includes(checkout), `${file} names the checkout ${checkout}`);
      assert.ok(!text.includes("playwright"), `${file} carries playwright`);
    }
    const lock = await Deno.readTextFile(`${checkout}/main.lock`);
    assert.ok(!lock.includes("playwright"), "the runtime lock pins no test dependency");
    const config = JSON.parse(await Deno.readTextFile(`${checkout}/deno.json`));
    assert.ok(
      !Object.keys(config.imports).some((k) => k.includes("playwright")),
      "deno.json maps no test dependency for main.ts",
    );

    // From another folder, with a module cache of its own (empty): nothing to fetch.
    const cache = `${root}/deno-cache`;
    const env = { DENO_DIR: cache };
    const version = await runIn(root, [bin, "--version"], env);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^dst \d+\.\d+\.\d+/);

    // Its dst start runs its nodes from the installed bundle too.
    const start = new Deno.Command("setsid", {
      args: [
        bin,
        "start",
        "--size",
        "8M",
        "--nbd",
        `unix://${root}/nbd.sock`,
        "--status",
        "127.0.0.1:0",
      ],
      cwd: root,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(start.stderr).text();
    const reader = start.stdout.pipeThrough(new TextDecoderStream()).getReader();
    try {
      let text = "";
      const deadline = Date.now() + 60_000;
      while (!text.includes("Ctrl-C") && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      assert.match(text, /dst is up: a 3-leg mirror/, text);
      const status = await runIn(root, [bin, "status"], env);
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /leg2 \(remote\) in-sync/);
    } finally {
      kill(-start.pid, "SIGINT");
      const killer = setTimeout(() => kill(-start.pid, "SIGKILL"), 20_000);
      const done = await start.status;
      clearTimeout(killer);
      await reader.cancel().catch(() => {});
      assert.equal(done.code, 0, await stderr);
    }
  });
});

Deno.test({
  name: "deploy: the systemd units pass systemd-analyze verify; the example config is dst's",
  ignore: skipWithout("systemd-analyze"),
  fn: () =>
    withTempDir("dst-deploy-", async (root) => {
      const bin = await install(`${root}/usr`);
      // Each template as an instance, with ExecStart pointing at the dst installed above.
      const units: string[] = [];
      for (const [template, instance] of [["dst-node@", "a"], ["dst-serve@", "main"]]) {
        const text = await Deno.readTextFile(`${deploy}/systemd/${template}.service`);
        assert.match(text, /^ExecStart=\/usr\/local\/bin\/dst /m);
        const path = `${root}/${template}${instance}.service`;
        await Deno.writeTextFile(path, text.replaceAll("/usr/local/bin/dst", bin));
        units.push(path);
      }
      // A fenced exporter stays down: restarting it would claim the nodes back from the newer one.
      const serveUnit = await Deno.readTextFile(units[1]!);
      assert.match(serveUnit, new RegExp(`^RestartPreventExitStatus=${FENCED_EXIT}$`, "m"));
      const verify = await run("systemd-analyze", ["verify", "--man=no", ...units], {
        timeoutMs: 60_000,
      });
      assert.equal(verify.code, 0, `${verify.stdout}${verify.stderr}`);
      assert.equal(verify.stderr.trim(), "", verify.stderr);

      // A unit that is wrong fails: the check can fail.
      const broken = `${root}/dst-broken@x.service`;
      await Deno.writeTextFile(
        broken,
        (await Deno.readTextFile(units[0]!)).replace("Type=exec", "Type=exce"),
      );
      const refused = await run("systemd-analyze", ["verify", "--man=no", broken]);
      assert.match(refused.stderr, /Failed to parse service type/);

      // The example configuration is what dst accepts.
      await loadTopology(`${deploy}/etc/dst/serve/main.json`);
      for (const name of ["a", "b"]) {
        const env = envFile(await Deno.readTextFile(`${deploy}/etc/dst/node/${name}.env`));
        const node = await Deno.readTextFile(units[0]!);
        const args = execArgs(node, { ...env, i: name }).slice(2); // after "dst node"
        const plan = planNode(args);
        assert.equal(plan.listen, env.DST_LISTEN);
      }
    }),
});

/** KEY=value lines of a systemd EnvironmentFile. */
function envFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (match !== null) out[match[1]!] = match[2]!;
  }
  return out;
}

/** ExecStart's words as systemd expands them: ${VAR} as one word, $VAR split, %i. */
function execArgs(unit: string, env: Record<string, string>): string[] {
  const line = /^ExecStart=(.*)$/m.exec(unit)![1]!;
  return line.split(/\s+/).flatMap((word) => {
    if (/^\$[A-Z_]+$/.test(word)) return (env[word.slice(1)] ?? "").split(/\s+/).filter(Boolean);
    const value = word.replace(/\$\{([A-Z_]+)\}/g, (_, k) => {
      assert.ok(k in env, `${k} is set by the example env file`);
      return env[k]!;
    }).replaceAll("%i", env.i!);
    return [value];
  });
}

async function runIn(cwd: string, [cmd, ...args]: string[], env: Record<string, string>) {
  const child = new Deno.Command(cmd!, { args, cwd, env, stdout: "piped", stderr: "piped" })
    .spawn();
  const timer = setTimeout(() => kill(child.pid, "SIGKILL"), 60_000);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}
