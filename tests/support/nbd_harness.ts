/**
 * Shared pieces for the NBD integration tests: an in-process server on a memory device (TCP and
 * Unix), running external tools with captured output, and the rule for missing tools (skip with
 * a message on a developer machine, fail in CI).
 */
import { MemoryBlockDevice } from "../../actors/block/memory.ts";
import type { BlockDevice } from "../../actors/block/contract.ts";
import { clientUri } from "../../nbd/address.ts";
import { NbdServer } from "../../nbd/server.ts";
import { type DstProcess, spawnDst } from "./dst_process.ts";

export const inCI = Deno.env.get("CI") === "true";

const found = new Map<string, boolean>();

/** Whether `tool` is on PATH. */
export function hasTool(tool: string): boolean {
  let known = found.get(tool);
  if (known === undefined) {
    const result = new Deno.Command("sh", {
      args: ["-c", `command -v ${tool}`],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    known = result.success;
    found.set(tool, known);
  }
  return known;
}

/**
 * `ignore` for a Deno.test that needs `tools`: true (skip, with a message) only when one is
 * missing outside CI; in CI a missing tool makes the test run and fail.
 */
export function skipWithout(...tools: string[]): boolean {
  const missing = tools.filter((t) => !hasTool(t));
  if (missing.length === 0) return false;
  if (inCI) return false;
  console.log(`skipping: ${missing.join(", ")} not installed (install libnbd-bin qemu-utils fio)`);
  return true;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (bounded by `timeoutMs`), capturing output. */
export async function run(
  cmd: string,
  args: string[],
  options: { timeoutMs?: number; stdin?: Uint8Array; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env } : {}),
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, options.timeoutMs ?? 60_000);
  if (options.stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(options.stdin);
    await writer.close();
  }
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Like {@link run} but throws with the output when the exit code is not 0. */
export async function mustRun(
  cmd: string,
  args: string[],
  options: { timeoutMs?: number; stdin?: Uint8Array } = {},
): Promise<string> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

export interface TestServer {
  readonly server: NbdServer;
  readonly device: BlockDevice;
  readonly port: number;
  /** nbd://127.0.0.1:PORT/NAME */
  readonly uri: string;
  /** nbd+unix:///NAME?socket=PATH */
  readonly unixUri: string;
  readonly dir: string;
  close(): Promise<void>;
}

/** An in-process server exporting a memory device (or `device`) as `name` on TCP and Unix. */
export async function startServer(
  options: { size?: number; readOnly?: boolean; name?: string; device?: BlockDevice } = {},
): Promise<TestServer> {
  const name = options.name ?? "dst";
  const device = options.device ??
    new MemoryBlockDevice({
      size: options.size ?? 64 * 1024 * 1024,
      readOnly: options.readOnly ?? false,
    });
  const server = new NbdServer({ exports: [{ name, device, description: "test export" }] });
  const dir = await Deno.makeTempDir({ prefix: "dst-nbd-" });
  const tcp = await server.listen("tcp://127.0.0.1:0");
  const unix = await server.listen(`unix://${dir}/nbd.sock`);
  const port = tcp.address.transport === "tcp" ? tcp.address.port : 0;
  return {
    server,
    device,
    port,
    uri: clientUri(tcp.address, name),
    unixUri: clientUri(unix.address, name),
    dir,
    async close() {
      await server.close();
      await device.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Bytes that differ everywhere, so a misplaced block is visible. */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(n, at + 65536)));
  }
  return out;
}

export interface ExportProcess extends DstProcess {
  /** The client URIs it printed, one per --listen. */
  readonly uris: string[];
}

/** Starts `dst export ARGS` as a real process and waits until it printed `expectUris` URIs. */
export async function spawnExport(args: string[], expectUris = 1): Promise<ExportProcess> {
  const p = await spawnDst(["export", ...args], { ready: /^nbd/, readyLines: expectUris });
  return { ...p, uris: p.lines.filter((l) => l.startsWith("nbd")) };
}
