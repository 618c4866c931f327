/**
 * Turns a drill's processes into real command lines: each node gets file media in the drill's
 * folder and the storage id of the mirror it is a leg of; each serve gets a topology file whose
 * legs are remote nodes at the URLs its leg processes listen on (Unix sockets, or an address on a
 * veth in the leg's namespace), the root serve and its replicas export over Unix sockets
 * (reachable from every namespace), the others serve as dst nodes for their parent. With a
 * cluster, every exporter of the root storage runs `--cluster` against the drill's etcd (on
 * loopback, or in a namespace of its own linked to each exporter). Start order: nodes, then
 * serves from the bottom of the tree up, the root, then its replicas.
 */
import { Namespaces } from "./netns.ts";
import type { ProcessPlan } from "./process.ts";
import { type Drill, exportersOf, legsOf, parentOf, rootOf } from "./schema.ts";

const NODE_PORT = 7000;
const ETCD_PORTS = [2379, 2380] as const;
/** The namespace-name of the drill's etcd (not a process name: those start with a letter too). */
export const ETCD_NS_NAME = "etcd";

/** Where the drill's etcd runs, and how each exporter reaches it. */
export interface EtcdPlan {
  readonly ns?: string;
  /** Listen address and ports. */
  readonly host: string;
  readonly ports: readonly [number, number];
}

export interface DrillPlan {
  readonly dir: string;
  readonly root: string;
  /** The root serve, then its replicas (exporters of one storage). */
  readonly exporters: readonly string[];
  /** Each exporter's NBD socket. */
  readonly nbdSockets: ReadonlyMap<string, string>;
  /** The root's NBD socket (for drills without replicas). */
  readonly nbdSocket: string;
  /** In start order. */
  readonly processes: readonly ProcessPlan[];
  readonly tokenFiles: ReadonlyMap<string, string>;
  readonly mediaFiles: ReadonlyMap<string, string>;
  readonly etcd?: EtcdPlan;
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Depth of a process below the root (the root and its replicas are 0). */
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
  const root = rootOf(drill);
  const exporters = exportersOf(drill);
  const storageIds = new Map(names.map((n) => [n, randomHex(16)]));
  for (const e of exporters) storageIds.set(e, storageIds.get(root)!);
  /** The URL `user` reaches `leg` at; and what each leg listens on. */
  const reach = new Map<string, string>();
  const listen = new Map<string, string>();
  const clusterUrl = new Map<string, string>();
  let etcd: EtcdPlan | undefined;
  let secretFile: string | undefined;
  if (namespaces !== undefined) {
    secretFile = `${dir}/secret`;
    await Deno.writeTextFile(secretFile, `${randomHex(32)}\n`, { mode: 0o600 });
    for (const n of names) await namespaces.add(n);
    let index = 0;
    for (const n of names) {
      for (const user of usersOf(drill, n)) {
        const link = await namespaces.link(user, n, index++);
        reach.set(`${user}>${n}`, `tcp://${link.legAddress}:${NODE_PORT}`);
      }
      // A leg in its own namespace listens on every address there: each user has a link.
      if (usersOf(drill, n).length > 0) listen.set(n, `tcp://0.0.0.0:${NODE_PORT}`);
    }
    if (drill.cluster !== undefined) {
      const ns = await namespaces.add(ETCD_NS_NAME);
      etcd = { ns, host: "0.0.0.0", ports: ETCD_PORTS };
      for (const e of exporters) {
        const link = await namespaces.link(e, ETCD_NS_NAME, index++);
        clusterUrl.set(e, `etcd://${link.legAddress}:${ETCD_PORTS[0]}`);
      }
    }
  } else {
    for (const n of names) {
      listen.set(n, `unix://${dir}/${n}.sock`);
      for (const user of usersOf(drill, n)) reach.set(`${user}>${n}`, `unix://${dir}/${n}.sock`);
    }
    if (drill.cluster !== undefined) {
      etcd = { host: "127.0.0.1", ports: [freePort(), freePort()] };
      for (const e of exporters) clusterUrl.set(e, `etcd://127.0.0.1:${etcd.ports[0]}`);
    }
  }
  const nbdSockets = new Map(
    exporters.map((e) => [e, e === root ? `${dir}/nbd.sock` : `${dir}/nbd-${e}.sock`]),
  );
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
    .map(([n]) => n)
    .sort((a, b) =>
      depth(drill, b) - depth(drill, a) ||
      exporters.indexOf(a) - exporters.indexOf(b)
    );
  for (const n of serves) {
    const spec = drill.processes[n]!;
    if (spec.kind !== "serve") continue;
    const of = spec.replicaOf ?? n;
    const own = drill.processes[of]!;
    if (own.kind !== "serve") continue;
    const legs = legsOf(drill, n);
    const id = storageIds.get(of)!;
    const topology = {
      storage: of,
      nodes: {
        [of]: {
          kind: own.layout ?? "mirror",
          legs,
          ...(drill.chunkSize === undefined ? {} : { chunkSize: drill.chunkSize }),
          ...(own.legTimeoutMs === undefined ? {} : { legTimeoutMs: own.legTimeoutMs }),
          ...(own.resyncCeiling === undefined ? {} : { resync: { ceiling: own.resyncCeiling } }),
        },
        ...Object.fromEntries(legs.map((leg) => [leg, {
          kind: "remote",
          url: reach.get(`${n}>${leg}`)!,
          ...(drill.processes[leg]?.kind === "node" ? { storageId: id } : {}),
        }])),
      },
      ...(exporters.includes(n)
        ? { export: { listen: [`unix://${nbdSockets.get(n)!}`] } }
        : { node: { listen: listen.get(n)! } }),
      ...(secretFile === undefined ? {} : { secretFile }),
    };
    const config = `${dir}/${n}.json`;
    await Deno.writeTextFile(config, JSON.stringify(topology, null, 2));
    const tokenFile = `${dir}/${n}.token`;
    tokenFiles.set(n, tokenFile);
    const cluster = clusterUrl.get(n);
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
        ...(cluster === undefined
          ? []
          : ["--cluster", cluster, "--lease", `${drill.cluster!.leaseSeconds}s`]),
      ],
    });
  }
  return {
    dir,
    root,
    exporters,
    nbdSockets,
    nbdSocket: nbdSockets.get(root)!,
    processes: plans,
    tokenFiles,
    mediaFiles,
    ...(etcd === undefined ? {} : { etcd }),
  };
}

/** The serves that reach `process` as a leg: its parent, or every exporter of the root. */
function usersOf(drill: Drill, process: string): string[] {
  const parent = parentOf(drill, process);
  if (parent === undefined) return [];
  const exporters = exportersOf(drill);
  return exporters.includes(parent) ? exporters : [parent];
}
