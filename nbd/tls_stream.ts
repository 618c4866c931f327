/**
 * A connection the server already accepted, upgraded to TLS as its server side (NBD_OPT_STARTTLS
 * comes after plain-text haggling, so the upgrade happens mid-stream). Deno offers no server-side
 * upgrade of a `Deno.Conn`, so node:tls runs the TLS engine over a small duplex that reads and
 * writes the raw connection; the result is a {@link ByteStream} again, for the same reader and
 * writer as a plain connection. What it holds is bounded: the raw connection is read only while
 * less than {@link MAX_AHEAD} bytes of decrypted data wait for the reader, so a client that
 * floods a connection the server is not reading cannot grow the server.
 */
import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";
import { Duplex } from "node:stream";
import tls from "node:tls";
import type { ByteStream } from "./stream.ts";

/** Decrypted bytes that may wait for the reader before the raw connection is no longer read. */
export const MAX_AHEAD = 256 * 1024;
/** Largest raw read at a time. */
const RAW_READ = 64 * 1024;

/** A raw connection: what the duplex needs (a `Deno.Conn` fits). */
export interface RawStream extends ByteStream {
  closeWrite?(): Promise<void>;
}

/** The TLS handshake failed: the certificate was refused, the peer spoke no TLS, it left. */
export class TlsHandshakeError extends Error {
  override name = "TlsHandshakeError";
}

/** What the server side of a handshake needs: its context, and how clients are checked. */
export interface TlsServerSide {
  readonly context: tls.SecureContext;
  /**
   * Checks the client's certificate (and the intermediates it sent) after the handshake; a
   * reason when it is refused. Absent: no client certificate is asked for.
   */
  readonly checkClient?: (
    leaf: X509Certificate | undefined,
    intermediates: readonly X509Certificate[],
  ) => string | null;
}

/**
 * Runs the server side of a TLS handshake over `raw` and resolves the encrypted stream. `onStream`
 * receives the stream before the handshake ends, so a timeout can close it meanwhile.
 */
export async function acceptTls(
  raw: RawStream,
  side: TlsServerSide,
  onStream: (stream: ByteStream) => void,
): Promise<TlsStream> {
  const stream = new TlsStream(raw, side);
  onStream(stream);
  await stream.handshake;
  return stream;
}

/** The encrypted stream: plain bytes in and out, TLS records on the raw connection. */
export class TlsStream implements ByteStream {
  readonly #raw: RawStream;
  readonly #socket: tls.TLSSocket;
  readonly #duplex: RawDuplex;
  /** Decrypted chunks waiting for `read`, and how far into the first one it got. */
  readonly #chunks: Uint8Array[] = [];
  #at = 0;
  #buffered = 0;
  #ended = false;
  #error: Error | null = null;
  #closed = false;
  #wake: (() => void) | null = null;
  /** Resolves once the handshake succeeded; rejects with a {@link TlsHandshakeError}. */
  readonly handshake: Promise<void>;

