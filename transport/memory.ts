/**
 * In-process transport, `mem://NAME`, for tests and simulation: pipes between duplexes with
 * seeded fault injection (drop, duplicate, delay, reorder, reset, partition, bit flips). Faults
 * apply per write unit, which is frame-aligned because the link hands whole frames to `writev`.
 * A simulation gives each connection's direction its own faults (`faultsFor`), names the process
 * that dials (`MemoryTransport`'s `from`), and crashes a process's every connection at once.
 */

import type { Clock, Timer } from "../util/clock.ts";
import { systemClock } from "../util/clock.ts";
import type { Random } from "../util/random.ts";
import { SeededRandom } from "../util/random.ts";
import type { Duplex, Listener, Transport } from "./types.ts";
import { afterScheme } from "./url.ts";

/** What goes wrong on the network; tests change the fields while links run. */
export interface Faults {
  /** Probability that a write unit vanishes. */
  drop: number;
  /** Latency added to every unit (order kept unless reordered). */
  delayMs: number;
  /** Up to this much more latency, drawn per unit. */
  delayJitterMs: number;
  /** Probability that a unit is held back and delivered after the next one (or a bit late). */
  reorder: number;
  /** Probability that a unit is delivered twice. */
  duplicate: number;
  /** Probability that a write resets the connection (both ends fail). */
  reset: number;
  /** Probability that one bit of a unit is flipped. */
  corrupt: number;
  /** While true, every unit vanishes and new connections are refused. */
  partitioned: boolean;
}

/** A Faults object with nothing going wrong. */
export function noFaults(): Faults {
  return {
    drop: 0,
    delayMs: 0,
    delayJitterMs: 0,
    reorder: 0,
    duplicate: 0,
    reset: 0,
    corrupt: 0,
    partitioned: false,
  };
}

export interface MemoryNetworkOptions {
  readonly seed?: number;
  readonly random?: Random;
  readonly clock?: Clock;
  readonly faults?: Partial<Faults>;
  /** Bytes buffered per direction before writes wait for the reader. Default 4 MiB. */
  readonly pipeBytes?: number;
  /**
   * The faults of units written by one end of a connection from `from` (the dialing process,
   * when named) to the listener `to`; default: the network's `faults` for every connection.
   * The objects are read on every write, so changing them changes live connections.
   */
  readonly faultsFor?: (from: string | undefined, to: string, end: "dialer" | "listener") => Faults;
}

/** The error a read or write gets after an (injected or requested) reset. */
export class ConnectionResetError extends Error {
  override readonly name = "ConnectionResetError";
}

/** One direction of a connection. */
class Pipe {
  readonly #units: Uint8Array[] = [];
  #offset = 0;
  #bytes = 0;
  #ended = false;
  #error: Error | undefined;
  #readable: (() => void) | undefined;
  #writable: (() => void)[] = [];
  held: Uint8Array | undefined;
  lastDeliverAt = 0;
  readonly timers = new Set<Timer>();

  constructor(readonly limit: number) {}

  get bytes(): number {
    return this.#bytes;
  }

  get broken(): Error | undefined {
    return this.#error ?? (this.#ended ? new ConnectionResetError("broken pipe") : undefined);
  }

