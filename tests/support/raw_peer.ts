/**
 * A peer driven by hand over a bare byte stream, for tests that must say what a real link never
 * would: frames written as raw bytes, any header at any time, and (when asked) the real
 * handshake as initiator, so hostile frames can also come from an authenticated peer.
 */

import { encodeFrame, FrameReader } from "../../transport/frame.ts";
import { type HandshakeChannel, LinkRefused, runHandshake } from "../../transport/handshake.ts";
import type { Duplex, Header, Hello } from "../../transport/types.ts";

export interface RawHandshake {
  readonly version: number;
  readonly node: string;
  readonly secret?: string | Uint8Array;
  readonly info?: Hello["info"];
}

export class RawPeer {
  readonly reader: FrameReader;
  #writes: Promise<void> = Promise.resolve();
  #pending: Promise<Header | null> | undefined;

  constructor(readonly duplex: Duplex) {
    this.reader = new FrameReader(duplex);
  }

  /** Writes bytes as they are, after what was written before. */
  write(bytes: Uint8Array): Promise<void> {
    const done = this.#writes.then(() => this.duplex.write(bytes));
    this.#writes = done.catch(() => {});
    return done;
  }

  /** Writes one well-formed frame. */
  send(header: Header, payload?: Uint8Array): Promise<void> {
    return this.write(encodeFrame(header, payload));
  }

  /** The next frame's header; null when the stream ended, broke, or `ms` passed without one. */
  async next(ms = 2000): Promise<Header | null> {
    // A read that timed out stays pending and is picked up by the next call: no frame is lost.
    this.#pending ??= this.reader.next().then((f) => f?.header ?? null, () => null);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((
      resolve,
    ) => (timer = setTimeout(() => resolve(undefined), ms)));
    try {
      const got = await Promise.race([this.#pending, timeout]);
      if (got === undefined) return null;
      this.#pending = undefined;
      return got;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs the real handshake as initiator; resolves with the peer's hello. */
  handshake(params: RawHandshake): Promise<Hello> {
    const channel: HandshakeChannel = {
      send: (header) => void this.send(header).catch(() => {}),
      next: async () => {
        const frame = await this.reader.next();
        if (frame === null) throw new LinkRefused("peer closed the stream during the handshake");
        if (frame.header.t === "refuse") {
          throw new LinkRefused(`peer refused the link: ${String(frame.header.reason)}`);
        }
        return frame.header;
      },
      refuse: async (why) => {
        await this.send({ t: "refuse", reason: why }).catch(() => {});
        throw new LinkRefused(why);
      },
    };
    return runHandshake(channel, {
      role: "initiator",
      hello: { version: params.version, node: params.node, info: params.info ?? {} },
      secret: params.secret,
    });
  }

  close(): void {
    this.duplex.close();
  }
}
