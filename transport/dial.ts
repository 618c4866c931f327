/**
 * `dial`: opens a link by URL as the initiator, choosing the transport by scheme. (`serve`, the
 * accepting end, lives in `server.ts` and is re-exported here.)
 */

import type { FramedLink, LinkOptions } from "./link.ts";
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, openLink } from "./link.ts";
import { systemClock } from "../util/clock.ts";
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
  /**
   * Bounds the whole dial, connecting and the handshake together: a peer that accepts and then
   * stalls the handshake costs no more than one that never answers.
   */
  readonly timeoutMs?: number;
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
  const transport = transportFor(url, options);
  const within = options.timeoutMs;
  if (within === undefined) {
    const duplex = await transport.connect(url, options.signal);
    return await openLink(duplex, { ...options, role: "initiator" });
  }
  const clock = options.clock ?? systemClock;
  const started = clock.now();
  const abort = new AbortController();
  const timer = clock.setTimeout(
    () => abort.abort(new Error(`connecting to ${url} took over ${within} ms`)),
    within,
  );
  const signal = options.signal === undefined
    ? abort.signal
    : AbortSignal.any([options.signal, abort.signal]);
  let duplex;
  try {
    duplex = await transport.connect(url, signal);
  } catch (error) {
    if (abort.signal.aborted) throw abort.signal.reason;
    throw error;
  } finally {
    timer.cancel();
  }
  // The handshake gets what is left of the bound (or its own bound, when that is shorter).
  const left = Math.max(1, Math.ceil(within - (clock.now() - started)));
  const handshakeTimeoutMs = Math.min(
    options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    left,
  );
  return await openLink(duplex, { ...options, role: "initiator", handshakeTimeoutMs });
}

export { serve } from "./server.ts";
export type { ServeOptions, Server } from "./server.ts";
