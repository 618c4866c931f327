/**
 * Unix socket transport: `unix:///PATH`. A stale socket file left by a dead process is removed
 * before listening (only when nothing answers on it); the listener removes its file on close.
 */

import { SocketDuplex, SocketListener } from "./socket.ts";
import type { Duplex, Listener, Transport } from "./types.ts";
import { afterScheme } from "./url.ts";

async function removeIfStale(path: string): Promise<void> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    throw new Error(`unix://${path}: another process is listening there`);
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) await Deno.remove(path).catch(() => {});
    else if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

export class UnixTransport implements Transport {
  readonly scheme = "unix";

  async connect(url: string): Promise<Duplex> {
    const path = afterScheme(url, "unix");
    const conn = await Deno.connect({ transport: "unix", path });
    return new SocketDuplex(conn, url);
  }

  async listen(url: string): Promise<Listener> {
    const path = afterScheme(url, "unix");
    await removeIfStale(path);
    const listener = Deno.listen({ transport: "unix", path });
    let n = 0;
    return new SocketListener(listener, url, () => `${url}#${++n}`, () => {
      try {
        Deno.removeSync(path);
      } catch { /* already removed */ }
    });
  }
}

/** The shared Unix socket transport (it holds no state). */
export const unixTransport: UnixTransport = new UnixTransport();
