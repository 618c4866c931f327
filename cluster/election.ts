/**
 * One active exporter per storage, elected through etcd (an existing engine: Debian's
 * `etcd-server`, the npm `etcd3` client). Each `dst serve --cluster` holds a lease; the one that
 * creates the storage's leader key (bound to its lease) is active, the others register as
 * standbys and wait for that key to go. When the active one's lease lapses — it crashed, hung or
 * was cut off — etcd deletes the key and a standby takes it.
 *
 * Epochs come from etcd and only grow: an elected exporter takes the next value of the storage's
 * epoch counter in a transaction that also checks it still holds the leader key, so no two
 * exporters ever hold the same epoch, and a later leader always holds a higher one. It may
 * raise the counter past an epoch a node holds (left by an embedded run), again only while
 * elected.
 *
 * The active exporter watches its own lease: once no keepalive has been confirmed for a whole
 * TTL, the lease may have lapsed and a standby may own the storage, so the term ends (`lost`)
 * even before etcd can be asked.
 */
import type { Etcd3, Lease } from "etcd3";

/**
 * The etcd client is loaded when an election is joined, never before: only `--cluster` needs it,
 * and an installed dst (one bundled file, deploy/install.ts) must not carry gRPC's CommonJS,
 * which a bundle cannot hold. The specifier is computed so bundlers leave it alone.
 */
const ETCD3 = ["npm:etcd3", "1.1.2"].join("@");
async function etcdClient(hosts: readonly string[]): Promise<Etcd3> {
  const { Etcd3: Client } = await import(ETCD3) as typeof import("etcd3");
  return new Client({ hosts: [...hosts], dialTimeout: 3000 });
}

/** Who runs for election. */
export interface Candidate {
  /** Unique per run (the exporter's owner id). */
  readonly id: string;
  readonly label: string;
}

export interface ElectionOptions {
  /** etcd client endpoints (http://HOST:PORT). */
  readonly hosts: readonly string[];
  /** The storage's key (one election per storage). */
  readonly key: string;
  /** Lease time to live, in whole seconds (at least 1). */
  readonly ttlSeconds: number;
  /** How long one etcd call may take before it counts as failed (default 5 s). */
  readonly callTimeoutMs?: number;
}

/** What etcd says about a storage's exporters. */
export interface ClusterView {
  readonly active?: Record<string, unknown>;
  readonly standbys: readonly Record<string, unknown>[];
  readonly epoch?: number;
}

/** The active exporter's time in office. */
export interface Term {
  /** The leader key's create revision in etcd. */
  readonly revision: number;
  /** The next epoch from etcd, above `past`; throws when this exporter is no longer elected. */
  nextEpoch(past: number): Promise<number>;
  /** Resolves (with why) once this exporter may no longer be the active one. */
  readonly lost: Promise<string>;
  /** Publishes where clients reach this exporter (NBD URIs, status) in the leader key. */
  publish(info: Record<string, unknown>): Promise<void>;
}

const enc = (value: unknown) => JSON.stringify(value);

export class Election {
  readonly #client: Etcd3;
  readonly #lease: Lease;
  readonly #options: ElectionOptions;
  readonly #candidate: Candidate;
  readonly #prefix: string;
  /** Fire times of keepalives not yet answered, oldest first; and the last one confirmed. */
  readonly #fired: number[] = [];
  #confirmed: number;
  #lost = Promise.withResolvers<string>();
  #isLost = false;
  #closed = false;

