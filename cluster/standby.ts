/**
 * A `dst serve --cluster` before it serves: it joins the storage's election, stands by while
 * another exporter is active, and once elected takes its epoch from etcd and returns the
 * Ownership to claim the legs with. The term's end (a lapsed or lost lease) fences that
 * ownership, so the storage stops acknowledging at once; the nodes fence it anyway once the
 * next exporter claims them.
 */
import { type EpochSource, Ownership } from "../actors/node/owner.ts";
import type { Logger } from "../util/log.ts";
import { type ClusterView, Election, type Term } from "./election.ts";

export interface ClusterPlan {
  /** etcd client endpoints. */
  readonly hosts: readonly string[];
  /** The storage's election key. */
  readonly key: string;
  readonly ttlSeconds: number;
}

export interface Elected {
  readonly election: Election;
  readonly term: Term;
  readonly ownership: Ownership;
  /** The cluster as etcd last showed it (refreshed in the background), for status. */
  view(): ClusterView | undefined;
  /** Stops the refreshing and leaves the election (a standby takes over at once). */
  leave(): Promise<void>;
}

/**
 * Joins the election and waits to be elected; undefined when `stop` came first. `standing`
 * is told once this exporter is registered as a candidate.
 */
export async function whenElected(
  plan: ClusterPlan,
  label: string,
  log: Logger,
  stop: AbortSignal,
  standing: () => void,
): Promise<Elected | undefined> {
  const id = Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const election = await Election.join(
    { hosts: plan.hosts, key: plan.key, ttlSeconds: plan.ttlSeconds },
    { id, label },
  );
  standing();
  log.log("info", "standing by: waiting to be the active exporter", {
    key: plan.key,
    etcd: plan.hosts.join(","),
    leaseSeconds: plan.ttlSeconds,
  });
  let term: Term;
  try {
    term = await election.campaign(stop);
  } catch (error) {
    await election.leave();
    if (stop.aborted) return undefined;
    throw error;
  }
  const first = await term.nextEpoch(0);
  const source: EpochSource = { first, raise: (past) => term.nextEpoch(past) };
  const ownership = new Ownership(label, source);
  log.log("info", "elected: the active exporter of the storage", {
    key: plan.key,
    epoch: first,
    revision: term.revision,
  });
  let leaving = false;
  // Leaving at a stop ends the term too; that is not a fencing.
  void term.lost.then((why) => leaving || ownership.fence(`lost the election: ${why}`));
  let view: ClusterView | undefined;
  const refresh = () => void election.view().then((v) => (view = v), () => {});
  refresh();
  const timer = setInterval(refresh, 2000);
  return {
    election,
    term,
    ownership,
    view: () => view,
    leave: async () => {
      leaving = true;
      clearInterval(timer);
      await election.leave();
    },
  };
}
