/**
 * Network namespaces for drills that cut links: each process gets its own namespace, and each
 * serve-to-leg link is a veth pair between two of them with a /30 from 10.213.0.0/16, so a link
 * can be taken down, slowed or made lossy (tc netem) without touching the host's interfaces.
 * Everything made here is removed by {@link Namespaces.remove}.
 */

/** Runs `ip`/`tc` (or anything) and throws with its stderr when it fails. */
export async function sh(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", stdin: "null" })
    .output();
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim() || out.code}`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}

/** Why namespaces cannot be used here, or undefined when they can (tried for real). */
export async function namespacesUnavailable(): Promise<string | undefined> {
  const probe = `dstprobe${Deno.pid}`;
  try {
    await sh("ip", ["netns", "add", probe]);
  } catch (error) {
    return `ip netns is not allowed here (${(error as Error).message})`;
  }
  await sh("ip", ["netns", "del", probe]).catch(() => {});
  return undefined;
}

/** Whether `tc qdisc ... netem` works (the sch_netem module may be missing). */
export async function netemUnavailable(ns: string, dev: string): Promise<string | undefined> {
  try {
    await sh("ip", ["netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "netem"]);
    await sh("ip", ["netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"]);
    return undefined;
  } catch (error) {
    return `tc netem is not available (${(error as Error).message})`;
  }
}

export interface VethLink {
  /** The parent (serve) side: interface name, namespace and address. */
  readonly parentDev: string;
  readonly parentNs: string;
  /** The leg side. */
  readonly legDev: string;
  readonly legNs: string;
  readonly legAddress: string;
}

export class Namespaces {
  readonly #made: string[] = [];
  /** Every link, and the first link of each leg (what netem shapes). */
  readonly #all: (VethLink & { parent: string; leg: string })[] = [];
  readonly #links = new Map<string, VethLink>();
  readonly #tag = String(Deno.pid % 10000);

  /** The namespace of a process. */
  nsOf(process: string): string {
    return `dstd${this.#tag}-${process}`;
  }

  async add(process: string): Promise<string> {
    const ns = this.nsOf(process);
    await sh("ip", ["netns", "add", ns]);
    this.#made.push(ns);
    await sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
    return ns;
  }

  /** Joins a leg's namespace to its parent's with a veth pair; returns the leg's address. */
  async link(parent: string, leg: string, index: number): Promise<VethLink> {
    const parentDev = `dv${this.#tag}x${index}p`;
    const legDev = `dv${this.#tag}x${index}l`;
    const parentNs = this.nsOf(parent);
    const legNs = this.nsOf(leg);
    await sh("ip", ["link", "add", parentDev, "type", "veth", "peer", "name", legDev]);
    await sh("ip", ["link", "set", parentDev, "netns", parentNs]);
    await sh("ip", ["link", "set", legDev, "netns", legNs]);
    const base = `10.213.${index}`;
    await sh("ip", ["-n", parentNs, "addr", "add", `${base}.1/30`, "dev", parentDev]);
    await sh("ip", ["-n", legNs, "addr", "add", `${base}.2/30`, "dev", legDev]);
    await sh("ip", ["-n", parentNs, "link", "set", parentDev, "up"]);
    await sh("ip", ["-n", legNs, "link", "set", legDev, "up"]);
    const link = { parentDev, parentNs, legDev, legNs, legAddress: `${base}.2` };
    if (!this.#links.has(leg)) this.#links.set(leg, link);
    this.#all.push({ ...link, parent, leg });
    return link;
  }

  linkOf(leg: string): VethLink {
    const link = this.#links.get(leg);
    if (link === undefined) throw new Error(`no link to ${leg}`);
    return link;
  }

  /** Takes both ends of the leg's links down (up again with `up`). */
  async setLink(leg: string, state: "up" | "down"): Promise<void> {
    this.linkOf(leg);
    for (const l of this.#all.filter((l) => l.leg === leg)) await this.#set(l, state);
  }

  /** Every link of `process`, as a parent or as a leg, down (cut off from all) or up. */
  async isolate(process: string, state: "up" | "down"): Promise<void> {
    const links = this.#all.filter((l) => l.leg === process || l.parent === process);
    if (links.length === 0) throw new Error(`no link to or from ${process}`);
    for (const l of links) await this.#set(l, state);
  }

  async #set(l: VethLink, state: "up" | "down"): Promise<void> {
    await sh("ip", ["-n", l.parentNs, "link", "set", l.parentDev, state]);
    await sh("ip", ["-n", l.legNs, "link", "set", l.legDev, state]);
  }

  /** Delay and loss on both directions of the leg's link; undefined clears them. */
  async netem(leg: string, shape: { delayMs?: number; lossPercent?: number } | undefined) {
    const l = this.linkOf(leg);
    for (const [ns, dev] of [[l.parentNs, l.parentDev], [l.legNs, l.legDev]] as const) {
      if (shape === undefined) {
        await sh("ip", ["netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"]);
        continue;
      }
      const args = ["netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "netem"];
      if (shape.delayMs !== undefined) args.push("delay", `${shape.delayMs}ms`);
      if (shape.lossPercent !== undefined) args.push("loss", `${shape.lossPercent}%`);
      await sh("ip", args);
    }
  }

  async remove(): Promise<void> {
    for (const ns of this.#made.splice(0)) await sh("ip", ["netns", "del", ns]).catch(() => {});
  }
}
