/**
 * Unix socket transport: `unix:///PATH`. A stale socket file left by a dead process is removed
 * before listening (only when nothing answers on it); a socket a live process answers on, or a
 * path that is not a socket, is refused and left alone. The listener removes its file on close.
 */

import { SocketDuplex, SocketListener } from "./socket.ts";
import type { Duplex, Listener, Transport } from "./types.ts";
import { afterScheme } from "./url.ts";

/**
 * Makes `path` free for a new Unix socket listener: nothing there, or a socket nobody answers
 * on (removed). Throws, naming the path, when a live process listens there or the path is not a
 * socket: replacing either would cut off the process that serves there, or destroy a file.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (!info.isSocket) {
    throw new Error(
      `cannot listen on unix://${path}: it exists and is not a socket; refusing to replace it ` +
        "(remove it or pick another path)",
    );
  }
  try {
    (await Deno.connect({ transport: "unix", path })).close();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
    await Deno.remove(path).catch(() => {}); // a dead process's socket
    return;
  }
  throw new Error(
    `cannot listen on unix://${path}: another process is listening there; refusing to take ` +
      "its socket (stop it first, or pick another path)",
  );
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
    await removeStaleSocket(path);
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
