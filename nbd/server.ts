/**
 * The NBD server: listens on TCP and Unix sockets, serves many named exports to many connections
 * at once, and shuts down gracefully (stop accepting, finish what is in flight, close). A broken
 * or vanished client ends its own connection only.
 */
import type { Logger } from "../util/log.ts";
import { silentLogger } from "../util/log.ts";
import { type ListenAddress, parseListenUrl } from "./address.ts";
import type { NbdExport } from "./export.ts";
import { type ExportTable, HandshakeError, negotiate } from "./handshake.ts";
import { BufferPool } from "./pool.ts";
import { Session } from "./session.ts";
import { type ByteStream, StreamReader, StreamWriter, TruncatedError } from "./stream.ts";

export interface NbdServerOptions {
  readonly exports: readonly NbdExport[];
  /** The export "" (the default export) means; the first export when not given. */
  readonly defaultExport?: string;
  readonly log?: Logger;
  /** Most requests running at once per connection (default 64). */
  readonly maxInFlight?: number;
  /** Most payload bytes held by running requests per connection (default 64 MiB). */
  readonly maxInFlightBytes?: number;
  /** Longest a client may take to finish the handshake (default 30 s). */
  readonly handshakeTimeoutMs?: number;
}

/** One bound socket; `address` has the real port when 0 was asked for. */
export interface BoundListener {
  readonly address: ListenAddress;
}

export class NbdServer implements ExportTable {
  readonly #exports = new Map<string, NbdExport>();
  readonly #default: string;
  readonly #log: Logger;
  readonly #pool = new BufferPool();
  readonly #listeners = new Set<Deno.Listener>();
  readonly #connections = new Set<Connection>();
  readonly #accepting = new Set<Promise<void>>();
  readonly #maxInFlight: number;
  readonly #maxInFlightBytes: number;
  readonly #handshakeTimeoutMs: number;
  #stopping = false;

  constructor(options: NbdServerOptions) {
    if (options.exports.length === 0) throw new RangeError("an NBD server needs an export");
    for (const e of options.exports) {
      if (this.#exports.has(e.name)) throw new RangeError(`export "${e.name}" is listed twice`);
      this.#exports.set(e.name, e);
    }
    this.#default = options.defaultExport ?? options.exports[0]!.name;
    if (!this.#exports.has(this.#default)) {
      throw new RangeError(`default export "${this.#default}" is not among the exports`);
    }
    this.#log = options.log ?? silentLogger;
    this.#maxInFlight = options.maxInFlight ?? 64;
    this.#maxInFlightBytes = options.maxInFlightBytes ?? 64 * 1024 * 1024;
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? 30_000;
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
    this.#log.log("info", "nbd server listening", { url });
    return { address: bound };
  }

  /**
   * Graceful shutdown: stops accepting, lets every connection finish the requests it has
   * received (later ones get ESHUTDOWN), then closes them. Devices stay open: their owner
   * flushes and closes them.
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
        conn.close();
        continue;
      }
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      const connection = new Connection(conn, this);
      this.#connections.add(connection);
      connection.serve().finally(() => this.#connections.delete(connection));
    }
  }

  /** @internal used by connections */
  get settings() {
    return {
      pool: this.#pool,
      log: this.#log,
      maxInFlight: this.#maxInFlight,
      maxInFlightBytes: this.#maxInFlightBytes,
      handshakeTimeoutMs: this.#handshakeTimeoutMs,
      stopping: () => this.#stopping,
    };
  }
}

/** One client connection: handshake, then a transmission session. */
class Connection {
  readonly #stream: ByteStream;
  readonly #server: NbdServer;
  #session: Session | null = null;
  #closed = false;

  constructor(stream: ByteStream, server: NbdServer) {
    this.#stream = stream;
    this.#server = server;
  }

  async serve(): Promise<void> {
    const settings = this.#server.settings;
    const reader = new StreamReader(this.#stream);
    const writer = new StreamWriter(this.#stream);
    const timer = setTimeout(() => {
      settings.log.log("warn", "nbd handshake timed out");
      this.#close();
    }, settings.handshakeTimeoutMs);
    let negotiated;
    try {
      negotiated = await negotiate(reader, writer, this.#server, { stopping: settings.stopping });
    } catch (error) {
      if (error instanceof HandshakeError) {
        settings.log.log("warn", "nbd handshake refused", { reason: error.message });
      } else if (!(error instanceof TruncatedError) && !this.#closed) {
        settings.log.log("debug", "nbd handshake failed", { error: String(error) });
      }
      negotiated = null;
    } finally {
      clearTimeout(timer);
    }
    if (negotiated === null || this.#closed) {
      await writer.drained();
      this.#close();
      return;
    }
    this.#session = new Session(this.#stream, reader, writer, negotiated, settings);
    const end = await this.#session.run();
    this.#closed = true;
    settings.log.log("debug", "nbd connection ended", { end });
  }

  async shutdown(): Promise<void> {
    if (this.#session) await this.#session.shutdown();
    else this.#close();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#stream.close();
    } catch {
      // already closed
    }
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  try {
    const stat = await Deno.lstat(path);
    if (stat.isSocket) await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}
