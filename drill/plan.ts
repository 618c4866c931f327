/**
 * Turns a drill's processes into real command lines: each node gets file media in the drill's
 * folder and the storage id of the mirror it is a leg of; each serve gets a topology file whose
 * legs are remote nodes at the URLs its leg processes listen on (Unix sockets, or an address on a
 * veth in the leg's namespace), the root serve exports over a Unix socket (reachable from every
 * namespace), the others serve as dst nodes for their parent. Start order: nodes, then serves
 * from the bottom of the tree up.
 */
import { Namespaces } from "./netns.ts";
import type { ProcessPlan } from "./process.ts";
import { type Drill, parentOf, rootOf } from "./schema.ts";

const NODE_PORT = 7000;

export interface DrillPlan {
  readonly dir: string;
  readonly root: string;
  readonly nbdSocket: string;
  /** In start order. */
  readonly processes: readonly ProcessPlan[];
  readonly tokenFiles: ReadonlyMap<string, string>;
  readonly mediaFiles: ReadonlyMap<string, string>;
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** Depth of a process below the root (the root is 0). */
function depth(drill: Drill, name: string): number {
  let d = 0;
  for (let p = parentOf(drill, name); p !== undefined; p = parentOf(drill, p)) d++;
  return d;
}

export async function planDrill(
  drill: Drill,
  dir: string,
  size: number,
  namespaces: Namespaces | undefined,
): Promise<DrillPlan> {
  const names = Object.keys(drill.processes);
  const storageIds = new Map(names.map((n) => [n, randomHex(16)]));
  const listen = new Map<string, string>();
  let secretFile: string | undefined;
  if (namespaces !== undefined) {
    secretFile = `${dir}/secret`;
    await Deno.writeTextFile(secretFile, `${randomHex(32)}\n`, { mode: 0o600 });
    for (const n of names) await namespaces.add(n);
    let index = 0;
    for (const n of names) {
      const parent = parentOf(drill, n);
      if (parent === undefined) continue;
      const link = await namespaces.link(parent, n, index++);
      listen.set(n, `tcp://${link.legAddress}:${NODE_PORT}`);
    }
  } else {
    for (const n of names) listen.set(n, `unix://${dir}/${n}.sock`);
  }
  const root = rootOf(drill);
  const nbdSocket = `${dir}/nbd.sock`;
  const tokenFiles = new Map<string, string>();
  const mediaFiles = new Map<string, string>();
  const plans: ProcessPlan[] = [];
  const ns = (n: string) => namespaces === undefined ? {} : { ns: namespaces.nsOf(n) };
  const secretArgs = secretFile === undefined ? [] : ["--secret-file", secretFile];
  for (const [n, spec] of Object.entries(drill.processes)) {
    if (spec.kind !== "node") continue;
    const parent = parentOf(drill, n)!;
    const media = `${dir}/${n}.img`;
    mediaFiles.set(n, media);
    plans.push({
      name: n,
      kind: "node",
      ...ns(n),
      args: [
        "node",
        "--listen",
        listen.get(n)!,
        "--data",
        media,
        "--size",
        String(size),
        "--id",
        n,
        "--storage-id",
        storageIds.get(parent)!,
        ...secretArgs,
      ],
    });
  }
  const serves = Object.entries(drill.processes)
    .filter(([, spec]) => spec.kind === "serve")
    .sort(([a], [b]) => depth(drill, b) - depth(drill, a));
  for (const [n, spec] of serves) {
    if (spec.kind !== "serve") continue;
    const id = storageIds.get(n)!;
    const topology = {
      storage: n,
      nodes: {
        [n]: {
          kind: "mirror",
          legs: spec.mirror,
          ...(drill.chunkSize === undefined ? {} : { chunkSize: drill.chunkSize }),
          ...(spec.legTimeoutMs === undefined ? {} : { legTimeoutMs: spec.legTimeoutMs }),
          ...(spec.resyncCeiling === undefined ? {} : { resync: { ceiling: spec.resyncCeiling } }),
        },
        ...Object.fromEntries(spec.mirror.map((leg) => [leg, {
          kind: "remote",
          url: listen.get(leg)!,
          ...(drill.processes[leg]?.kind === "node" ? { storageId: id } : {}),
        }])),
      },
      ...(n === root
        ? { export: { listen: [`unix://${nbdSocket}`] } }
        : { node: { listen: listen.get(n)! } }),
      ...(secretFile === undefined ? {} : { secretFile }),
    };
    const config = `${dir}/${n}.json`;
    await Deno.writeTextFile(config, JSON.stringify(topology, null, 2));
    const tokenFile = `${dir}/${n}.token`;
    tokenFiles.set(n, tokenFile);
    plans.push({
      name: n,
      kind: "serve",
      ...ns(n),
      args: [
        "serve",
        "--config",
        config,
        "--status",
        "127.0.0.1:0",
        "--status-token-file",
        tokenFile,
        "--id",
        n,
      ],
    });
  }
  return { dir, root, nbdSocket, processes: plans, tokenFiles, mediaFiles };
}
