/**
 * The NBD server: listens on TCP and Unix sockets, serves many named exports to many connections
 * at once, and shuts down gracefully (stop accepting, finish what is in flight, close). A broken
 * or vanished client ends its own connection only. What clients can make it hold is bounded
 * (see limits.ts): connections, handshakes, requests and their bytes per connection and in all;
 * connections over a cap are closed at once, logged once per burst. With TLS configured, clients
 * upgrade with NBD_OPT_STARTTLS during the handshake (see tls.ts for the modes).
 */
import { type Clock, systemClock, type Timer } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { silentLogger } from "../util/log.ts";
import { type ListenAddress, parseListenUrl } from "./address.ts";
import { Budget } from "./budget.ts";
import { Connection, type ConnectionContext } from "./connection.ts";
import type { NbdExport } from "./export.ts";
import { acceptLarge } from "./large_requests.ts";
import type { ExportTable } from "./handshake.ts";
import { type NbdLimits, resolveLimits } from "./limits.ts";
import { BufferPool } from "../util/buffer_pool.ts";
import type { NbdTls } from "./tls.ts";
import { removeStaleSocket } from "../transport/unix.ts";

export interface NbdServerOptions extends Partial<NbdLimits> {
  readonly exports: readonly NbdExport[];
  /** The export "" (the default export) means; the first export when not given. */
  readonly defaultExport?: string;
  readonly log?: Logger;
  /** Time for timeouts; the system clock unless a test drives it. */
  readonly clock?: Clock;
  /** TLS for clients (NBD_OPT_STARTTLS); plain text only when absent. */
  readonly tls?: NbdTls;
}

/** One bound socket; `address` has the real port when 0 was asked for. */
export interface BoundListener {
  readonly address: ListenAddress;
}

/** What the server holds now, for status and tests. */
export interface NbdServerStats {
  readonly connections: number;
  readonly handshaking: number;
  /** Requests read and not yet answered on the socket, over all connections. */
  readonly inFlight: number;
  readonly inFlightBytes: number;
  /** Connections closed at once because a cap was reached, since the server started. */
  readonly refused: number;
  readonly poolIdleBytes: number;
}

export class NbdServer implements ExportTable {
  readonly #exports = new Map<string, NbdExport>();
  readonly #default: string;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #limits: NbdLimits;
  readonly #shared: Budget;
  readonly #pool = new BufferPool();
  readonly #listeners = new Set<Deno.Listener>();
  readonly #connections = new Set<Connection>();
  readonly #accepting = new Set<Promise<void>>();
  readonly #context: ConnectionContext;
  #handshaking = 0;
  #refusedTotal = 0;
  /** Refusals since the last accepted connection: only the first of a burst is logged. */
  #refusedInBurst = 0;
  #watch: Timer | null = null;
  #stopping = false;

  constructor(options: NbdServerOptions) {
    if (options.exports.length === 0) throw new RangeError("an NBD server needs an export");
    for (const e of options.exports) {
      if (this.#exports.has(e.name)) throw new RangeError(`export "${e.name}" is listed twice`);
      // Clients may ask up to 64 MiB at once; larger than the device takes is cut in pieces.
      this.#exports.set(e.name, { ...e, device: acceptLarge(e.device) });
    }
    this.#default = options.defaultExport ?? options.exports[0]!.name;
    if (!this.#exports.has(this.#default)) {
      throw new RangeError(`default export "${this.#default}" is not among the exports`);
    }
    this.#log = options.log ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
    this.#limits = resolveLimits(options);
    // Counts are bounded per connection; the shared budget bounds bytes over all of them.
    this.#shared = new Budget(Number.MAX_SAFE_INTEGER, this.#limits.maxServerInFlightBytes);
    this.#context = {
      exports: this,
      limits: this.#limits,
      shared: this.#shared,
      pool: this.#pool,
      log: this.#log,
      clock: this.#clock,
      tls: options.tls,
      stopping: () => this.#stopping,
      handshakeOver: () => this.#handshaking--,
    };
  }

  find(name: string): NbdExport | undefined {
    return this.#exports.get(name === "" ? this.#default : name);
  }