  push(unit: Uint8Array): void {
    if (this.#ended || this.#error !== undefined || unit.length === 0) return;
    this.#units.push(unit);
    this.#bytes += unit.length;
    this.#wakeReader();
  }

  async waitForSpace(size: number): Promise<void> {
    while (this.#bytes > 0 && this.#bytes + size > this.limit && this.broken === undefined) {
      await new Promise<void>((resolve) => this.#writable.push(resolve));
    }
  }

  async read(into: Uint8Array): Promise<number | null> {
    while (this.#bytes === 0) {
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#readable = resolve));
    }
    if (this.#error !== undefined) throw this.#error;
    let done = 0;
    while (done < into.length && this.#units.length > 0) {
      const unit = this.#units[0]!;
      const n = Math.min(into.length - done, unit.length - this.#offset);
      into.set(unit.subarray(this.#offset, this.#offset + n), done);
      done += n;
      this.#offset += n;
      if (this.#offset === unit.length) {
        this.#units.shift();
        this.#offset = 0;
      }
    }
    this.#bytes -= done;
    const writers = this.#writable;
    this.#writable = [];
    for (const wake of writers) wake();
    return done;
  }

  /** No more data will come; the reader gets what is buffered, then end of stream. */
  end(): void {
    this.#ended = true;
    this.#stopTimers();
    this.#wakeAll();
  }

  /** Fails both the reader and writers at once, dropping what is buffered. */
  fail(error: Error): void {
    if (this.#error === undefined) this.#error = error;
    this.#units.length = 0;
    this.#bytes = 0;
    this.#stopTimers();
    this.#wakeAll();
  }

  #stopTimers(): void {
    for (const timer of this.timers) timer.cancel();
    this.timers.clear();
    this.held = undefined;
  }

  #wakeReader(): void {
    const wake = this.#readable;
    this.#readable = undefined;
    wake?.();
  }

  #wakeAll(): void {
    this.#wakeReader();
    const writers = this.#writable;
    this.#writable = [];
    for (const wake of writers) wake();
  }
}

/** One end of an in-memory connection. */
class MemoryDuplex implements Duplex {
  #closed = false;
  peer: MemoryDuplex | undefined;

  constructor(
    readonly network: MemoryNetwork,
    readonly inbound: Pipe,
    readonly outbound: Pipe,
    readonly remote: string,
    /** What goes wrong with the units this end writes. */
    readonly faults: Faults,
    /** The dialing process (when named) and the listener's name: who this connection joins. */
    readonly from: string | undefined,
    readonly to: string,
  ) {}

  read(into: Uint8Array): Promise<number | null> {
    if (this.#closed) return Promise.resolve(null);
    return this.inbound.read(into);
  }

  write(data: Uint8Array): Promise<void> {
    return this.writev([data]);
  }

  async writev(chunks: readonly Uint8Array[]): Promise<void> {
    const broken = this.#closed
      ? new ConnectionResetError("write on a closed connection")
      : this.outbound.broken;
    if (broken !== undefined) throw broken;
    const network = this.network;
    const faults = this.faults;
    if (faults.partitioned) return;
    if (faults.reset > 0 && network.chance(faults.reset)) {
      this.reset("connection reset (injected fault)");
      throw new ConnectionResetError("connection reset (injected fault)");
    }
    if (faults.drop > 0 && network.chance(faults.drop)) return;
    let size = 0;
    for (const chunk of chunks) size += chunk.length;
    // A copy: the writer may reuse its buffers once this resolves.
    const unit = new Uint8Array(size);
    let at = 0;
    for (const chunk of chunks) {
      unit.set(chunk, at);
      at += chunk.length;
    }
    if (size > 0 && faults.corrupt > 0 && network.chance(faults.corrupt)) {
      const bit = Math.floor(network.random.next() * size * 8);
      unit[bit >>> 3]! ^= 1 << (bit & 7);
    }
    const pipe = this.outbound;
    await pipe.waitForSpace(size);
    const late = pipe.broken;
    if (late !== undefined) throw late;
    if (faults.reorder > 0 && pipe.held === undefined && network.chance(faults.reorder)) {
      pipe.held = unit;
      // Overtaken by the next unit, or delivered late if none comes (a stream waiting for it
      // would otherwise wait forever).
      const timer = network.clock.setTimeout(() => {
        pipe.timers.delete(timer);
        if (pipe.held !== unit) return;
        pipe.held = undefined;
        this.#deliver(unit);
      }, faults.delayMs + faults.delayJitterMs + 1);
      pipe.timers.add(timer);
      return;
    }
    this.#deliver(unit);
    if (faults.duplicate > 0 && network.chance(faults.duplicate)) this.#deliver(unit);
    if (pipe.held !== undefined) {
      const held = pipe.held;
      pipe.held = undefined;
      this.#deliver(held);
    }
  }

  #deliver(unit: Uint8Array): void {
    const pipe = this.outbound;
    const faults = this.faults;
    const clock = this.network.clock;
    const now = clock.now();
    if (faults.delayMs <= 0 && faults.delayJitterMs <= 0 && pipe.lastDeliverAt <= now) {
      pipe.push(unit);
      return;
    }
    const jitter = faults.delayJitterMs > 0 ? this.network.random.next() * faults.delayJitterMs : 0;
    const at = Math.max(now + faults.delayMs + jitter, pipe.lastDeliverAt);
    pipe.lastDeliverAt = at;
    const timer = clock.setTimeout(() => {
      pipe.timers.delete(timer);
      pipe.push(unit);
    }, at - now);
    pipe.timers.add(timer);
  }

  /** Breaks both directions for both ends, as a TCP reset does. */
  reset(reason = "connection reset"): void {
    const error = new ConnectionResetError(reason);
    this.inbound.fail(error);
    this.outbound.fail(error);
    this.network.forget(this);
    if (this.peer !== undefined) this.network.forget(this.peer);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // The peer reads what is in flight, then end of stream; our pending read ends now.
    this.outbound.end();
    this.inbound.fail(new ConnectionResetError("connection closed by the peer"));
    this.network.forget(this);
  }
}

class MemoryListener implements Listener {
  readonly #accepted: Duplex[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(readonly url: string, readonly onClose: () => void) {}

  offer(duplex: Duplex): void {
    this.#accepted.push(duplex);
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Duplex> {
    for (;;) {
      while (this.#accepted.length === 0) {
        if (this.#closed) return;
        await new Promise<void>((resolve) => (this.#wake = resolve));
      }
      yield this.#accepted.shift()!;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const duplex of this.#accepted.splice(0)) duplex.close();
    this.onClose();
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** A set of in-memory endpoints sharing one clock, one seeded random source and one Faults. */
export class MemoryNetwork {
  readonly faults: Faults;
  readonly random: Random;
  readonly clock: Clock;
  readonly #pipeBytes: number;
  readonly #faultsFor: MemoryNetworkOptions["faultsFor"];
  readonly #listeners = new Map<string, MemoryListener>();
  readonly #open = new Set<MemoryDuplex>();
  #connections = 0;

  constructor(options: MemoryNetworkOptions = {}) {
    this.faults = { ...noFaults(), ...options.faults };
    this.random = options.random ?? new SeededRandom(options.seed ?? 1);
    this.clock = options.clock ?? systemClock;
    this.#pipeBytes = options.pipeBytes ?? 4 * 1024 * 1024;
    this.#faultsFor = options.faultsFor;
  }

  /** True with probability `p`, from the seeded source. */
  chance(p: number): boolean {
    return this.random.next() < p;
  }

  listen(url: string): MemoryListener {
    const name = afterScheme(url, "mem");
    if (this.#listeners.has(name)) throw new Error(`${url}: address already in use`);
    const listener = new MemoryListener(url, () => this.#listeners.delete(name));
    this.#listeners.set(name, listener);
    return listener;
  }

  /** Connects to `url`; `from` names the dialing process (see `faultsFor` and `crash`). */
  connect(url: string, from?: string): Duplex {
    const name = afterScheme(url, "mem");
    const listener = this.#listeners.get(name);
    if (listener === undefined) {
      throw new Error(`${url}: connection refused (nothing listens there)`);
    }
    const dialer = this.#faultsFor?.(from, name, "dialer") ?? this.faults;
    if (dialer.partitioned) throw new Error(`${url}: unreachable (network partitioned)`);
    const accepter = this.#faultsFor?.(from, name, "listener") ?? this.faults;
    const n = ++this.#connections;
    const toServer = new Pipe(this.#pipeBytes);
    const toClient = new Pipe(this.#pipeBytes);
    const client = new MemoryDuplex(this, toClient, toServer, url, dialer, from, name);
    const server = new MemoryDuplex(
      this,
      toServer,
      toClient,
      `${url}#${from ?? "client"}-${n}`,
      accepter,
      from,
      name,
    );
    client.peer = server;
    server.peer = client;
    this.#open.add(client);
    this.#open.add(server);
    listener.offer(server);
    return client;
  }

  /** Resets every open connection (both ends see a reset). */
  resetAll(reason = "connection reset"): void {
    for (const duplex of [...this.#open]) duplex.reset(reason);
  }

  /** Resets every open connection between process `a` (as dialer) and listener `b`, or back. */
  resetBetween(a: string, b: string, reason = "connection reset"): void {
    for (const duplex of [...this.#open]) {
      if ((duplex.from === a && duplex.to === b) || (duplex.from === b && duplex.to === a)) {
        duplex.reset(reason);
      }
    }
  }

  /**
   * A process died: every connection it dialed or accepted (on the listener of its name) is
   * reset, and that listener is gone. Nothing it sent and nobody read yet is delivered.
   */
  crash(name: string): void {
    for (const duplex of [...this.#open]) {
      if (duplex.from === name || duplex.to === name) duplex.reset(`${name} crashed`);
    }
    this.#listeners.get(name)?.close();
  }

  /** Open connection ends, for tests. */
  get openConnections(): number {
    return this.#open.size;
  }

  /** @internal */
  forget(duplex: MemoryDuplex): void {
    this.#open.delete(duplex);
  }
}

/** The mem:// Transport over one MemoryNetwork. */
export class MemoryTransport implements Transport {
  readonly scheme = "mem";

  /** `from`: the name of the process that dials through this transport (a simulation's). */
  constructor(
    readonly network: MemoryNetwork = defaultMemoryNetwork,
    readonly from?: string,
  ) {}

  connect(url: string): Promise<Duplex> {
    try {
      return Promise.resolve(this.network.connect(url, this.from));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  listen(url: string): Promise<Listener> {
    try {
      return Promise.resolve(this.network.listen(url));
    } catch (error) {
      return Promise.reject(error);
    }
  }
}

/** The process-wide network that `mem://` URLs reach unless another is given. */
export const defaultMemoryNetwork: MemoryNetwork = new MemoryNetwork();