  private constructor(client: Etcd3, options: ElectionOptions, candidate: Candidate) {
    this.#client = client;
    this.#options = options;
    this.#candidate = candidate;
    this.#prefix = `/dst/${options.key}/`;
    this.#confirmed = Date.now();
    this.#lease = client.lease(options.ttlSeconds);
    this.#lease.on("keepaliveFired", () => this.#fired.push(Date.now()));
    this.#lease.on("keepaliveSucceeded", () => {
      const at = this.#fired.shift();
      if (at !== undefined) this.#confirmed = Math.max(this.#confirmed, at);
    });
    this.#lease.on("lost", (error) => this.#lose(`the lease was lost: ${error.message}`));
  }

  /** Connects and takes a lease; fails naming the cluster when etcd cannot be reached. */
  static async join(options: ElectionOptions, candidate: Candidate): Promise<Election> {
    if (!Number.isInteger(options.ttlSeconds) || options.ttlSeconds < 1) {
      throw new RangeError(`the lease time must be whole seconds, at least 1`);
    }
    const client = await etcdClient(options.hosts);
    const election = new Election(client, options, candidate);
    const before = Date.now();
    try {
      await election.#call("take a lease", election.#lease.grant());
    } catch (error) {
      await election.leave();
      throw error;
    }
    election.#confirmed = before;
    return election;
  }

  /** This candidate's lease id (for tests). */
  get leaseId(): Promise<string> {
    return this.#lease.grant();
  }

  /**
   * Waits until this candidate is the active exporter (registering as a standby meanwhile);
   * `stop` abandons the wait.
   */
  async campaign(stop?: AbortSignal): Promise<Term> {
    const leader = this.#prefix + "leader";
    const standby = this.#prefix + `standby/${this.#candidate.id}`;
    const id = await this.#lease.grant();
    const me = { id: this.#candidate.id, label: this.#candidate.label };
    for (;;) {
      if (stop?.aborted) throw new Error("stopped while standing by");
      if (this.#isLost) throw new Error(`cannot campaign: ${await this.#lost.promise}`);
      const txn = await this.#call(
        "campaign",
        this.#client.if(leader, "Create", "==", 0)
          .then(this.#client.put(leader).value(enc({ ...me, since: Date.now() })).lease(id))
          .commit(),
      );
      if (txn.succeeded) {
        await this.#call("leave the standbys", this.#client.delete().key(standby).exec());
        return this.#term(Number(txn.header.revision));
      }
      await this.#call(
        "register as a standby",
        this.#client.put(standby).value(enc({ ...me, since: Date.now() })).lease(id).exec(),
      );
      await this.#leaderGone(leader, stop);
    }
  }

  /** Resolves once the leader key is gone (watched, and polled in case a watch misses it). */
  async #leaderGone(leader: string, stop?: AbortSignal): Promise<void> {
    const watcher = await this.#client.watch().key(leader).create().catch(() => undefined);
    try {
      const gone = Promise.withResolvers<void>();
      watcher?.on("delete", () => gone.resolve());
      stop?.addEventListener("abort", () => gone.resolve(), { once: true });
      const poll = setInterval(() => {
        void this.#client.get(leader).exec().then(
          (r) => r.kvs.length === 0 && gone.resolve(),
          () => {},
        );
      }, 1000);
      try {
        await Promise.race([gone.promise, this.#lost.promise]);
      } finally {
        clearInterval(poll);
      }
    } finally {
      await watcher?.cancel().catch(() => {});
    }
  }

  #term(revision: number): Term {
    const leader = this.#prefix + "leader";
    const counter = this.#prefix + "epoch";
    const watchdog = setInterval(() => {
      const ttl = this.#options.ttlSeconds * 1000;
      if (Date.now() - this.#confirmed > ttl) {
        this.#lose(
          `no lease keepalive confirmed for ${
            Date.now() - this.#confirmed
          } ms (lease ${ttl} ms): ` +
            "it may have lapsed and a standby may own the storage",
        );
      }
    }, 100);
    void this.#lost.promise.then(() => clearInterval(watchdog));
    return {
      revision,
      lost: this.#lost.promise,
      nextEpoch: async (past) => {
        for (let attempt = 0; attempt < 16; attempt++) {
          const got = await this.#call("read the epoch", this.#client.get(counter).exec());
          const kv = got.kvs[0];
          const current = kv === undefined ? 0 : Number(kv.value.toString());
          const next = Math.max(Number.isSafeInteger(current) ? current : 0, past) + 1;
          const txn = await this.#call(
            "take the next epoch",
            this.#client.if(leader, "Create", "==", revision)
              .and(counter, "Mod", "==", kv === undefined ? 0 : Number(kv.mod_revision))
              .then(this.#client.put(counter).value(String(next)))
              .commit(),
          );
          if (txn.succeeded) return next;
          const still = await this.#call("read the leader", this.#client.get(leader).exec());
          if (Number(still.kvs[0]?.create_revision ?? 0) !== revision) {
            this.#lose("another exporter was elected");
            throw new Error("this exporter is no longer the elected one");
          }
        }
        throw new Error("the epoch counter kept changing under this exporter");
      },
      publish: async (info) => {
        const id = await this.#lease.grant();
        await this.#call(
          "publish",
          this.#client.if(leader, "Create", "==", revision)
            .then(
              this.#client.put(leader).value(
                enc({ id: this.#candidate.id, label: this.#candidate.label, ...info }),
              ).lease(id),
            ).commit(),
        );
      },
    };
  }

  /** The storage's active exporter, standbys and epoch, as etcd has them. */
  async view(): Promise<ClusterView> {
    const [leader, standbys, epoch] = await this.#call(
      "read the cluster",
      Promise.all([
        this.#client.get(this.#prefix + "leader").string(),
        this.#client.getAll().prefix(this.#prefix + "standby/").strings(),
        this.#client.get(this.#prefix + "epoch").string(),
      ]),
    );
    const parse = (text: string) => {
      try {
        return JSON.parse(text) as Record<string, unknown>;
      } catch {
        return { raw: text };
      }
    };
    return {
      ...(leader === null ? {} : { active: parse(leader) }),
      standbys: Object.values(standbys).map(parse),
      ...(epoch === null ? {} : { epoch: Number(epoch) }),
    };
  }

  /** Gives up the lease (the leader key and standby entry go with it) and disconnects. */
  async leave(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#lose("left the election");
    await Promise.race([
      this.#lease.revoke().catch(() => {}),
      new Promise((r) => setTimeout(r, 2000)),
    ]);
    this.#client.close();
  }

  #lose(why: string): void {
    if (this.#isLost) return;
    this.#isLost = true;
    this.#lost.resolve(why);
  }

  /** One etcd call, bounded, failing with what it was for and where etcd was looked for. */
  async #call<T>(what: string, call: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const limit = this.#options.callTimeoutMs ?? 5000;
    call.catch(() => {}); // a call that outlives its bound must not fail the process later
    try {
      return await Promise.race([
        call,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${limit} ms`)), limit);
        }),
      ]);
    } catch (error) {
      throw new Error(
        `etcd (${this.#options.hosts.join(", ")}): cannot ${what}: ${(error as Error).message}`,
      );
    } finally {
      clearTimeout(timer);
    }
  }
}
