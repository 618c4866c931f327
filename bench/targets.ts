/**
 * The servers `deno task bench` measures, each started as real processes and reached by an NBD
 * URI: dst's local exports beside nbdkit's memory and file plugins, and dst's remote paths (one
 * hop to a `dst node`, a 2-leg mirror of `dst node`s) beside nbdkit's own one-hop chain (`nbdkit
 * nbd` in front of `nbdkit memory`).
 */
import { type DstProcess, spawnDst } from "../tests/support/dst_process.ts";
import { freePort } from "./free_port.ts";
import { waitReady } from "./fio.ts";

export type Transport = "tcp" | "unix";

export type TargetName =
  | "dst-memory"
  | "nbdkit-memory"
  | "dst-file"
  | "nbdkit-file"
  | "nbdkit-chain"
  | "dst-remote"
  | "dst-mirror2";

export interface Running {
  readonly uri: string;
  /** The server processes, for their CPU time. */
  readonly pids: readonly number[];
  stop(): Promise<void>;
}

/** A process that is not a dst command (nbdkit), stopped like the dst ones. */
function spawnPlain(cmd: string, args: string[]): { pid: number; stop(): Promise<void> } {
  const child = new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).spawn();
  return {
    pid: child.pid,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // gone
      }
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await child.status;
      clearTimeout(killer);
    },
  };
}

/** Where a server listens on `transport`, as an NBD URI and as dst/nbdkit arguments. */
function endpoint(transport: Transport, dir: string, name: string) {
  const port = freePort();
  const sock = `${dir}/${name}.sock`;
  return {
    dstListen: transport === "tcp" ? `tcp://127.0.0.1:${port}` : `unix://${sock}`,
    nbdkitArgs: transport === "tcp" ? ["-i", "127.0.0.1", "-p", String(port)] : ["-U", sock],
    nbdkitUri: transport === "tcp" ? `nbd://127.0.0.1:${port}/` : `nbd+unix:///?socket=${sock}`,
    /** How an `nbdkit nbd` chain reaches it. */
    chainArgs: transport === "tcp" ? [`hostname=127.0.0.1`, `port=${port}`] : [`socket=${sock}`],
  };
}

const nbdLine = { ready: /^nbd/ };
const uriOf = (p: DstProcess) => p.lines.find((l) => l.startsWith("nbd"))!;

async function stopAll(procs: { stop(): Promise<unknown> }[]): Promise<void> {
  for (const p of [...procs].reverse()) await p.stop().catch(() => {});
}

/** A `dst node` serving memory, listening on `transport`; resolves once it printed its URL. */
async function dstNode(transport: Transport, dir: string, name: string, size: number) {
  const at = endpoint(transport, dir, name);
  return await spawnDst([
    "node",
    "--listen",
    at.dstListen,
    "--data",
    "memory:",
    "--size",
    String(size),
    "--id",
    name,
  ]);
}

export async function startTarget(
  target: TargetName,
  transport: Transport,
  dir: string,
  size: number,
): Promise<Running> {
  const out = endpoint(transport, dir, target);
  const procs: { pid: number; stop(): Promise<unknown> }[] = [];
  try {
    switch (target) {
      case "dst-memory":
      case "dst-file": {
        const source = target === "dst-memory"
          ? ["--memory", String(size)]
          : ["--file", `${dir}/dst.img`, "--size", String(size)];
        const p = await spawnDst(["export", "--listen", out.dstListen, ...source], nbdLine);
        procs.push(p);
        return running(uriOf(p), procs, [`${dir}/dst.img`]);
      }
      case "nbdkit-memory":
      case "nbdkit-file": {
        if (target === "nbdkit-file") {
          const f = await Deno.open(`${dir}/nbdkit.img`, { create: true, write: true });
          await f.truncate(size);
          f.close();
        }
        const plugin = target === "nbdkit-memory"
          ? ["memory", String(size)]
          : ["file", `${dir}/nbdkit.img`];
        procs.push(
          spawnPlain("nbdkit", ["-f", "--exit-with-parent", ...out.nbdkitArgs, ...plugin]),
        );
        await waitReady(out.nbdkitUri);
        return running(out.nbdkitUri, procs, [`${dir}/nbdkit.img`]);
      }
      case "nbdkit-chain": {
        const inner = endpoint(transport, dir, "nbdkit-inner");
        procs.push(
          spawnPlain("nbdkit", [
            "-f",
            "--exit-with-parent",
            ...inner.nbdkitArgs,
            "memory",
            String(size),
          ]),
        );
        await waitReady(inner.nbdkitUri);
        procs.push(
          spawnPlain("nbdkit", [
            "-f",
            "--exit-with-parent",
            ...out.nbdkitArgs,
            "nbd",
            ...inner.chainArgs,
          ]),
        );
        await waitReady(out.nbdkitUri);
        return running(out.nbdkitUri, procs, []);
      }
      case "dst-remote": {
        const node = await dstNode(transport, dir, "node0", size);
        procs.push(node);
        const url = node.lines[0]!.trim();
        const p = await spawnDst(["export", "--listen", out.dstListen, "--remote", url], nbdLine);
        procs.push(p);
        return running(uriOf(p), procs, []);
      }
      case "dst-mirror2": {
        const legs = [];
        for (let i = 0; i < 2; i++) {
          const node = await dstNode(transport, dir, `leg${i}`, size);
          procs.push(node);
          legs.push(node.lines[0]!.trim());
        }
        const config = `${dir}/mirror.json`;
        await Deno.writeTextFile(
          config,
          JSON.stringify({
            storage: "m",
            nodes: {
              m: { kind: "mirror", legs: ["leg0", "leg1"] },
              leg0: { kind: "remote", url: legs[0] },
              leg1: { kind: "remote", url: legs[1] },
            },
            export: { listen: [out.dstListen] },
          }),
        );
        const p = await spawnDst(["serve", "--config", config], nbdLine);
        procs.push(p);
        return running(uriOf(p), procs, [config]);
      }
    }
  } catch (error) {
    await stopAll(procs);
    throw error;
  }
}

function running(
  uri: string,
  procs: { pid: number; stop(): Promise<unknown> }[],
  files: string[],
): Running {
  return {
    uri,
    pids: procs.map((p) => p.pid),
    async stop() {
      await stopAll(procs);
      for (const f of files) await Deno.remove(f).catch(() => {});
    },
  };
}
