/**
 * QUIC transport: `quic://HOST:PORT` over Deno's QUIC API (`--unstable-net`), TLS always on,
 * ALPN "dst/1". Each Duplex is one bidirectional stream; a dialer opens one connection per
 * stream, and a listener yields every stream its peers open.
 */

import type { Duplex, Listener, Transport } from "./types.ts";
import { formatHostPort, parseHostPort } from "./url.ts";

/** The ALPN protocol both ends must agree on. */
export const QUIC_ALPN = "dst/1";

/** How long a closing stream waits for the peer to end its side before giving up. */
const PEER_END_WAIT_MS = 2000;

/** TLS material in PEM; a listener needs cert and key, a dialer trusts caCerts. */
export interface QuicTlsOptions {
  readonly cert?: string;
  readonly key?: string;
  readonly caCerts?: readonly string[];
  /** Name checked against the server certificate; defaults to the URL's host. */
  readonly serverName?: string;
}

/** A Duplex over one bidirectional QUIC stream. */
class QuicDuplex implements Duplex {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #onClose: () => void;
  #leftover: Uint8Array | undefined;
  #closed = false;
  #finish!: () => void;

  constructor(
    stream: Deno.QuicBidirectionalStream,
    readonly remote: string,
    onClose: () => void,
  ) {
    this.#reader = stream.readable.getReader();
    this.#writer = stream.writable.getWriter();
    this.#onClose = onClose;
    this.finished = new Promise((resolve) => (this.#finish = resolve));
  }

  async read(into: Uint8Array): Promise<number | null> {
    let chunk = this.#leftover;
    this.#leftover = undefined;
    while (chunk === undefined || chunk.length === 0) {
      if (this.#closed) return null;
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await this.#reader.read();
      } catch (error) {
        if (this.#closed) return null;
        throw error;
      }
      if (result.done) return null;
      chunk = result.value;
    }
    const n = Math.min(into.length, chunk.length);
    into.set(n === chunk.length ? chunk : chunk.subarray(0, n));
    if (n < chunk.length) this.#leftover = chunk.subarray(n);
    return n;
  }

  async write(data: Uint8Array): Promise<void> {
    await this.#writer.write(data);
  }

  /** Resolves once a close finished: our side flushed and the peer's side ended (or timed out). */
  readonly finished: Promise<void>;

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Finish our direction gracefully and wait for the peer's end before the connection goes:
    // closing a QUIC connection drops whatever is still in flight (a goodbye, a refusal).
    const flushed = this.#writer.close().catch(() => {});
    void Promise.all([flushed, this.#drainPeer()]).then(() => {
      this.#onClose();
      this.#finish();
    });
  }

  async #drainPeer(): Promise<void> {
    const timer = setTimeout(() => this.#reader.cancel().catch(() => {}), PEER_END_WAIT_MS);
    try {
      for (;;) {
        const { done } = await this.#reader.read();
        if (done) break;
      }
    } catch { /* reset or cancelled: the peer's side is over either way */ }
    clearTimeout(timer);
  }
}

/** Accepts connections and yields each bidirectional stream their peers open. */
class QuicStreamListener implements Listener {
  readonly #endpoint: Deno.QuicEndpoint;
  readonly #listener: Deno.QuicListener;
  readonly #ready: Duplex[] = [];
  readonly #conns = new Set<Deno.QuicConn>();
  #wake: (() => void) | undefined;
  #closed = false;
  #failure: Error | undefined;

  constructor(endpoint: Deno.QuicEndpoint, listener: Deno.QuicListener, readonly url: string) {
    this.#endpoint = endpoint;
    this.#listener = listener;
    void this.#acceptLoop();
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let incoming: Deno.QuicIncoming;
      try {
        incoming = await this.#listener.incoming();
      } catch (error) {
        if (!this.#closed) this.#failure = error as Error;
        this.#signal();
        return;
      }
      void this.#serveConn(incoming);
    }
  }

  async #serveConn(incoming: Deno.QuicIncoming): Promise<void> {
    let conn: Deno.QuicConn;
    try {
      conn = await incoming.accept();
    } catch {
      return; // A failed TLS handshake concerns that peer only.
    }
    if (this.#closed) {
      conn.close({ closeCode: 0, reason: "listener closed" });
      return;
    }
    this.#conns.add(conn);
    const remote = formatHostPort("quic", conn.remoteAddr.hostname, conn.remoteAddr.port);
    const reader = conn.incomingBidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value: stream, done } = await reader.read();
        if (done || this.#closed) break;
        this.#ready.push(
          // The dialer closes the connection when its stream ends (or QUIC's idle timeout
          // does), so closing our end of a stream leaves the connection alone.
          new QuicDuplex(stream, remote, () => {}),
        );
        this.#signal();
      }
    } catch { /* the connection went away */ }
    this.#closeConn(conn);
  }

  #closeConn(conn: Deno.QuicConn): void {
    if (!this.#conns.delete(conn)) return;
    try {
      conn.close({ closeCode: 0, reason: "done" });
    } catch { /* already closed */ }
  }

  #signal(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Duplex> {
    for (;;) {
      while (this.#ready.length === 0) {
        if (this.#failure !== undefined) throw this.#failure;
        if (this.#closed) return;
        await new Promise<void>((resolve) => (this.#wake = resolve));
      }
      yield this.#ready.shift()!;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const duplex of this.#ready.splice(0)) duplex.close();
    for (const conn of [...this.#conns]) this.#closeConn(conn);
    try {
      this.#listener.stop();
    } catch { /* already stopped */ }
    this.#endpoint.close({ closeCode: 0, reason: "listener closed" });
    this.#signal();
  }
}

export class QuicTransport implements Transport {
  readonly scheme = "quic";

  constructor(readonly tls: QuicTlsOptions = {}) {}

  async connect(url: string, signal?: AbortSignal): Promise<Duplex> {
    const { hostname, port } = parseHostPort(url, "quic");
    signal?.throwIfAborted();
    const options: Deno.ConnectQuicOptions<false> = {
      hostname,
      port,
      alpnProtocols: [QUIC_ALPN],
      serverName: this.tls.serverName ?? hostname,
      ...(this.tls.caCerts === undefined ? {} : { caCerts: [...this.tls.caCerts] }),
    };
    const conn = await Deno.connectQuic(options);
    const closeConn = () => {
      try {
        conn.close({ closeCode: 0, reason: "done" });
      } catch { /* already closed */ }
    };
    if (signal?.aborted) {
      closeConn();
      signal.throwIfAborted();
    }
    let stream: Deno.QuicBidirectionalStream;
    try {
      stream = await conn.createBidirectionalStream();
    } catch (error) {
      closeConn();
      throw error;
    }
    return new QuicDuplex(
      stream,
      formatHostPort("quic", hostname, port),
      closeConn,
    );
  }

  listen(url: string): Promise<Listener> {
    const { hostname, port } = parseHostPort(url, "quic");
    if (this.tls.cert === undefined || this.tls.key === undefined) {
      return Promise.reject(
        new Error(`listening on ${url} needs a TLS certificate and key (QUIC always uses TLS)`),
      );
    }
    const endpoint = new Deno.QuicEndpoint({ hostname, port });
    let listener: Deno.QuicListener;
    try {
      listener = endpoint.listen({
        alpnProtocols: [QUIC_ALPN],
        cert: this.tls.cert,
        key: this.tls.key,
      });
    } catch (error) {
      endpoint.close();
      return Promise.reject(error);
    }
    const real = formatHostPort("quic", hostname, endpoint.addr.port);
    return Promise.resolve(new QuicStreamListener(endpoint, listener, real));
  }
}
