/**
 * The topology file: a storage described as a tree of named nodes — leaves (memory, file,
 * remote) and mappings (linear, mirror, parity) whose children are other names. Validated with zod for
 * shape and then as a graph (the root exists, every child exists, no cycles, each node has one
 * parent, sizes fit), and every error names the path of the bad field and what was expected, so
 * a bad file starts nothing.
 */
import { z } from "zod";
import { parseDuration } from "../util/duration.ts";
import { formatSize, parseSize } from "../util/size.ts";

const name = z.string().regex(
  /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/,
  "expected a node name: letters, digits, '_', '.', '-' (at most 64)",
);

const size = z.union([z.number(), z.string()]).transform((value, ctx) => {
  if (typeof value === "number") {
    if (Number.isSafeInteger(value) && value > 0) return value;
    ctx.addIssue({ code: "custom", message: "expected a positive whole number of bytes" });
    return z.NEVER;
  }
  try {
    return parseSize(value);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
    return z.NEVER;
  }
});

/** "500ms", "5s", "2m", as milliseconds. */
const duration = z.string().transform((value, ctx) => {
  try {
    return parseDuration(value);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
    return z.NEVER;
  }
});

const url = (schemes: readonly string[]) =>
  z.string().refine(
    (u) => schemes.some((s) => u.startsWith(`${s}://`)),
    `expected a URL starting with ${schemes.map((s) => `${s}://`).join(", ")}`,
  );

const memoryNode = z.strictObject({ kind: z.literal("memory"), size });
const fileNode = z.strictObject({
  kind: z.literal("file"),
  path: z.string().min(1, "expected a file path"),
  /** Required to create the media; checked against existing media. */
  size: size.optional(),
});
const remoteNode = z.strictObject({
  kind: z.literal("remote"),
  url: url(["tcp", "unix", "quic"]),
  /** Refuse the node unless its media belongs to this storage. */
  storageId: z.string().min(1).optional(),
  /** How long assembly waits for the node before going on without it (default 10 s). */
  connectTimeoutMs: z.number().int().min(100).max(600_000).optional(),
  /**
   * How long a request may wait for the node while its link is down before it fails with EIO
   * (milliseconds once parsed). Mirror legs default to failing at once; others to the request's
   * deadline (30 s) or `dst serve --io-timeout`.
   */
  ioTimeout: duration.optional(),
});
const linearNode = z.strictObject({
  kind: z.literal("linear"),
  children: z.array(name).min(1, "a linear mapping needs at least one child"),
});
const mirrorNode = z.strictObject({
  kind: z.literal("mirror"),
  legs: z.array(name).min(1, "a mirror needs at least one leg").max(
    8,
    "a mirror has at most 8 legs",
  ),
  /** A leg that does not answer within this leaves the in-sync set. */
  legTimeoutMs: z.number().int().min(10).max(600_000).optional(),
  /** How reads pick among in-sync legs: spread evenly, or keep sequential streams on one leg. */
  readPolicy: z.enum(["round-robin", "nearest"]).optional(),
  /** Bytes per write-intent bitmap bit: a power of two from 4K (default 1M). */
  chunkSize: size.refine((n) => n >= 4096 && (n & (n - 1)) === 0 && n <= 1 << 30, {
    message: "expected a power of two from 4K to 1G",
  }).optional(),
  /** Resync pace: never slower than floor, never faster than ceiling (bytes per second). */
  resync: z.strictObject({
    floor: size.optional(),
    ceiling: size.optional(),
    parallel: z.number().int().min(1).max(64).optional(),
  }).optional(),
});

/** A power of two from 4K to 1G (bitmap chunks, stripe units). */
const powerOfTwo = size.refine((n) => n >= 4096 && (n & (n - 1)) === 0 && n <= 1 << 30, {
  message: "expected a power of two from 4K to 1G",
});

