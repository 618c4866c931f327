/**
 * The drill file: a zod-validated JSON document naming the processes of a topology (dst nodes and
 * dst serves mirroring them), the workload and a timeline of faults and waits. Checked as a whole
 * before anything starts, and every mistake names its field, like topology files.
 */
import { z } from "zod";
import { parseSize } from "../util/size.ts";

const name = z.string().regex(
  /^[A-Za-z][A-Za-z0-9_-]{0,15}$/,
  "expected a process name: a letter, then letters, digits, '_', '-' (at most 16)",
);

const size = z.union([z.number().int().positive(), z.string()]).transform((value, ctx) => {
  if (typeof value === "number") return value;
  try {
    return parseSize(value);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
    return z.NEVER;
  }
});

const nodeProcess = z.strictObject({ kind: z.literal("node") });
const serveProcess = z.strictObject({
  kind: z.literal("serve"),
  /** The processes (nodes or other serves) this serve mirrors, in leg order. */
  mirror: z.array(name).min(1).max(8).optional(),
  /**
   * Another exporter of the storage the named serve exports (same legs; needs "cluster"): the
   * serves of one storage elect the active one through etcd, the others stand by.
   */
  replicaOf: name.optional(),
  /** How the serve lays data over the legs listed in `mirror`: mirrored (default) or parity. */
  layout: z.enum(["mirror", "parity"]).optional(),
  legTimeoutMs: z.number().int().min(10).max(600_000).optional(),
  /** Resync pace ceiling (bytes per second): slow it down so a drill can interrupt it. */
  resyncCeiling: size.optional(),
});
const processSchema = z.discriminatedUnion("kind", [nodeProcess, serveProcess], {
  error: "expected kind to be node or serve",
});

const target = { process: name };
/** Client I/O errors are tolerated from a step that allows them until one that forbids them. */
const errors = { allowClientErrors: z.boolean().optional() };

const stepSchema = z.discriminatedUnion("do", [
  z.strictObject({ do: z.literal("sleep"), ms: z.number().int().min(0).max(600_000), ...errors }),
  z.strictObject({
    do: z.literal("wait"),
    /**
     * "in-sync": the whole tree in sync (or the named process's leg); "active": the named
     * exporter is the elected one and in sync; else the leg's state.
     */
    for: z.enum(["in-sync", "out-of-sync", "rebuilding", "active"]),
    process: name.optional(),
    timeoutMs: z.number().int().min(100).max(600_000).optional(),
    ...errors,
  }),
  /** Waits until the workload has completed this many more write rounds. */
  z.strictObject({ do: z.literal("rounds"), count: z.number().int().min(1).max(1000), ...errors }),
  z.strictObject({ do: z.literal("kill"), ...target, ...errors }),
  /** Waits for the process to exit by itself (a fenced exporter), with `code` if given. */
  z.strictObject({
    do: z.literal("exit"),
    ...target,
    code: z.number().int().min(0).max(255).optional(),
    timeoutMs: z.number().int().min(100).max(600_000).optional(),
    ...errors,
  }),
  z.strictObject({ do: z.literal("start"), ...target, ...errors }),
  z.strictObject({
    do: z.literal("restart"),
    ...target,
    signal: z.enum(["SIGTERM", "SIGKILL"]).optional(),
    ...errors,
  }),
  z.strictObject({ do: z.literal("hang"), ...target, ...errors }),
  z.strictObject({ do: z.literal("unhang"), ...target, ...errors }),
  z.strictObject({ do: z.literal("cut"), ...target, ...errors }),
  z.strictObject({ do: z.literal("heal"), ...target, ...errors }),
  z.strictObject({
    do: z.literal("netem"),
    ...target,
    delayMs: z.number().int().min(0).max(10_000).optional(),
    lossPercent: z.number().min(0).max(100).optional(),
    ...errors,
  }),
  z.strictObject({ do: z.literal("clear-netem"), ...target, ...errors }),
  z.strictObject({ do: z.literal("replace-media"), ...target, ...errors }),
  z.strictObject({ do: z.literal("suspend"), ...target, ...errors }),
  z.strictObject({ do: z.literal("resume"), ...target, ...errors }),
], { error: "expected do to be one of the drill steps (see dst drill --help)" });

export const drillSchema = z.strictObject({
  name: z.string().min(1).max(80),
  description: z.string().max(2000).optional(),
  /** "unix": every link a Unix socket; "netns": each process in its own network namespace. */
  network: z.enum(["unix", "netns"]).optional(),
  /** Exporters elect the active one through an etcd the drill starts (`dst serve --cluster`). */
  cluster: z.strictObject({ leaseSeconds: z.number().int().min(1).max(60) }).optional(),
  /** Size of every node's media. */
  size: size,
  chunkSize: size.optional(),
  processes: z.record(name, processSchema),
  workload: z.strictObject({
    /** Each write round writes [0, n) of the device; rounds cycle through these lengths. */
    roundBytes: z.array(size).min(1).max(16),
  }),
  timeline: z.array(stepSchema).min(1).max(200),
  /** The CI form (`--short`): a smaller device and shorter sleeps. */
  short: z.strictObject({
    size: size.optional(),
    sleepScale: z.number().min(0.01).max(1).optional(),
  }).optional(),
});

export type Drill = z.infer<typeof drillSchema>;
export type DrillStep = z.infer<typeof stepSchema>;
export type ProcessSpec = z.infer<typeof processSchema>;

