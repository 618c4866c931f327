/**
 * An exporter's ownership of the nodes under it: one random owner id per exporter run, one epoch
 * claimed on every remote node (claim.ts), and the fenced state of the whole exporter once any
 * node says a newer owner holds it.
 *
 * Where the epoch comes from (an EpochSource): embedded (no cluster), epochs live on the nodes'
 * media alone: the first claim is epoch 1 and a node holding a higher one raises ours past it.
 * In a cluster (cluster/), the elected exporter takes its epoch from etcd, which raises it past
 * a node's only while this exporter is still the elected one. Either way, while the exporter
 * starts every node claimed so far is claimed again after a raise: the exporter that started
 * last wins, and the one it replaced is fenced. Once the storage serves (`hold`) the epoch is
 * fixed: a refusal then means this exporter is the stale one.
 * A storage served as a node follows its parent: a parent's claim with a higher epoch is passed
 * down to this exporter's nodes (`follow`), so a newer parent fences an older one all the way.
 */
import { BlockError } from "../block/contract.ts";
import { describeGrant, type GrantStore, NO_GRANT, type OwnerGrant } from "../block/owner_grant.ts";
import type { RemoteNode } from "./proxy.ts";

/** Something that happened to the ownership, for status. */
export interface OwnershipEvent {
  /** Milliseconds since the epoch. */
  readonly at: number;
  readonly what: string;
}

const MAX_EVENTS = 20;
/** Raises while starting before two exporters racing for the same nodes give up. */
const MAX_RAISES = 8;

function randomOwner(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** Where an exporter's epochs come from. */
export interface EpochSource {
  /** The epoch to claim with first. */
  readonly first: number;
  /** A new epoch above `past` (a node holds `past`); throws when this exporter may not. */
  raise(past: number): Promise<number>;
}

/** Embedded: epochs kept on the nodes alone. */
export const embeddedEpochs: EpochSource = { first: 1, raise: (past) => Promise.resolve(past + 1) };

export class Ownership {
  readonly owner = randomOwner();
  readonly label: string;
  readonly events: OwnershipEvent[] = [];
  readonly #source: EpochSource;
  #epoch: number;
  #held = false;
  #fenced: string | undefined;
  readonly #remotes = new Set<RemoteNode>();
  readonly #listeners: ((why: string) => void)[] = [];

  constructor(label: string, source: EpochSource = embeddedEpochs) {
    this.label = label.slice(0, 64);
    this.#source = source;
    this.#epoch = source.first;
  }

  get epoch(): number {
    return this.#epoch;
  }

  /** Why this exporter was fenced, once it is. */
  get fenced(): string | undefined {
    return this.#fenced;
  }

  /** The grant this exporter claims with. */
  grant(): OwnerGrant {
    return { epoch: this.#epoch, owner: this.owner, label: this.label };
  }

  /** Called once when the exporter is fenced. */
  onFenced(listener: (why: string) => void): void {
    if (this.#fenced !== undefined) listener(this.#fenced);
    else this.#listeners.push(listener);
  }

  /** Claims a node this exporter just connected to; throws EFENCED when a newer owner has it. */
  async attach(remote: RemoteNode): Promise<void> {
    this.#remotes.add(remote);
    for (let raises = 0;; raises++) {
      const grant = this.grant();
      const answer = await remote.claim(grant);
      if (answer.granted) return;
      if (this.#held || raises >= MAX_RAISES) {
        const why = `node ${remote.url} belongs to ${describeGrant(answer.current)}, newer ` +
          `than this exporter's ${describeGrant(grant)}`;
        this.fence(why);
        throw new BlockError("EFENCED", why);
      }
      await this.#raise(await this.#source.raise(answer.current.epoch));
    }
  }

  /** Tracks a node not reached yet: its proxy claims with `grant()` when it first connects. */
  track(remote: RemoteNode): void {
    this.#remotes.add(remote);
  }

  /** The storage serves: the epoch is fixed from now on. */
  hold(): void {
    this.#held = true;
    this.#event(`holds epoch ${this.#epoch} on ${this.#remotes.size} node(s)`);
  }

  /**
   * A parent claimed the storage this exporter serves as a node with `epoch`: its nodes are
   * claimed with it when it is higher than ours. Throws EFENCED when a node refuses (another
   * exporter of these nodes follows a newer parent).
   */
  async follow(epoch: number): Promise<void> {
    if (this.#fenced !== undefined) throw new BlockError("EFENCED", this.#fenced);
    if (epoch <= this.#epoch) return;
    this.#epoch = epoch;
    this.#event(`follows its parent to epoch ${epoch}`);
    await this.#claimAll();
  }

  /** The exporter is fenced (a node refused it, or it lost its election): tell everyone once. */
  fence(why: string): void {
    if (this.#fenced !== undefined) return;
    this.#fenced = why;
    this.#event(`fenced: ${why}`);
    for (const listener of this.#listeners.splice(0)) listener(why);
  }

  async #raise(epoch: number): Promise<void> {
    this.#epoch = epoch;
    this.#event(`raised its epoch to ${epoch} past a node's`);
    await this.#claimAll();
  }

  /** Claims every connected node again with the current grant (the others claim on connect). */
  async #claimAll(): Promise<void> {
    const grant = this.grant();
    const answers = await Promise.all([...this.#remotes].map(async (remote) => {
      if (remote.state !== "connected") return undefined;
      return { remote, answer: await remote.claim(grant).catch(() => undefined) };
    }));
    for (const a of answers) {
      if (a?.answer === undefined || a.answer.granted) continue;
      const why = `node ${a.remote.url} belongs to ${describeGrant(a.answer.current)}`;
      this.fence(why);
      throw new BlockError("EFENCED", why);
    }
  }

  #event(what: string): void {
    this.events.push({ at: Date.now(), what });
    if (this.events.length > MAX_EVENTS) this.events.shift();
  }
}

/**
 * The grant store of a storage served as a node: a parent's claim is kept in memory (the
 * storage has no media of its own) and passed down to the storage's nodes by `follow`.
 */
export function parentGrants(ownership: Ownership): GrantStore {
  let parent: OwnerGrant = NO_GRANT;
  return {
    ownerGrant: () => parent,
    storeOwnerGrant: async (grant) => {
      await ownership.follow(grant.epoch);
      parent = grant;
    },
  };
}