  constructor(raw: RawStream, side: TlsServerSide) {
    this.#raw = raw;
    this.#duplex = new RawDuplex(raw, () => this.#buffered < MAX_AHEAD);
    const checkClient = side.checkClient;
    this.#socket = new tls.TLSSocket(this.#duplex, {
      isServer: true,
      secureContext: side.context,
      requestCert: checkClient !== undefined,
      rejectUnauthorized: checkClient !== undefined,
    });
    const socket = this.#socket;
    this.handshake = new Promise<void>((resolve, reject) => {
      const fail = (why: string) => {
        socket.off("secure", secured);
        reject(new TlsHandshakeError(why));
      };
      const secured = () => {
        socket.off("error", failed);
        socket.off("close", closed);
        // node:tls in Deno asks for a client certificate but does not check who signed it
        // (seen on 2.9.6): the chain is checked here, and a refused client is dropped.
        const why = checkClient?.(...peerChain(socket));
        if (why !== undefined && why !== null) {
          this.#destroy();
          reject(new TlsHandshakeError(`client certificate refused: ${why}`));
          return;
        }
        resolve();
      };
      const failed = (error: Error) => fail(`TLS handshake failed: ${error.message}`);
      const closed = () => fail("the client left during the TLS handshake");
      socket.once("secure", secured);
      socket.once("error", failed);
      socket.once("close", closed);
    });
    // A failed handshake is reported by the promise; nobody may be awaiting it yet.
    this.handshake.catch(() => {});
    socket.on("data", (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (error: Error) => {
      this.#error ??= error;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
  }

  /** Decrypted bytes waiting for the reader (bounded by about {@link MAX_AHEAD}). */
  get buffered(): number {
    return this.#buffered;
  }

  /** Raw bytes read from the connection so far (for tests of the bound). */
  get rawBytesRead(): number {
    return this.#duplex.bytesPulled;
  }

  async read(into: Uint8Array): Promise<number | null> {
    while (this.#buffered === 0) {
      if (this.#error !== null) throw this.#error;
      if (this.#ended || this.#closed) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    let done = 0;
    while (done < into.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0]!;
      const step = Math.min(into.length - done, chunk.length - this.#at);
      into.set(chunk.subarray(this.#at, this.#at + step), done);
      done += step;
      this.#at += step;
      if (this.#at === chunk.length) {
        this.#chunks.shift();
        this.#at = 0;
      }
    }
    this.#buffered -= done;
    this.#duplex.room();
    return done;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#closed) return Promise.reject(new Error("the TLS stream is closed"));
    return new Promise((resolve, reject) => {
      // The callback runs once the chunk is no longer needed: the caller may reuse `data` then.
      this.#socket.write(data, (error?: Error | null) => {
        if (error) reject(error);
        else resolve(data.length);
      });
    });
  }

  /**
   * Ends the TLS session (close_notify) and the connection. A peer that takes nothing more
   * cannot hold it open: the raw connection is closed at once if the goodbye cannot be sent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#notify();
    const socket = this.#socket;
    if (this.#error === null && socket.writableLength === 0 && !socket.destroyed) {
      socket.end(() => socket.destroy());
      // Whatever happens to the goodbye, the connection is gone shortly.
      const timer = setTimeout(() => this.#destroy(), 1000);
      Deno.unrefTimer(timer);
      socket.once("close", () => clearTimeout(timer));
    } else {
      this.#destroy();
    }
  }

  #destroy(): void {
    this.#socket.destroy();
    try {
      this.#raw.close();
    } catch {
      // already closed
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/** The client's certificate and the intermediates it sent (leaf first), as far as they parse. */
function peerChain(
  socket: tls.TLSSocket,
): [X509Certificate | undefined, X509Certificate[]] {
  const leaf = socket.getPeerX509Certificate();
  const intermediates: X509Certificate[] = [];
  try {
    let at = socket.getPeerCertificate(true)?.issuerCertificate;
    // Bounded: a chain that loops (self-signed) or is absurdly long stops here.
    for (let depth = 0; at?.raw !== undefined && depth < 8; depth++) {
      const next = new X509Certificate(at.raw);
      if (intermediates.some((c) => c.fingerprint256 === next.fingerprint256)) break;
      intermediates.push(next);
      at = at.issuerCertificate;
    }
  } catch {
    // An intermediate that does not parse is left out: the chain then fails to verify.
  }
  return [leaf, intermediates];
}

/** The raw connection as the node stream the TLS engine reads its records from. */
class RawDuplex extends Duplex {
  readonly #raw: RawStream;
  readonly #mayRead: () => boolean;
  #reading = false;
  /** The engine asked for data while there was no room: read again once there is. */
  #wanted = false;
  bytesPulled = 0;

  constructor(raw: RawStream, mayRead: () => boolean) {
    super({ allowHalfOpen: false });
    this.#raw = raw;
    this.#mayRead = mayRead;
  }

  /** The reader took data: read the connection again if the engine was waiting. */
  room(): void {
    if (this.#wanted && this.#mayRead()) {
      this.#wanted = false;
      this._read();
    }
  }

  override _read(): void {
    if (this.#reading || this.destroyed) return;
    if (!this.#mayRead()) {
      this.#wanted = true;
      return;
    }
    this.#reading = true;
    const buffer = new Uint8Array(RAW_READ);
    this.#raw.read(buffer).then((n) => {
      this.#reading = false;
      if (this.destroyed) return;
      if (n === null) {
        this.push(null);
        return;
      }
      this.bytesPulled += n;
      this.push(Buffer.from(buffer.buffer, 0, n));
    }, (error) => {
      this.#reading = false;
      this.destroy(error instanceof Error ? error : new Error(String(error)));
    });
  }

  override _write(
    chunk: Uint8Array,
    _encoding: string,
    callback: (error?: Error | null) => void,
  ): void {
    writeAll(this.#raw, chunk).then(() => callback(), (error) => callback(error));
  }

  override _final(callback: (error?: Error | null) => void): void {
    const closeWrite = this.#raw.closeWrite?.bind(this.#raw);
    if (closeWrite === undefined) return callback();
    closeWrite().then(() => callback(), () => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    try {
      this.#raw.close();
    } catch {
      // already closed
    }
    callback(error);
  }
}

async function writeAll(raw: RawStream, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) done += await raw.write(data.subarray(done));
}
