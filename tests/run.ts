/**
 * `deno task test`: the whole suite for a newcomer on a fresh machine. The Debian tools the tests
 * drive (tests/debian-tools.txt) are installed first when this can (root, apt-get); then every
 * test runs (`deno test`, arguments passed on). When tools are still missing it ends with one
 * line naming them, the tests that were skipped for them, and the command that installs them.
 */

const listFile = Deno.env.get("DST_TEST_TOOLS") ??
  new URL("./debian-tools.txt", import.meta.url).pathname;

interface Tool {
  readonly tool: string;
  readonly pkg: string;
}

function readList(path: string): Tool[] {
  return Deno.readTextFileSync(path).split("\n")
    .map((line) => line.replace(/#.*/, "").trim())
    .filter((line) => line !== "")
    .map((line) => {
      const [tool, pkg] = line.split(/\s+/);
      if (tool === undefined || pkg === undefined) {
        throw new Error(`${path}: "${line}" is not "tool package"`);
      }
      return { tool, pkg };
    });
}

function onPath(tool: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    try {
      const info = Deno.statSync(`${dir}/${tool}`);
      if (info.isFile && (info.mode ?? 0o111) & 0o111) return true;
    } catch {
      // not there
    }
  }
  return false;
}

const packagesOf = (tools: readonly Tool[]) => [...new Set(tools.map((t) => t.pkg))];

async function aptGet(args: string[]): Promise<{ ok: boolean; output: string }> {
  const out = await new Deno.Command("apt-get", {
    args: ["-q", "-y", "-o", "DPkg::Lock::Timeout=300", ...args],
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { ok: out.success, output: text.decode(out.stdout) + text.decode(out.stderr) };
}

/** Installs `pkgs`; the package lists are refreshed only when the first try fails. */
async function install(pkgs: string[]): Promise<void> {
  console.log(`installing the Debian packages the tests drive: ${pkgs.join(" ")}`);
  let result = await aptGet(["install", ...pkgs]);
  if (!result.ok) {
    const update = await aptGet(["update"]);
    result = update.ok ? await aptGet(["install", ...pkgs]) : update;
  }
  if (!result.ok) console.log(`apt-get could not install them:\n${result.output.trimEnd()}`);
}

const tools = readList(listFile);
const root = Deno.uid() === 0;
let missing = tools.filter((t) => !onPath(t.tool));
if (missing.length > 0 && root && onPath("apt-get")) {
  await install(packagesOf(missing));
  missing = missing.filter((t) => !onPath(t.tool));
}

const status = await new Deno.Command(Deno.execPath(), {
  args: ["test", "--unstable-net", "--allow-all", "--parallel", "--doc", ...Deno.args],
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn().status;

if (missing.length > 0) {
  const pkgs = packagesOf(missing).join(" ");
  const how = onPath("apt-get")
    ? `${root ? "" : "sudo "}apt-get install -y ${pkgs}`
    : `install the Debian packages ${pkgs}`;
  const fate = Deno.env.get("CI") === "true" ? "failed (CI)" : "were skipped";
  console.log(
    `tests needing ${missing.map((t) => t.tool).join(", ")} ${fate}: not installed; ` +
      `to run them: ${how}`,
  );
}
Deno.exit(status.code);
