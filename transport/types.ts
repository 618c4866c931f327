/**
 * The one transport interface every medium implements (TCP, Unix socket, QUIC, memory), and the
 * framed, handshaken link that everything above the transport layer talks through.
 *
 * A transport only moves bytes: it dials and listens and yields {@link Duplex} byte streams.
 * Framing, the handshake, keepalive and write batching are written once, in `link.ts`, on top of
 * any Duplex, so every medium behaves the same and one conformance suite covers all of them.
 */

/** A reliable, ordered, bidirectional byte stream (a socket, a QUIC stream, an in-memory pipe). */
export interface Duplex {
  /** Reads into `into`; resolves the byte count, or null at end of stream. */
  read(into: Uint8Array): Promise<number | null>;
  /** Writes all of `data` (the caller may reuse `data` once this resolves). */
  write(data: Uint8Array): Promise<void>;
  /**
   * Optional: writes `chunks` in order as one unit (the link passes whole frames, so a unit is
   * frame-aligned). Media that fault per write unit (memory) implement it; others get sequential
   * {@link Duplex.write} calls.
   */
  writev?(chunks: readonly Uint8Array[]): Promise<void>;
  /** Closes both directions; pending reads resolve null or reject. Idempotent. */
  close(): void;
  /**
   * Optional: resolves once a close has fully finished (QUIC finishes its stream gracefully and
   * releases the connection only after the peer's side ended, so last bytes are not lost).
   */
  readonly finished?: Promise<void>;
  /** Human-readable remote address, for logs. */
  readonly remote: string;
}

/** A listening endpoint: yields accepted byte streams until closed. */
export interface Listener extends AsyncIterable<Duplex> {
  /** The URL peers dial (with the real port when 0 was asked for). */
  readonly url: string;
  close(): void;
}

/** A medium: parses its own URL scheme, dials and listens. */
export interface Transport {
  /** URL scheme without the colon: "tcp", "unix", "quic", "mem". */
  readonly scheme: string;
  connect(url: string, signal?: AbortSignal): Promise<Duplex>;
  listen(url: string): Promise<Listener>;
}

/** A frame header: a small msgpack map. `t` names the message type. */
export type Header = { readonly t: string } & Readonly<Record<string, unknown>>;

/**
 * A received frame. `payload` is a view into the receive buffer, never a copy, and it belongs to
 * the receiver: the link never writes into it again unless the receiver gives the frame back with
 * {@link Link.recycle}.
 */
export interface Frame {
  readonly header: Header;
  readonly payload: Uint8Array;
}

/** What each side says about itself in the handshake. */
export interface Hello {
  /** Wire protocol version; a mismatch is refused with both versions named. */
  readonly version: number;
  /** The speaker's node identity. */
  readonly node: string;
  /** Application fields (size, capabilities, storage id, ...), opaque to the link layer. */
  readonly info: Readonly<Record<string, unknown>>;
}

/** Why a link closed. */
export interface LinkClosed {
  /** "local" when we closed it, "remote" when the peer closed or reset it, "error" otherwise. */
  readonly by: "local" | "remote" | "error";
  readonly reason: string;
}

/** A framed, handshaken connection to one peer. */
export interface Link {
  readonly local: Hello;
  readonly peer: Hello;
  /**
   * Queues one frame. Small frames are batched into one write; large payloads are written from
   * the caller's buffer without a copy, so the caller must not modify `payload` until the
   * promise from {@link Link.drain} resolves. Throws if the link is closed.
   */
  send(header: Header, payload?: Uint8Array): void;
  /** Resolves when queued bytes have been handed to the medium. */
  drain(): Promise<void>;
  /**
   * Starts delivering frames; frames that arrived before are delivered first, in order. A handler
   * that returns a promise (any other return value is ignored) holds back further frames until it settles (the link reads nothing
   * more from the peer meanwhile): that is how a receiver pushes back on a peer that sends faster
   * than it can serve. A rejected promise closes the link.
   */
  receive(handler: (frame: Frame) => unknown): void;
  /**
   * Optional for receivers: gives a delivered frame back once nothing will read its payload or
   * header again (and no pending send still writes from its payload: wait for {@link Link.drain}
   * first when it was sent on). The link may then read later frames into that memory instead of
   * allocating fresh buffers. Frames never given back stay valid for as long as they are held;
   * giving back a frame twice, or one from another link, does nothing.
   */
  recycle(frame: Frame): void;
  /**
   * Optional for receivers: where large payloads should land, asked per frame once its header is
   * decoded (not yet validated); undefined keeps the link's own buffer. A receiver that knows
   * which caller's buffer a reply is for saves a copy of its data.
   */
  setPayloadTarget?(
    target: ((header: Header, payloadBytes: number) => Uint8Array | undefined) | undefined,
  ): void;
  /** Resolves once, when the link is closed for any reason. */
  readonly closed: Promise<LinkClosed>;
  readonly isClosed: boolean;
  close(reason?: string): void;
}
