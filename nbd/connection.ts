/**
 * One NBD client connection: the handshake (bounded in time, TLS upgrade included), then a
 * transmission session, and
 * the watch the server keeps on it between requests: a client that takes none of its replies
 * for the stall timeout is dropped, and one that sends nothing with nothing in flight for the
 * idle timeout is closed. Both are judged from progress counters the server samples, so the
 * data path pays nothing for them.
 */
import type { Clock, Timer } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { Budget } from "./budget.ts";
import { type ExportTable, HandshakeError, type HandshakeIo, negotiate } from "./handshake.ts";
import type { NbdLimits } from "./limits.ts";
import type { BufferPool } from "../util/buffer_pool.ts";
import { Session, type SessionEnd } from "./session.ts";
import { type ByteStream, StreamReader, StreamWriter, TruncatedError } from "./stream.ts";
import type { NbdTls } from "./tls.ts";
import { acceptTls, TlsHandshakeError } from "./tls_stream.ts";

/** What a connection needs from its server. */
export interface ConnectionContext {
  readonly exports: ExportTable;
  readonly limits: NbdLimits;
  readonly shared: Budget;
  readonly pool: BufferPool;
  readonly log: Logger;
  readonly clock: Clock;
  /** TLS the server offers (STARTTLS); undefined: plain text only. */
  readonly tls: NbdTls | undefined;
  stopping(): boolean;
  /** Called once when the handshake is over, however it ended. */
  handshakeOver(): void;
}

export class Connection {
  /** The socket, or the TLS stream over it once upgraded. */
  #stream: ByteStream;
  readonly #context: ConnectionContext;
  readonly #peer: string;
  #reader: StreamReader;
  #writer: StreamWriter;
  #session: Session | null = null;
  #closed = false;
  // What the last watch saw, and when it last saw the client take a reply or send something.
  #seenWrites = -1;
  #writeSeenAt = 0;
  #seenReads = -1;
  #activeAt = 0;

  constructor(stream: ByteStream, context: ConnectionContext, peer: string) {
    this.#stream = stream;
    this.#context = context;
    this.#peer = peer;
    this.#reader = new StreamReader(stream);
    this.#writer = new StreamWriter(stream);
    this.#activeAt = context.clock.now();
  }

  /** True while the client has not yet chosen an export. */
  get handshaking(): boolean {
    return this.#session === null && !this.#closed;
  }

  async serve(): Promise<SessionEnd | "handshake"> {
    const context = this.#context;
    const log = context.log;
    let timer: Timer | null = context.clock.setTimeout(() => {
      log.log("warn", "nbd handshake timed out", { peer: this.#peer });
      this.#close();
    }, context.limits.handshakeTimeoutMs);
    let negotiated;
    const tls = context.tls;
    try {
      negotiated = await negotiate(
        { reader: this.#reader, writer: this.#writer },
        context.exports,
        {
          stopping: context.stopping,
          ...(tls === undefined ? {} : {
            tls: {
              mode: tls.mode,
              upgrade: () => this.#upgrade(tls),
              refused: () =>
                log.log("warn", "nbd client refused: TLS is required", {
                  peer: this.#peer,
                  hint: "the client did not send NBD_OPT_STARTTLS; use an nbds:// URI",
                }),
            },
          }),
        },
      );
    } catch (error) {
      if (error instanceof HandshakeError) {
        log.log("warn", "nbd handshake refused", { peer: this.#peer, reason: error.message });
      } else if (error instanceof TlsHandshakeError && !this.#closed) {
        log.log("warn", "nbd TLS handshake failed", { peer: this.#peer, reason: error.message });
      } else if (!(error instanceof TruncatedError) && !this.#closed) {
        log.log("debug", "nbd handshake failed", { peer: this.#peer, error: String(error) });
      }
      negotiated = null;
    } finally {
      timer.cancel();
      timer = null;
    }
    if (negotiated === null || this.#closed) {
      context.handshakeOver();
      await this.#writer.drained();
      this.#close();
      return "handshake";
    }
    this.#session = new Session(this.#stream, this.#reader, this.#writer, negotiated, {
      maxInFlight: context.limits.maxInFlight,
      maxInFlightBytes: context.limits.maxInFlightBytes,
      shared: context.shared,
      pool: context.pool,
      log,
    });
    context.handshakeOver();
    this.#activeAt = context.clock.now();
    const end = await this.#session.run();
    this.#closed = true;
    if (end === "stalled") {
      log.log("warn", "nbd client dropped: it took none of its replies for the stall timeout", {
        peer: this.#peer,
        timeoutMs: context.limits.stallTimeoutMs,
      });
    } else if (end === "idle") {
      log.log("info", "nbd client closed: idle for the idle timeout", {
        peer: this.#peer,
        timeoutMs: context.limits.idleTimeoutMs,
      });
    } else {
      log.log("debug", "nbd connection ended", { peer: this.#peer, end });
    }
    return end;
  }

  /** Runs the TLS handshake over the socket; reads and writes go through TLS from then on. */
  async #upgrade(tls: NbdTls): Promise<HandshakeIo> {
    const secure = await acceptTls(
      this.#stream,
      tls,
      // A handshake timeout meanwhile closes the TLS stream (and the socket under it).
      (stream) => this.#stream = stream,
    );
    this.#reader = new StreamReader(secure);
    this.#writer = new StreamWriter(secure);
    return { reader: this.#reader, writer: this.#writer };
  }

  /**
   * The server's periodic look at this connection: drops it when its writes made no progress
   * for the stall timeout, closes it when idle for the idle timeout.
   */
  watch(now: number): void {
    const session = this.#session;
    if (session === null || this.#closed) return;
    const writer = this.#writer;
    const limits = this.#context.limits;
    const writes = writer.progress;
    if (writer.writing && writes === this.#seenWrites) {
      if (now - this.#writeSeenAt >= limits.stallTimeoutMs) session.abort("stalled");
      return;
    }
    this.#seenWrites = writes;
    this.#writeSeenAt = now;
    const reads = this.#reader.progress;
    if (reads !== this.#seenReads || session.busy || writer.queued > 0) {
      this.#seenReads = reads;
      this.#activeAt = now;
    } else if (limits.idleTimeoutMs > 0 && now - this.#activeAt >= limits.idleTimeoutMs) {
      session.abort("idle");
    }
  }

  /** Graceful stop: finish what was read, answer later requests ESHUTDOWN, close. */
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
