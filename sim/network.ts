/**
 * The simulated network: the in-memory transport with faults per connection direction, drawn
 * per seed (swarm testing: each seed its own rates). Requests keep their order on a connection
 * (a stream never reorders them); replies may be reordered, as a server answers in any order.
 * Partitions between two processes silence both directions until they heal; link resets and
 * crashes cut connections at once.
 */
import { type Faults, MemoryNetwork, MemoryTransport, noFaults } from "../transport/memory.ts";
import type { Duplex, Listener, Transport } from "../transport/types.ts";
import type { Clock } from "../util/clock.ts";
import type { Rng } from "./rng.ts";

/** The per-seed rates of network faults. */
export interface NetworkRates {
  readonly drop: number;
  readonly duplicate: number;
  /** Replies only. */
  readonly reorder: number;
  readonly delayMs: number;
  readonly delayJitterMs: number;
  readonly reset: number;
  readonly corrupt: number;
}

export const CALM: NetworkRates = {
  drop: 0,
  duplicate: 0,
  reorder: 0,
  delayMs: 0,
  delayJitterMs: 0,
  reset: 0,
  corrupt: 0,
};

/**
 * Draws a seed's rates: each fault on or off, and how much. Bit flips only with `gaps`: one in
 * a frame's length prefix desyncs a link for good (gaps.ts, `frame-desync`).
 */
export function drawRates(rng: Rng, gaps = false): NetworkRates {
  const on = (p: number) => rng.chance(p);
  return {
    drop: on(0.3) ? rng.range(0.0005, 0.01) : 0,
    duplicate: on(0.3) ? rng.range(0.001, 0.05) : 0,
    reorder: on(0.3) ? rng.range(0.01, 0.2) : 0,
    delayMs: on(0.6) ? rng.range(0.05, 3) : 0,
    delayJitterMs: on(0.5) ? rng.range(0.1, 5) : 0,
    reset: on(0.2) ? rng.range(0.0002, 0.003) : 0,
    corrupt: on(0.15) && gaps ? rng.range(0.0002, 0.003) : 0,
  };
}

interface Pair {
  readonly request: Faults;
  readonly reply: Faults;
}

export class SimNetwork {
  readonly memory: MemoryNetwork;
  readonly #pairs = new Map<string, Pair>();
  /** Pairs whose links never lose, delay or cut a message (see gaps.ts). */
  readonly #calm = new Set<string>();
  #rates: NetworkRates;

  constructor(clock: Clock, random: Rng, rates: NetworkRates) {
    this.#rates = rates;
    this.memory = new MemoryNetwork({
      clock,
      random,
      faultsFor: (from, to, end) => {
        const pair = this.#pair(from ?? "?", to);
        return end === "dialer" ? pair.request : pair.reply;
      },
    });
  }

  get rates(): NetworkRates {
    return this.#rates;
  }

  /** Sets every pair's rates (partitions stay as they are). */
  setRates(rates: NetworkRates): void {
    this.#rates = rates;
    for (const [key, pair] of this.#pairs) this.#apply(pair, key);
  }

  /** The links between two processes stay free of message faults (partitions still apply). */
  calm(a: string, b: string): void {
    this.#calm.add(`${a}>${b}`);
    this.#calm.add(`${b}>${a}`);
    for (const key of [`${a}>${b}`, `${b}>${a}`]) {
      const pair = this.#pairs.get(key);
      if (pair !== undefined) this.#apply(pair, key);
    }
  }

  /** Silences (or heals) both directions between two processes. */
  partition(a: string, b: string, on: boolean): void {
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const pair = this.#pair(from, to);
      pair.request.partitioned = on;
      pair.reply.partitioned = on;
    }
  }

  /** Ends every partition. */
  healAll(): void {
    for (const pair of this.#pairs.values()) {
      pair.request.partitioned = false;
      pair.reply.partitioned = false;
    }
  }

  /** Resets the connections between two processes. */
  reset(a: string, b: string): void {
    this.memory.resetBetween(a, b, "connection reset (injected fault)");
  }

  /** A process died: its connections are reset, its listener gone. */
  crash(name: string): void {
    this.memory.crash(name);
  }

  /** The transport a process dials and listens with; refused once `alive()` is false. */
  transport(name: string, alive: () => boolean): Transport {
    const inner = new MemoryTransport(this.memory, name);
    const dead = () => Promise.reject(new Error(`${name} is not running`));
    return {
      scheme: "mem",
      connect: (url: string): Promise<Duplex> => alive() ? inner.connect(url) : dead(),
      listen: (url: string): Promise<Listener> => alive() ? inner.listen(url) : dead(),
    };
  }

  #pair(from: string, to: string): Pair {
    const key = `${from}>${to}`;
    let pair = this.#pairs.get(key);
    if (pair === undefined) {
      pair = { request: noFaults(), reply: noFaults() };
      this.#apply(pair, key);
      this.#pairs.set(key, pair);
    }
    return pair;
  }

  #apply(pair: Pair, key: string): void {
    const r = this.#calm.has(key) ? CALM : this.#rates;
    for (const f of [pair.request, pair.reply]) {
      f.drop = r.drop;
      f.duplicate = r.duplicate;
      f.delayMs = r.delayMs;
      f.delayJitterMs = r.delayJitterMs;
      f.reset = r.reset;
      f.corrupt = r.corrupt;
    }
    pair.request.reorder = 0;
    pair.reply.reorder = r.reorder;
  }
}
