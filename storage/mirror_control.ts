/**
 * The maintenance API over a storage's mirrors, by node name, and adding a leg while serving
 * without leaving anything behind: every check that can fail runs before the leg's media is
 * made or its actor started, and when a later step fails (the node is of another size, the
 * mirror refuses the leg) what this call made is taken back — the leg out of the mirror, the
 * actor stopped, the device closed, a media file it created removed, the name freed — so a
 * corrected retry succeeds without a restart.
 */
import type { BlockDevice } from "../actors/block/contract.ts";
import { mediaOf } from "../actors/block/media.ts";
import type { ActionDone, Mirror, MirrorAction } from "../actors/mirror/mod.ts";
import { formatSize } from "../util/size.ts";
import { ControlError, type ControlResult, type LegSpec, type StorageControl } from "./control.ts";
import type { OpenedLeaf } from "./leaves.ts";
import { checkMedia } from "./media_check.ts";
import { type NodeSpec, parseTopology } from "./topology.ts";

/** What adding a leg needs from the storage it joins. */
export interface LegHost {
  /** Every node name the running tree uses; a new leg may not take one. */
  readonly names: Set<string>;
  /** Media paths in use, each with the node that holds it. */
  readonly paths: Map<string, string>;
  /** A topology path made absolute. */
  resolvePath(path: string): string;
  /** Opens the leaf of a new leg (a mirror leg: its link fails fast). */
  open(name: string, spec: NodeSpec): Promise<OpenedLeaf>;
  /** Hosts a device as the node's actor; closing the result stops the actor and the device. */
  host(name: string, device: BlockDevice): Promise<BlockDevice>;
  /** The leg is in the mirror: wire its link state, status tree and name. */
  joined(mirrorName: string, mirror: Mirror, name: string, opened: OpenedLeaf): void;
  /** The leg left the mirror: forget its tree node. */
  removed(mirror: Mirror, leg: string): void;
}

/** Problems a new leg has that can be seen before anything is made. */
async function legProblems(
  host: LegHost,
  mirror: Mirror,
  name: string,
  spec: NodeSpec,
): Promise<string[]> {
  const problems: string[] = [];
  if (host.names.has(name)) {
    problems.push(`a node named "${name}" already exists in this storage; pick another name`);
  }
  const need = mirror.info().size;
  const small = (size: number) =>
    `${name} would hold ${formatSize(size)}; the mirror needs ${formatSize(need)}`;
  if (spec.kind === "memory" && spec.size < need) problems.push(small(spec.size));
  if (spec.kind === "file") {
    const path = host.resolvePath(spec.path);
    const holder = host.paths.get(path);
    if (holder !== undefined) problems.push(`${path} is already the media of ${holder}`);
    if (spec.size !== undefined && spec.size < need) problems.push(small(spec.size));
    problems.push(...await checkMedia([{ path, from: name, size: spec.size }]));
  }
  return problems;
}

/** Adds a leg to `mirror`, or fails having taken back everything it made. */
export async function addLegCleanly(
  host: LegHost,
  mirrorName: string,
  mirror: Mirror,
  name: string,
  spec: NodeSpec,
): Promise<void> {
  const problems = await legProblems(host, mirror, name, spec);
  if (problems.length > 0) throw new ControlError("impossible", problems.join("; "));
  // Reserved at once, so a second add-leg of the same name or path waits for nothing.
  const path = spec.kind === "file" ? host.resolvePath(spec.path) : undefined;
  host.names.add(name);
  if (path !== undefined) host.paths.set(path, name);
  let opened: OpenedLeaf | undefined;
  let hosted: BlockDevice | undefined;
  try {
    opened = await host.open(name, spec);
    const size = opened.device.info().size;
    if (size < mirror.info().size) {
      throw new ControlError(
        "impossible",
        `${name} holds ${formatSize(size)}; the mirror needs ${formatSize(mirror.info().size)}`,
      );
    }
    hosted = await host.host(name, opened.device);
    await mirror.act({
      action: "add-leg",
      leg: name,
      device: hosted,
      media: mediaOf(opened.device),
    });
    host.joined(mirrorName, mirror, name, opened);
  } catch (error) {
    // A leg the mirror took in before it failed goes out again (this closes its device).
    if (mirror.hasLeg(name)) {
      await mirror.act({ action: "remove-leg", leg: name }).catch(() => {});
    }
    if (hosted !== undefined) await hosted.close().catch(() => {});
    else await opened?.device.close().catch(() => {});
    if (opened?.created !== undefined) await Deno.remove(opened.created).catch(() => {});
    host.names.delete(name);
    if (path !== undefined) host.paths.delete(path);
    throw error;
  }
}

