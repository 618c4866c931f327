/**
 * `dial`: opens a link by URL as the initiator, choosing the transport by scheme. (`serve`, the
 * accepting end, lives in `server.ts` and is re-exported here.)
 */

import type { FramedLink, LinkOptions } from "./link.ts";
import { openLink } from "./link.ts";
import { MemoryTransport } from "./memory.ts";
import type { QuicTlsOptions } from "./quic.ts";
import { QuicTransport } from "./quic.ts";
import { tcpTransport } from "./tcp.ts";
import type { Transport } from "./types.ts";
import { unixTransport } from "./unix.ts";
import { schemeOf } from "./url.ts";

/** How to reach a peer; the role is set by dial (initiator) or serve (responder). */
export interface DialOptions extends Omit<LinkOptions, "role" | "admit" | "onRefused"> {
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

/** Connects to `url` and runs the handshake as the initiator. */
export async function dial(url: string, options: DialOptions): Promise<FramedLink> {
  const duplex = await transportFor(url, options).connect(url, options.signal);
  return await openLink(duplex, { ...options, role: "initiator" });
}

export { serve } from "./server.ts";
export type { ServeOptions, Server } from "./server.ts";
