/**
 * A node's owner claims (fencing): an exporter claims the node with an epoch; the node keeps the
 * highest epoch it granted (durably, in its media's header) and from then on refuses every
 * change — write, trim, zero, flush, metadata — from a link that does not hold that grant, with
 * EFENCED. A claim with a higher epoch wins (compare-and-swap on the grant); it is answered only
 * once it is durable and every change admitted under an older grant has finished, so the new
 * owner never reads state an old owner is still changing. The same owner claiming its epoch
 * again (a reconnect) keeps it. A node nobody ever claimed admits changes from any link.
 *
 * Granting and admitting are decided synchronously when a request is taken off its link, so a
 * claim and the writes pipelined behind it on the same link are judged in the order sent.
 */
import { BlockError } from "../block/contract.ts";
import { describeGrant, type GrantStore, NO_GRANT, type OwnerGrant } from "../block/owner_grant.ts";

/**
 * How a node's goodbye to a fenced owner's link begins: the proxy takes it as a refusal of its
 * claim at once, instead of as a lost link (a hint only: the node refuses the changes anyway).
 */
export const FENCED_BYE = "fenced: this node now belongs to";

/** What one link holds: the grant of its last accepted claim. */
export interface LinkClaim {
  grant: OwnerGrant | undefined;
}

/** The node's answer to a claim: whether the link holds the grant now, and the node's grant. */
export interface ClaimAnswer {
  readonly granted: boolean;
  readonly current: OwnerGrant;
}

export interface ClaimStats {
  claims: number;
  /** Claims refused: an equal or higher epoch was granted already. */
  refusedClaims: number;
  /** Changes refused because their link did not hold the node's grant. */
  fencedRequests: number;
}

export function sameGrant(a: OwnerGrant | undefined, b: OwnerGrant): boolean {
  return a !== undefined && a.epoch === b.epoch && a.owner === b.owner;
}

/** A grant store that keeps the grant in memory only (a read-only node, a device without one). */
export function memoryGrants(initial: OwnerGrant = NO_GRANT): GrantStore {
  let grant = initial;
  return {
    ownerGrant: () => grant,
    storeOwnerGrant: (g) => {
      grant = g;
      return Promise.resolve();
    },
  };
}

interface Running {
  count: number;
  idle: (() => void)[];
}

export class ClaimBook {
  readonly stats: ClaimStats = { claims: 0, refusedClaims: 0, fencedRequests: 0 };
  readonly #store: GrantStore;
  readonly #node: string;
  #granted: OwnerGrant;
  /** The store of the newest grant, while it runs (changes under it wait for it). */
  #storing: Promise<void> | undefined;
  /** Changes admitted and not finished, by the epoch they were admitted under. */
  readonly #running = new Map<number, Running>();

  constructor(store: GrantStore, node: string) {
    this.#store = store;
    this.#node = node;
    this.#granted = store.ownerGrant();
  }

  /** The highest grant made (possibly still being stored). */
  get granted(): OwnerGrant {
    return this.#granted;
  }

  /**
   * `link` claims the node with `grant`. Decided now; answered once the grant is durable and
   * changes under older grants have finished.
   */
  claim(link: LinkClaim, grant: OwnerGrant): Promise<ClaimAnswer> {
    this.stats.claims++;
    const current = this.#granted;
    if (grant.epoch > current.epoch) {
      this.#granted = grant;
      link.grant = grant;
      const previous = this.#storing ?? Promise.resolve();
      const storing = previous.catch(() => {}).then(() => this.#store.storeOwnerGrant(grant));
      this.#storing = storing;
      void storing.catch(() => {}).finally(() => {
        if (this.#storing === storing) this.#storing = undefined;
      });
      return this.#settle(grant, storing);
    }
    if (sameGrant(grant, current)) {
      link.grant = grant;
      return this.#settle(grant, this.#storing);
    }
    this.stats.refusedClaims++;
    return Promise.resolve({ granted: false, current });
  }

  async #settle(grant: OwnerGrant, storing: Promise<void> | undefined): Promise<ClaimAnswer> {
    if (storing !== undefined) {
      await storing.catch((error) => {
        // A storage served as a node passes a claim down; its nodes may refuse it.
        if (error instanceof BlockError && error.code === "EFENCED") throw error;
        throw new BlockError(
          "EIO",
          `the claim at ${describeGrant(grant)} could not be stored: ${(error as Error).message}`,
        );
      });
    }
    await this.#drained(grant.epoch);
    return { granted: sameGrant(grant, this.#granted), current: this.#granted };
  }

  /** Resolves once no change admitted under an epoch below `epoch` is running. */
  async #drained(epoch: number): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const [e, r] of this.#running) {
      if (e < epoch && r.count > 0) waits.push(new Promise((resolve) => r.idle.push(resolve)));
    }
    await Promise.all(waits);
  }

  /**
   * Admits a change (`what`) from `link`: throws EFENCED when the link does not hold the node's
   * grant. Returns the release to call when the change has finished (or failed).
   */
  admit(link: LinkClaim, what: string): (() => void) | Promise<() => void> {
    const current = this.#granted;
    const free = current.epoch === 0 && link.grant === undefined;
    if (!free && !sameGrant(link.grant, current)) throw this.#fenced(link, what);
    if (this.#storing === undefined) return this.#enter(current.epoch);
    // The grant this link holds is still being stored: nothing is changed under it before.
    return this.#storing.then(() => {
      if (!sameGrant(link.grant, this.#granted)) throw this.#fenced(link, what);
      return this.#enter(current.epoch);
    }, () => {
      throw new BlockError("EIO", `${what}: the node could not store its owner grant`);
    });
  }

  #enter(epoch: number): () => void {
    let r = this.#running.get(epoch);
    if (r === undefined) this.#running.set(epoch, r = { count: 0, idle: [] });
    r.count++;
    const running = r;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--running.count > 0) return;
      this.#running.delete(epoch);
      for (const wake of running.idle.splice(0)) wake();
    };
  }

  #fenced(link: LinkClaim, what: string): BlockError {
    this.stats.fencedRequests++;
    const held = link.grant === undefined ? "no claim" : describeGrant(link.grant);
    return new BlockError(
      "EFENCED",
      `${what} refused: node ${this.#node} belongs to ${describeGrant(this.#granted)}; this ` +
        `exporter holds ${held} (a newer exporter took the storage over)`,
    );
  }
}