/** RAID 5: K data legs and one parity leg, parity rotating over every leg (actors/parity/). */
const parityNode = z.strictObject({
  kind: z.literal("parity"),
  legs: z.array(name).min(3, "parity needs at least 3 legs (2 data and 1 parity)").max(
    16,
    "parity has at most 16 legs",
  ),
  /** Bytes of one stripe unit: a power of two from 4K (default 64K). */
  unit: powerOfTwo.optional(),
  /** A leg that does not answer within this leaves the in-sync set. */
  legTimeoutMs: z.number().int().min(10).max(600_000).optional(),
  /** Leg bytes per write-intent bitmap bit: a multiple of the unit (default 1M, or the unit). */
  chunkSize: powerOfTwo.optional(),
  /** Rebuild pace: never slower than floor, never faster than ceiling (bytes per second). */
  resync: z.strictObject({
    floor: size.optional(),
    ceiling: size.optional(),
    parallel: z.number().int().min(1).max(64).optional(),
  }).optional(),
}).refine((p) => p.chunkSize === undefined || p.chunkSize >= (p.unit ?? 64 * 1024), {
  message: "chunkSize must be at least the stripe unit (64K unless unit says)",
  path: ["chunkSize"],
});

const nodeSchema = z.discriminatedUnion("kind", [
  memoryNode,
  fileNode,
  remoteNode,
  linearNode,
  mirrorNode,
  parityNode,
], { error: "expected kind to be one of memory, file, remote, linear, mirror, parity" });

export const topologySchema = z.strictObject({
  /** The root: the name of the node that is the storage. */
  storage: name,
  nodes: z.record(name, nodeSchema),
  /** Serve the storage over NBD. */
  export: z.strictObject({
    listen: z.array(url(["tcp", "unix"])).min(1),
    name: z.string().max(4096).optional(),
    /** NBD over TLS (paths relative to the file); `dst serve --tls` flags take precedence. */
    tls: z.strictObject({
      mode: z.enum(["on", "require"]),
      cert: z.string().min(1),
      key: z.string().min(1),
      ca: z.string().min(1).optional(),
    }).optional(),
  }).optional(),
  /** Also serve the storage as a dst node, so another storage can use it as a child. */
  node: z.strictObject({ listen: url(["tcp", "unix", "quic"]) }).optional(),
  /** File holding the cluster secret for links to remote nodes and for the node server. */
  secretFile: z.string().min(1).optional(),
});

export type Topology = z.infer<typeof topologySchema>;
export type NodeSpec = z.infer<typeof nodeSchema>;

