/**
 * `deno task install [--root PREFIX] [--deno PATH]`: installs `dst` so that it depends neither on
 * this checkout nor on its test tools. main.ts is bundled (`deno bundle`, with the runtime lock
 * main.lock: hono, msgpackr, zod, nothing the tests use) into one file, PREFIX/lib/dst/dst.js,
 * and PREFIX/bin/dst runs it with a fixed Deno and no config, whatever folder it is run from.
 * PREFIX is /usr/local as root (where the systemd units in deploy/systemd look), else ~/.local.
 */
import { parseArgs } from "node:util";
import { dirname, join } from "node:path";

const help = `Usage: deno task install [--root PREFIX] [--deno PATH]

Installs dst as PREFIX/bin/dst (default /usr/local as root, else ~/.local), running one
bundled file, PREFIX/lib/dst/dst.js, that needs no checkout, no network and no cache.

Options:
  --root PREFIX  where to install
  --deno PATH    the deno binary the installed dst runs with (default: this one; when this
                 one lives in a temporary npx cache it is copied to PREFIX/lib/dst/deno)
  -h, --help     show this help`;

const checkout = new URL("..", import.meta.url).pathname;

/** `text` quoted for a POSIX shell. */
function quote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

async function bundle(out: string): Promise<void> {
  const result = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--lock=main.lock",
      "--platform",
      "deno",
      "--output",
      out,
      "main.ts",
    ],
    cwd: checkout,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!result.success) {
    const text = new TextDecoder();
    throw new Error(
      `deno bundle failed (exit ${result.code}):\n${text.decode(result.stdout)}` +
        text.decode(result.stderr),
    );
  }
}

/** The deno the shim runs: given, else this one, copied out of an npx cache that may vanish. */
async function denoFor(root: string, given: string | undefined): Promise<string> {
  if (given !== undefined) {
    await Deno.stat(given).catch(() => {
      throw new Error(`--deno ${given}: no such file`);
    });
    return given;
  }
  const current = await Deno.realPath(Deno.execPath());
  if (!current.includes("/_npx/") && !current.includes("/.cache/")) return current;
  const copy = join(root, "lib", "dst", "deno");
  await Deno.copyFile(current, `${copy}.new`);
  await Deno.chmod(`${copy}.new`, 0o755);
  await Deno.rename(`${copy}.new`, copy);
  return copy;
}

export async function install(root: string, deno?: string): Promise<{ bin: string; lib: string }> {
  const lib = join(root, "lib", "dst");
  const bin = join(root, "bin", "dst");
  await Deno.mkdir(lib, { recursive: true });
  await Deno.mkdir(dirname(bin), { recursive: true });
  const bundled = join(lib, "dst.js");
  await bundle(`${bundled}.new`);
  await Deno.rename(`${bundled}.new`, bundled);
  const runtime = await denoFor(root, deno);
  const shim = [
    "#!/bin/sh",
    "# dst, installed by `deno task install`: one bundled file, independent of any checkout.",
    `DENO_NO_UPDATE_CHECK=1 exec ${quote(runtime)} run --allow-all --unstable-net --no-config ` +
    `--no-lock ${quote(bundled)} "$@"`,
    "",
  ].join("\n");
  await Deno.writeTextFile(`${bin}.new`, shim, { mode: 0o755 });
  await Deno.chmod(`${bin}.new`, 0o755);
  await Deno.rename(`${bin}.new`, bin);
  return { bin, lib };
}

if (import.meta.main) {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      strict: true,
      options: {
        root: { type: "string" },
        deno: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    console.error(`install: ${(error as Error).message}\n\n${help}`);
    Deno.exit(2);
  }
  if (values.help) {
    console.log(help);
    Deno.exit(0);
  }
  const home = Deno.env.get("HOME");
  const root = values.root ??
    (Deno.uid() === 0 || home === undefined ? "/usr/local" : join(home, ".local"));
  try {
    const { bin, lib } = await install(root, values.deno);
    console.log(`installed ${bin} (runs ${lib}/dst.js)`);
    const path = (Deno.env.get("PATH") ?? "").split(":");
    if (!path.includes(dirname(bin))) console.log(`add ${dirname(bin)} to PATH to run \`dst\``);
  } catch (error) {
    console.error(`install: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
