/**
 * A Duplex and a Listener over Deno's stream sockets (TCP and Unix share them): full writes over
 * partial ones, and reads that end quietly once this end closed the socket.
 */

import type { Duplex, Listener } from "./types.ts";

/** A Duplex over a Deno.Conn. */
export class SocketDuplex implements Duplex {
  readonly #conn: Deno.Conn;
  #closed = false;

  constructor(conn: Deno.Conn, readonly remote: string) {
    this.#conn = conn;
  }

  async read(into: Uint8Array): Promise<number | null> {
    try {
      return await this.#conn.read(into);
    } catch (error) {
      if (this.#closed) return null;
      throw error;
    }
  }

  async write(data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      done += await this.#conn.write(done === 0 ? data : data.subarray(done));
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already gone */ }
  }
}

/** Errors from accept() that concern one connection, not the listener. */
function isTransient(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionRefused;
}

/** A Listener over a Deno.Listener; `describe` names each accepted peer. */
export class SocketListener implements Listener {
  readonly #listener: Deno.Listener;
  readonly #describe: (conn: Deno.Conn) => string;
  readonly #onClose: () => void;
  #closed = false;

  constructor(
    listener: Deno.Listener,
    readonly url: string,
    describe: (conn: Deno.Conn) => string,
    onClose: () => void = () => {},
  ) {
    this.#listener = listener;
    this.#describe = describe;
    this.#onClose = onClose;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Duplex> {
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closed) return;
        if (isTransient(error)) continue;
        throw error;
      }
      yield this.wrap(conn);
    }
  }

  /** Wraps an accepted connection (TCP sets no-delay here). */
  wrap(conn: Deno.Conn): Duplex {
    return new SocketDuplex(conn, this.#describe(conn));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    this.#onClose();
  }
}