  all(): readonly NbdExport[] {
    return [...this.#exports.values()];
  }

  /** Open connections (handshaking or transmitting). */
  get connections(): number {
    return this.#connections.size;
  }

  get limits(): NbdLimits {
    return this.#limits;
  }

  get stats(): NbdServerStats {
    return {
      connections: this.#connections.size,
      handshaking: this.#handshaking,
      inFlight: this.#shared.count,
      inFlightBytes: this.#shared.bytes,
      refused: this.#refusedTotal,
      poolIdleBytes: this.#pool.idleBytes,
    };
  }

  /** Binds `url` (tcp://HOST:PORT or unix:///PATH) and starts accepting. */
  async listen(url: string): Promise<BoundListener> {
    if (this.#stopping) throw new Error("the server is shutting down");
    const address = parseListenUrl(url);
    let listener: Deno.Listener;
    let bound: ListenAddress;
    if (address.transport === "unix") {
      await removeStaleSocket(address.path);
      listener = Deno.listen({ transport: "unix", path: address.path });
      bound = address;
    } else {
      listener = Deno.listen({ hostname: address.hostname, port: address.port });
      const local = listener.addr as Deno.NetAddr;
      bound = { transport: "tcp", hostname: address.hostname, port: local.port };
    }
    this.#listeners.add(listener);
    const accepting = this.#accept(listener);
    this.#accepting.add(accepting);
    accepting.finally(() => this.#accepting.delete(accepting));
    const tls = this.#context.tls;
    this.#log.log("info", "nbd server listening", {
      url,
      tls: tls === undefined ? "off" : tls.mode,
      ...(tls?.verifyClient ? { clientCertificates: "required" } : {}),
    });
    return { address: bound };
  }

  /**
   * Graceful shutdown: stops accepting, lets every connection finish the requests it has
   * received (later ones get ESHUTDOWN), then closes them. A client that takes none of its
   * replies is still dropped after the stall timeout, so shutdown cannot hang on it. Devices
   * stay open: their owner flushes and closes them.
   */
  async close(): Promise<void> {
    this.#stopping = true;
    for (const listener of this.#listeners) {
      try {
        listener.close();
      } catch {
        // already closed
      }
    }
    this.#listeners.clear();
    await Promise.all([...this.#accepting]);
    await Promise.all([...this.#connections].map((c) => c.shutdown()));
    this.#stopWatch();
  }

  async #accept(listener: Deno.Listener): Promise<void> {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (!this.#stopping) {
          this.#log.log("error", "nbd accept failed", { error: String(error) });
        }
        return;
      }
      if (this.#stopping) {
        close(conn);
        continue;
      }
      const refusal = this.#refusal();
      if (refusal !== null) {
        this.#refuse(conn, refusal);
        continue;
      }
      if (this.#refusedInBurst > 0) {
        this.#log.log("info", "nbd accepting connections again", {
          refused: this.#refusedInBurst,
        });
        this.#refusedInBurst = 0;
      }
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      const connection = new Connection(conn, this.#context, peerOf(conn));
      this.#connections.add(connection);
      this.#handshaking++;
      this.#startWatch();
      connection.serve().finally(() => {
        this.#connections.delete(connection);
        if (this.#connections.size === 0) this.#stopWatch();
      });
    }
  }

  /** Why a new connection must be refused now, or null. */
  #refusal(): string | null {
    const limits = this.#limits;
    if (this.#connections.size >= limits.maxConnections) {
      return `${this.#connections.size} connections are open, the most allowed ` +
        "(--nbd-max-connections)";
    }
    if (this.#handshaking >= limits.maxHandshakes) {
      return `${this.#handshaking} clients are in the handshake, the most allowed ` +
        "(--nbd-max-handshakes)";
    }
    return null;
  }

  #refuse(conn: Deno.Conn, reason: string): void {
    close(conn);
    this.#refusedTotal++;
    if (this.#refusedInBurst++ === 0) {
      this.#log.log("warn", `nbd connection refused: ${reason}`, {
        peer: peerOf(conn),
        note: "later refusals are counted, not logged, until a connection is accepted again",
      });
    }
  }

  /** Looks at every connection now and then, for stalls and idleness; only while there are any. */
  #startWatch(): void {
    if (this.#watch !== null) return;
    const limits = this.#limits;
    const shortest = limits.idleTimeoutMs > 0
      ? Math.min(limits.idleTimeoutMs, limits.stallTimeoutMs)
      : limits.stallTimeoutMs;
    const period = Math.min(1000, Math.max(10, shortest / 4));
    const tick = () => {
      const now = this.#clock.now();
      for (const connection of this.#connections) connection.watch(now);
      this.#watch = this.#connections.size > 0 ? this.#clock.setTimeout(tick, period) : null;
    };
    this.#watch = this.#clock.setTimeout(tick, period);
  }

  #stopWatch(): void {
    this.#watch?.cancel();
    this.#watch = null;
  }
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

function peerOf(conn: Deno.Conn): string {
  const addr = conn.remoteAddr;
  if (addr.transport === "tcp" || addr.transport === "udp") return `${addr.hostname}:${addr.port}`;
  return "unix";
}