/** A topology that cannot be used; `problems` lists every reason, each naming its field. */
export class TopologyError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid topology:\n  ${problems.join("\n  ")}`);
    this.name = "TopologyError";
  }
}

/** Children of a node, in order, with the field that names them. */
export function childrenOf(spec: NodeSpec): { field: string; names: readonly string[] } {
  if (spec.kind === "linear") return { field: "children", names: spec.children };
  if (spec.kind === "mirror" || spec.kind === "parity") return { field: "legs", names: spec.legs };
  return { field: "", names: [] };
}

/** Sizes known before assembly (memory, sized files); remote sizes come at assembly. */
function declaredSize(topology: Topology, node: string): number | undefined {
  const spec = topology.nodes[node];
  if (spec === undefined) return undefined;
  if (spec.kind === "memory" || spec.kind === "file") return spec.size;
  if (spec.kind === "remote") return undefined;
  const sizes = childrenOf(spec).names.map((c) => declaredSize(topology, c));
  if (sizes.some((s) => s === undefined)) return undefined;
  const known = sizes as number[];
  if (spec.kind === "linear") return known.reduce((a, b) => a + b, 0);
  if (spec.kind === "parity") {
    const unit = spec.unit ?? 64 * 1024;
    return Math.floor(Math.min(...known) / unit) * unit * (known.length - 1);
  }
  return Math.min(...known);
}

function issuePath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (out, key) =>
      typeof key === "number"
        ? `${out}[${key}]`
        : out === ""
        ? String(key)
        : `${out}.${String(key)}`,
    "",
  );
}

/**
 * The problem with a mirror whose legs have different sizes, or undefined. Checked on declared
 * sizes when the file is read, and again on discovered (remote) sizes at assembly.
 */
export function legSizeProblem(
  mirror: string,
  legs: readonly (readonly [string, number])[],
): string | undefined {
  if (new Set(legs.map(([, size]) => size)).size <= 1) return undefined;
  const listed = legs.map(([leg, size]) => `${leg} ${formatSize(size)}`).join(", ");
  return `nodes.${mirror}.legs: legs differ in size (${listed}); give every leg of a mirror the same size`;
}

/**
 * The problem with a parity node's legs, or undefined: each must hold at least one stripe unit
 * (legs of different sizes are fine: each gives as much as the smallest). Checked on declared
 * sizes when the file is read; remote sizes are checked at assembly.
 */
export function parityLegProblem(
  parity: string,
  unit: number,
  legs: readonly (readonly [string, number | undefined])[],
): string | undefined {
  const small = legs.filter(([, size]) => size !== undefined && size < unit);
  if (small.length === 0) return undefined;
  const listed = small.map(([leg, size]) => `${leg} ${formatSize(size!)}`).join(", ");
  return `nodes.${parity}.legs: every parity leg must hold at least one stripe unit ` +
    `(${formatSize(unit)}): ${listed}; use bigger legs or a smaller unit`;
}

/** Parses and checks a topology; throws TopologyError naming every problem. */
export function parseTopology(input: unknown): Topology {
  const parsed = topologySchema.safeParse(input);
  if (!parsed.success) {
    throw new TopologyError(
      parsed.error.issues.map((i) => `${issuePath(i.path) || "(top level)"}: ${i.message}`),
    );
  }
  const topology = parsed.data;
  const problems: string[] = [];
  const { nodes } = topology;
  if (nodes[topology.storage] === undefined) {
    problems.push(`storage: no node named "${topology.storage}" in nodes`);
  }
  const parentOf = new Map<string, string>();
  for (const [node, spec] of Object.entries(nodes)) {
    const { field, names } = childrenOf(spec);
    names.forEach((child, i) => {
      const at = `nodes.${node}.${field}[${i}]`;
      if (nodes[child] === undefined) problems.push(`${at}: no node named "${child}"`);
      else if (child === node) problems.push(`${at}: "${node}" cannot contain itself`);
      else if (parentOf.has(child)) {
        problems.push(
          `${at}: "${child}" already belongs to "${parentOf.get(child)}"; a node has one parent`,
        );
      } else parentOf.set(child, node);
    });
  }
  if (parentOf.has(topology.storage)) {
    problems.push(
      `storage: "${topology.storage}" is a child of "${
        parentOf.get(topology.storage)
      }"; the storage must be the root`,
    );
  }
  // With one parent per node, a cycle is a loop of parents that never reaches the root.
  const inCycle = new Set<string>();
  for (const node of Object.keys(nodes)) {
    if (inCycle.has(node)) continue;
    const chain = [node];
    let at = parentOf.get(node);
    while (at !== undefined && !chain.includes(at)) {
      chain.push(at);
      at = parentOf.get(at);
    }
    if (at === node) {
      chain.forEach((n) => inCycle.add(n));
      problems.push(`nodes.${node}: cycle: ${[...chain, node].join(" is a child of ")}`);
    }
  }
  for (const node of Object.keys(nodes)) {
    if (node !== topology.storage && !parentOf.has(node)) {
      problems.push(`nodes.${node}: not part of storage "${topology.storage}" (no parent uses it)`);
    }
  }
  if (problems.length > 0) throw new TopologyError([...new Set(problems)]);
  // Sizes are summed along the tree, so only once it is known to be a tree.
  for (const [node, spec] of Object.entries(nodes)) {
    if (spec.kind === "parity") {
      const problem = parityLegProblem(
        node,
        spec.unit ?? 64 * 1024,
        spec.legs.map((leg) => [leg, declaredSize(topology, leg)] as const),
      );
      if (problem !== undefined) problems.push(problem);
    }
    if (spec.kind !== "mirror") continue;
    const sizes = spec.legs.map((leg) => [leg, declaredSize(topology, leg)] as const);
    const problem = legSizeProblem(
      node,
      sizes.filter(([, s]) => s !== undefined) as [string, number][],
    );
    if (problem !== undefined) problems.push(problem);
  }
  if (problems.length > 0) throw new TopologyError([...new Set(problems)]);
  return topology;
}

/** Reads and parses a topology file; JSON errors name the file. */
export async function loadTopology(path: string): Promise<Topology> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new TopologyError([`${path}: cannot read: ${(error as Error).message}`]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new TopologyError([`${path}: not valid JSON: ${(error as Error).message}`]);
  }
  return parseTopology(json);
}