/** The maintenance API over the storage's mirrors, by node name. */
export function mirrorControl(
  mirrors: Map<string, Mirror>,
  legOf: Map<string, string>,
  host: LegHost,
  /** Mappings whose legs are fixed (parity), and why: adding or removing a leg is refused. */
  fixed: ReadonlyMap<string, string> = new Map(),
): StorageControl {
  const refuseFixed = (m: string) => {
    const why = fixed.get(m);
    if (why !== undefined) throw new ControlError("impossible", `${m}: ${why}`);
  };
  const mirrorOfLeg = (node: string): Mirror => {
    const m = mirrors.get(legOf.get(node) ?? "");
    if (m === undefined || !m.hasLeg(node)) {
      throw new ControlError(
        "unknown-node",
        `no mirror leg named "${node}" (legs: ${[...legOf.keys()].join(", ") || "none"})`,
      );
    }
    return m;
  };
  const mirrorNamed = (name: string): Mirror => {
    const m = mirrors.get(name);
    if (m === undefined) {
      throw new ControlError(
        "unknown-node",
        `no mirror named "${name}" (mirrors: ${[...mirrors.keys()].join(", ") || "none"})`,
      );
    }
    return m;
  };
  const act = async (
    what: () => Promise<ActionDone | void>,
    message?: string,
  ): Promise<ControlResult> => {
    let done: ActionDone | void;
    try {
      done = await what();
    } catch (error) {
      if (error instanceof ControlError) throw error;
      throw new ControlError("impossible", (error as Error).message);
    }
    return {
      ok: true as const,
      message: message ?? done?.message ?? "done",
      ...(done?.verify === undefined ? {} : { verify: done.verify }),
    };
  };
  const onLeg = (n: string, action: MirrorAction) => act(() => mirrorOfLeg(n).act(action));
  return {
    nodes: () => [...mirrors.keys(), ...legOf.keys()],
    suspend: (n) => onLeg(n, { action: "suspend", leg: n }),
    resume: (n) => onLeg(n, { action: "resume", leg: n }),
    clean: (n, force = false) => onLeg(n, { action: "clean", leg: n, force }),
    dirty: (n) => onLeg(n, { action: "dirty", leg: n }),
    addLeg: (m, n, spec) =>
      act(
        () => {
          refuseFixed(m);
          return addLegCleanly(host, m, mirrorNamed(m), n, parseLegSpec(n, spec));
        },
        `${n} added to ${m}: full resync`,
      ),
    removeLeg: (m, n) =>
      act(async () => {
        refuseFixed(m);
        const mirror = mirrorNamed(m);
        if (!mirror.hasLeg(n)) throw new ControlError("unknown-node", `${m} has no leg "${n}"`);
        await mirror.act({ action: "remove-leg", leg: n });
        legOf.delete(n);
        host.names.delete(n);
        for (const [path, holder] of host.paths) if (holder === n) host.paths.delete(path);
        host.removed(mirror, n);
      }, `${n} removed from ${m}`),
    verify: (m, repairFrom) =>
      act(() =>
        mirrorNamed(m).act({
          action: "verify",
          ...(repairFrom === undefined ? {} : { repairFrom }),
        })
      ),
  };
}

function parseLegSpec(name: string, spec: LegSpec): NodeSpec {
  try {
    const topology = parseTopology({
      storage: "m",
      nodes: { m: { kind: "mirror", legs: [name] }, [name]: spec },
    });
    return topology.nodes[name]!;
  } catch (error) {
    throw new ControlError("impossible", (error as Error).message);
  }
}