/** A drill file that cannot be run; every problem names its field. */
export class DrillError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid drill:\n  ${problems.join("\n  ")}`);
    this.name = "DrillError";
  }
}

function issuePath(path: readonly PropertyKey[]): string {
  return path.map((k) => typeof k === "number" ? `[${k}]` : `.${String(k)}`).join("").slice(1)
    .replace(/\.\[/g, "[");
}

/** The serve whose mirror has `process` as a leg, if any. */
export function parentOf(drill: Drill, process: string): string | undefined {
  for (const [serve, spec] of Object.entries(drill.processes)) {
    if (spec.kind === "serve" && spec.mirror?.includes(process)) return serve;
  }
  return undefined;
}

/** The one serve that no other serve mirrors (and no replica): it exports the storage. */
export function rootOf(drill: Drill): string {
  const roots = Object.entries(drill.processes).filter(([n, spec]) =>
    spec.kind === "serve" && spec.replicaOf === undefined && parentOf(drill, n) === undefined
  );
  return roots[0]?.[0] as string; // parseDrill made sure there is exactly one
}

/** The exporters of the root storage: the root serve, then its replicas. */
export function exportersOf(drill: Drill): string[] {
  const root = rootOf(drill);
  if (root === undefined) return [];
  return [
    root,
    ...Object.entries(drill.processes).filter(([, spec]) =>
      spec.kind === "serve" && spec.replicaOf === root
    ).map(([n]) => n),
  ];
}

/** The legs a serve mirrors (a replica's are its storage's). */
export function legsOf(drill: Drill, serve: string): readonly string[] {
  const spec = drill.processes[serve];
  if (spec?.kind !== "serve") return [];
  if (spec.replicaOf !== undefined) return legsOf(drill, spec.replicaOf);
  return spec.mirror ?? [];
}

/** Parses and checks a drill: the shape, then the graph (one root serve, known names). */
export function parseDrill(input: unknown): Drill {
  const parsed = drillSchema.safeParse(input);
  if (!parsed.success) {
    throw new DrillError(
      parsed.error.issues.map((i) => `${issuePath(i.path) || "(top level)"}: ${i.message}`),
    );
  }
  const drill = parsed.data;
  const problems: string[] = [];
  const seen = new Map<string, string>();
  for (const [serve, spec] of Object.entries(drill.processes)) {
    if (spec.kind !== "serve") continue;
    const at = `processes.${serve}`;
    if ((spec.mirror === undefined) === (spec.replicaOf === undefined)) {
      problems.push(`${at}: give exactly one of "mirror" (its legs) or "replicaOf" (a serve)`);
    }
    if (spec.layout === "parity" && (spec.mirror?.length ?? 0) < 3) {
      problems.push(`${at}.mirror: a parity serve needs at least 3 legs (2 data and 1 parity)`);
    }
    if (spec.replicaOf !== undefined) {
      const target = drill.processes[spec.replicaOf];
      if (target?.kind !== "serve" || target.replicaOf !== undefined) {
        problems.push(`${at}.replicaOf: "${spec.replicaOf}" is not a serve with legs`);
      }
      if (drill.cluster === undefined) {
        problems.push(`${at}.replicaOf: exporters of one storage need "cluster" (an election)`);
      }
    }
    spec.mirror?.forEach((leg, i) => {
      const at = `processes.${serve}.mirror[${i}]`;
      if (drill.processes[leg] === undefined) problems.push(`${at}: no process named "${leg}"`);
      else if (leg === serve) problems.push(`${at}: a serve cannot mirror itself`);
      else if (seen.has(leg)) {
        problems.push(`${at}: "${leg}" is already a leg of "${seen.get(leg)}"`);
      } else seen.set(leg, serve);
    });
  }
  const roots = Object.entries(drill.processes)
    .filter(([n, spec]) => spec.kind === "serve" && !seen.has(n) && spec.replicaOf === undefined)
    .map(([n]) => n);
  if (roots.length !== 1) {
    problems.push(
      `processes: expected exactly one serve that no other serve mirrors (the export), found ${
        roots.length === 0 ? "none" : roots.join(", ")
      }`,
    );
  }
  for (const [n, spec] of Object.entries(drill.processes)) {
    if (spec.kind === "node" && !seen.has(n)) {
      problems.push(`processes.${n}: no serve mirrors this node`);
    }
  }
  drill.timeline.forEach((step, i) => {
    if ("process" in step && step.process !== undefined) {
      if (drill.processes[step.process] === undefined) {
        problems.push(`timeline[${i}].process: no process named "${step.process}"`);
      }
      const needsParent = ["cut", "heal", "netem", "clear-netem", "suspend", "resume"];
      // An exporter elected through the cluster can be cut off from everything it reaches.
      const isolatable = ["cut", "heal"].includes(step.do) && drill.cluster !== undefined &&
        exportersOf(drill).includes(step.process);
      if (needsParent.includes(step.do) && !seen.has(step.process) && !isolatable) {
        problems.push(`timeline[${i}]: ${step.do} needs a process that is some serve's leg`);
      }
      if (
        step.do === "wait" && step.for === "active" && !exportersOf(drill).includes(step.process)
      ) {
        problems.push(`timeline[${i}]: wait for active needs an exporter of the storage`);
      }
      if (step.do === "replace-media" && drill.processes[step.process]?.kind !== "node") {
        problems.push(`timeline[${i}]: replace-media needs a node process`);
      }
    }
    if (["cut", "heal", "netem", "clear-netem"].includes(step.do) && drill.network !== "netns") {
      problems.push(`timeline[${i}]: ${step.do} needs "network": "netns"`);
    }
  });
  if (problems.length > 0) throw new DrillError(problems);
  return drill;
}

/** Reads and parses a drill file. */
export async function loadDrill(path: string): Promise<Drill> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new DrillError([`${path}: ${(error as Error).message}`]);
  }
  return parseDrill(json);
}
