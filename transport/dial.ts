/**
 * `dial` and `serve`: open links by URL, choosing the transport by scheme. A server keeps
 * accepting whatever any one link does: a bad handshake or a bad frame ends that link only.
 */

import { silentLogger } from "../util/log.ts";
import type { LinkOptions } from "./link.ts";
import { openLink } from "./link.ts";
import { MemoryTransport } from "./memory.ts";
import type { QuicTlsOptions } from "./quic.ts";
import { QuicTransport } from "./quic.ts";
import { tcpTransport } from "./tcp.ts";
import type { Duplex, Link, Transport } from "./types.ts";
import { unixTransport } from "./unix.ts";
import { schemeOf } from "./url.ts";

export interface DialOptions extends LinkOptions {
  /** Transports to choose from by scheme; default tcp, unix, quic (with `tls`) and mem. */
  readonly transports?: readonly Transport[];
  /** TLS material for quic:// (a listener needs cert and key; a dialer trusts caCerts). */
  readonly tls?: QuicTlsOptions;
  /** Aborts connecting (not the handshake: that has its own deadline). */
  readonly signal?: AbortSignal;
}

/** The transport for `url`'s scheme among the given ones, or the defaults. */
export function transportFor(url: string, options: DialOptions): Transport {
  const scheme = schemeOf(url);
  const transports = options.transports ??
    [tcpTransport, unixTransport, new QuicTransport(options.tls ?? {}), new MemoryTransport()];
  const transport = transports.find((t) => t.scheme === scheme);
  if (transport === undefined) {
    const known = transports.map((t) => `${t.scheme}://`).join(", ");
    throw new Error(`no transport for "${url}": known schemes are ${known}`);
  }
  return transport;
}

/** Connects to `url` and runs the handshake. */
export async function dial(url: string, options: DialOptions): Promise<Link> {
  const duplex = await transportFor(url, options).connect(url, options.signal);
  return await openLink(duplex, options);
}

/** A running server: its URL (with the real port) and the links it holds. */
export interface Server {
  readonly url: string;
  readonly links: ReadonlySet<Link>;
  /** Stops accepting, closes every link, and resolves when all are closed. */
  close(reason?: string): Promise<void>;
}

/** Listens on `url` and hands each handshaken link to `onLink`. */
export async function serve(
  url: string,
  options: DialOptions,
  onLink: (link: Link) => void,
): Promise<Server> {
  const logger = options.logger ?? silentLogger;
  const listener = await transportFor(url, options).listen(url);
  const links = new Set<Link>();
  const handshaking = new Set<Duplex>();
  const pending = new Set<Promise<void>>();

  const accept = async (duplex: Duplex): Promise<void> => {
    handshaking.add(duplex);
    let link: Link;
    try {
      link = await openLink(duplex, options);
    } catch {
      return; // openLink logged why and closed the duplex.
    } finally {
      handshaking.delete(duplex);
    }
    links.add(link);
    void link.closed.then(() => links.delete(link));
    try {
      onLink(link);
    } catch (error) {
      logger.log("error", "link handler threw", { error: (error as Error).message });
      link.close(`server handler failed: ${(error as Error).message}`);
    }
  };

  const acceptLoop = (async () => {
    try {
      for await (const duplex of listener) {
        const task = accept(duplex);
        pending.add(task);
        void task.finally(() => pending.delete(task));
      }
    } catch (error) {
      logger.log("error", "listener failed", {
        url: listener.url,
        error: (error as Error).message,
      });
    }
  })();

  return {
    url: listener.url,
    links,
    async close(reason = "server closing") {
      listener.close();
      await acceptLoop;
      for (const duplex of handshaking) duplex.close();
      await Promise.all(pending);
      const closing = [...links].map((link) => {
        link.close(reason);
        return link.closed;
      });
      await Promise.all(closing);
    },
  };
}
