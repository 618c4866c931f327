/**
 * `deno task test` (tests/run.ts) on a machine that lacks a Debian tool the tests drive: as root
 * with apt-get it installs the package first, then runs the tests; as another user it runs them
 * and ends with one line naming the tool and the exact command that installs it. apt-get is a
 * stand-in on PATH here (this test must not change the machine); the user is a real other user.
 */
import assert from "node:assert/strict";
import { hasTool } from "./support/nbd_harness.ts";
import { withTempDir } from "./support/cli_run.ts";

const runner = new URL("./run.ts", import.meta.url).pathname;
const TOOL = "dst-test-no-such-tool";
const PACKAGE = "dst-test-no-such-package";

/**
 * Runs `cmd` in `cwd` to completion (killed after a minute), as a newcomer would outside CI:
 * CI's own `CI=true` would turn a missing tool into a failure.
 */
async function run(
  cmd: string,
  args: string[],
  options: { env: Record<string, string>; cwd: string },
) {
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    env: { CI: "", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** A folder with a tool list naming TOOL, and a one-test file for the runner to run. */
async function setUp(dir: string): Promise<void> {
  await Deno.writeTextFile(`${dir}/tools.txt`, `# tool package\n${TOOL} ${PACKAGE}\n`);
  await Deno.writeTextFile(`${dir}/tiny_test.ts`, `Deno.test("tiny", () => {});\n`);
  await Deno.chmod(dir, 0o755);
}

Deno.test("test task: as root with apt-get, a missing tool's package is installed before the tests", async () => {
  if (Deno.uid() !== 0) {
    console.log("skipping: needs root");
    return;
  }
  await withTempDir("dst-test-task-", async (dir) => {
    await setUp(dir);
    // apt-get as a stand-in: records its arguments and "installs" the tool.
    await Deno.mkdir(`${dir}/bin`);
    await Deno.writeTextFile(
      `${dir}/bin/apt-get`,
      `#!/bin/sh\necho "$@" >> ${dir}/apt.log\n` +
        `printf '#!/bin/sh\\n' > ${dir}/bin/${TOOL}; chmod +x ${dir}/bin/${TOOL}\n`,
      { mode: 0o755 },
    );
    const result = await run(Deno.execPath(), ["run", "-A", runner, "tiny_test.ts"], {
      env: {
        PATH: `${dir}/bin:${Deno.env.get("PATH")}`,
        DST_TEST_TOOLS: `${dir}/tools.txt`,
        NO_COLOR: "1",
      },
      cwd: dir,
    });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      new RegExp(`installing the Debian packages the tests drive: ${PACKAGE}`),
    );
    assert.match(await Deno.readTextFile(`${dir}/apt.log`), new RegExp(`install ${PACKAGE}`));
    assert.match(result.stdout, /ok \| 1 passed/);
    assert.doesNotMatch(result.stdout, /to run them/, "nothing was left out");
  });
});

Deno.test({
  name: "test task: as another user, one last line names the missing tool and how to install it",
  ignore: Deno.uid() !== 0 || !hasTool("setpriv"),
  fn: () =>
    withTempDir("dst-test-task-", async (dir) => {
      await setUp(dir);
      await Deno.mkdir(`${dir}/home`, { mode: 0o777 });
      await Deno.chmod(`${dir}/home`, 0o777);
      const result = await run("setpriv", [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        Deno.execPath(),
        "run",
        "--no-config",
        "-A",
        runner,
        "tiny_test.ts",
      ], {
        env: {
          HOME: `${dir}/home`,
          DENO_DIR: `${dir}/home/deno`,
          DST_TEST_TOOLS: `${dir}/tools.txt`,
          NO_COLOR: "1",
        },
        cwd: dir,
      });
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /ok \| 1 passed/);
      const last = result.stdout.trim().split("\n").at(-1)!;
      assert.equal(
        last,
        `tests needing ${TOOL} were skipped: not installed; ` +
          `to run them: sudo apt-get install -y ${PACKAGE}`,
      );
    }),
});
