/**
 * The framed, handshaken link over any Duplex: the handshake (`handshake.ts`), keepalive, a stall
 * check on the write side, header validation with zod at the boundary, receive flow control and
 * batched writes (`frame_writer.ts`). Written once so every medium behaves the same.
 */

import { z } from "zod";
import type { Clock, Timer } from "../util/clock.ts";
import { systemClock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { silentLogger } from "../util/log.ts";
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  FrameError,
  FrameReader,
  type PayloadTarget,
  ReceivedFrame,
} from "./frame.ts";
import { FrameWriter, LinkSendError, STAGING_BYTES } from "./frame_writer.ts";
import {
  type HandshakeChannel,
  LinkRefused,
  MAX_HANDSHAKE_HEADER_BYTES,
  type Role,
  runHandshake,
} from "./handshake.ts";
import type { Duplex, Frame, Header, Hello, Link, LinkClosed } from "./types.ts";

export { LinkRefused, LinkSendError };
export type { Role };

/** How a link is opened. */
export interface LinkOptions {
  /** What this end says about itself. */
  readonly hello: Hello;
  /** The dialing end initiates, the accepting end responds (dial and serve set it). */
  readonly role: Role;
  /** When set, both ends must prove they hold it; a peer without it is refused. */
  readonly secret?: string | Uint8Array;
  /**
   * Responder only: asked once the initiator has proven itself, before this end proves itself;
   * a string refuses the link with that reason.
   */
  readonly admit?: (peer: Hello) => string | undefined;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /**
   * Told why a handshake failed, instead of the log (a server folds a flood of refusals into a
   * line per burst).
   */
  readonly onRefused?: (remote: string, reason: string) => void;
  /** The whole handshake must finish within this. Default 5000. */
  readonly handshakeTimeoutMs?: number;
  /** Ping when nothing arrived for this long; 0 turns keepalive off. Default 1000. */
  readonly keepAliveMs?: number;
  /** Close the link when nothing arrived for this long. Default 5000. */
  readonly deadAfterMs?: number;
  /**
   * Close the link when queued bytes did not move for this long (the peer stopped reading).
   * Default 30000 while keepalive is on, else off; 0 turns it off.
   */
  readonly writeStallMs?: number;
  /** Largest payload sent or accepted. Default 64 MiB. */
  readonly maxPayloadBytes?: number;
  /** Bound on bytes queued and not yet handed to the medium. Default 128 MiB. */
  readonly maxQueuedBytes?: number;
  /** Validates every application header; a failing frame closes the link. */
  readonly headerSchema?: z.ZodType<Header>;
  /** Receive chunk size. Default 256 KiB. */
  readonly chunkBytes?: number;
}

/** How long a handshake may take unless told otherwise. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;

/** How long a local close waits for queued frames and the goodbye to go out. */
const CLOSE_FLUSH_MS = 2000;
/** Staging buffer while the handshake runs: a stranger gets a few KiB, not a full buffer. */
const HANDSHAKE_STAGING_BYTES = 2 * 1024;

const reason = z.string().max(4096);
const refuseSchema = z.object({ t: z.literal("refuse"), reason });
const byeSchema = z.object({ t: z.literal("bye"), reason });
const pingSchema = z.object({ t: z.enum(["ping", "pong"]) });

/** Header types the link itself uses; applications pick other names. */
export const CONTROL_TYPES: ReadonlySet<string> = new Set([
  "hello",
  "auth",
  "refuse",
  "bye",
  "ping",
  "pong",
]);

function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "header"}: ${i.message}`).join("; ");
}

/**
 * Opens a link over `duplex`: runs the handshake and resolves once both ends agreed, or rejects
 * with {@link LinkRefused} (the duplex is closed then).
 */
export async function openLink(duplex: Duplex, options: LinkOptions): Promise<FramedLink> {
  const link = new FramedLink(duplex, options);
  await link.handshake();
  return link;
}

/** The Link implementation; {@link openLink} returns it once the handshake is done. */
export class FramedLink implements Link {
  readonly local: Hello;
  #peer: Hello | undefined;
  readonly #duplex: Duplex;
  readonly #options: LinkOptions;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #reader: FrameReader;
  readonly #writer: FrameWriter;
  readonly #maxPayload: number;
  readonly #keepAliveMs: number;
  readonly #deadAfterMs: number;
  readonly #writeStallMs: number;

  #handler: ((frame: Frame) => unknown) | undefined;
  #inbox: Frame[] = [];
  /** Set while the receiver holds back further frames (its handler returned a promise). */
  #held: Promise<void> | undefined;
  #wakeReader: (() => void) | undefined;
  /** Why the handshake was cut short from this end (a server making room), if it was. */
  #abortReason: string | undefined;
  #lastReceived: number;
  #receivedSeen = 0;
  #lastWritten: number;
  #writtenSeen = 0;
  #keepAlive: Timer | undefined;
  #readDone: Promise<void> = Promise.resolve();

  #closing: LinkClosed | undefined;
  #resolveClosed!: (info: LinkClosed) => void;
  readonly closed: Promise<LinkClosed>;

  constructor(duplex: Duplex, options: LinkOptions) {
    this.local = options.hello;
    this.#duplex = duplex;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#maxPayload = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.#keepAliveMs = options.keepAliveMs ?? 1000;
    this.#deadAfterMs = options.deadAfterMs ?? 5000;
    this.#writeStallMs = options.writeStallMs ?? (this.#keepAliveMs > 0 ? 30_000 : 0);
    this.#lastReceived = this.#lastWritten = this.#clock.now();
    // Small limits until the peer has proven itself; handshake frames carry no payload.
    this.#reader = new FrameReader(duplex, {
      maxPayloadBytes: 0,
      maxHeaderBytes: MAX_HANDSHAKE_HEADER_BYTES,
      chunkBytes: 0,
    });
    this.#writer = new FrameWriter(duplex, {
      maxPayloadBytes: this.#maxPayload,
      maxQueuedBytes: options.maxQueuedBytes ?? 128 * 1024 * 1024,
      stagingBytes: HANDSHAKE_STAGING_BYTES,
      onError: (error) => {
        if (this.#closing === undefined) {
          this.#terminate("remote", `connection lost: ${error.message}`);
        }
      },
    });
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  get peer(): Hello {
    if (this.#peer === undefined) throw new Error("link handshake has not finished");
    return this.#peer;
  }

  get isClosed(): boolean {
    return this.#closing !== undefined;
  }

  /** Bytes queued and not yet handed to the medium. */
  get queuedBytes(): number {
    return this.#writer.queuedBytes;
  }

  /** The medium's address of the peer, for logs. */
  get remote(): string {
    return this.#duplex.remote;
  }

  send(header: Header, payload?: Uint8Array): void {
    if (this.#closing !== undefined) {
      throw new LinkSendError(`link to ${this.#name()} is closed: ${this.#closing.reason}`);
    }
    if (CONTROL_TYPES.has(header.t)) {
      throw new LinkSendError(`header type "${header.t}" is reserved for the link itself`);
    }
    this.#writer.enqueue(header, payload);
  }

  drain(): Promise<void> {
    if (this.#writer.queuedBytes === 0) return Promise.resolve();
    if (this.#closing !== undefined) return Promise.reject(this.#closedError());
    return this.#writer.drain(() => this.#closedError());
  }

  receive(handler: (frame: Frame) => unknown): void {
    if (this.#handler !== undefined) throw new Error("receive() was already called on this link");
    this.#handler = handler;
    this.#deliverInbox();
    this.#wakeReader?.();
  }

  recycle(frame: Frame): void {
    this.#reader.recycle(frame);
  }

  /**
   * Where large payloads should land instead of the link's receive buffers: a receiver that
   * knows which caller's buffer a reply is for saves a copy of its data (see PayloadTarget).
   */
  setPayloadTarget(target: PayloadTarget | undefined): void {
    this.#reader.payloadTarget = target;
  }

  close(reason = "closed by this end"): void {
    this.#terminate("local", reason);
  }

  /** Runs the handshake; rejects with LinkRefused. */
  async handshake(): Promise<void> {
    const timeoutMs = this.#options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    let timedOut = false;
    const deadline = this.#clock.setTimeout(() => {
      timedOut = true;
      this.#duplex.close();
    }, timeoutMs);
    try {
      this.#peer = await runHandshake(this.#channel(), {
        role: this.#options.role,
        hello: this.local,
        secret: this.#options.secret,
        admit: this.#options.admit,
      });
      if (this.#abortReason !== undefined) throw new LinkRefused(this.#abortReason);
    } catch (error) {
      const why = this.#abortReason ??
        (timedOut
          ? `handshake timed out after ${timeoutMs} ms`
          : error instanceof LinkRefused
          ? error.message
          : `handshake failed: ${(error as Error).message}`);
      if (this.#options.onRefused !== undefined) this.#options.onRefused(this.remote, why);
      else this.#logger.log("warn", "link refused", { remote: this.remote, reason: why });
      this.#closing = { by: "error", reason: why };
      await this.#writer.done.catch(() => {});
      this.#duplex.close();
      await this.#duplex.finished;
      this.#resolveClosed(this.#closing);
      throw new LinkRefused(why);
    } finally {
      deadline.cancel();
    }
    // The peer is trusted now: full-size buffers and limits.
    this.#reader.setLimits({
      maxPayloadBytes: this.#maxPayload,
      ...(this.#options.chunkBytes === undefined ? {} : { chunkBytes: this.#options.chunkBytes }),
    });
    this.#writer.stagingBytes = STAGING_BYTES;
    this.#lastReceived = this.#lastWritten = this.#clock.now();
    this.#receivedSeen = this.#reader.received;
    this.#readDone = this.#readLoop();
    this.#armTimer();
  }

  /**
   * Ends a handshake still running: tells the peer why, then closes the stream (within a second
   * even when the peer reads nothing). {@link handshake} rejects with this reason.
   */
  abortHandshake(reason: string): void {
    if (this.#peer !== undefined || this.#closing !== undefined || this.#abortReason) return;
    this.#abortReason = reason;
    try {
      this.#writer.enqueue({ t: "refuse", reason });
    } catch { /* the queue is full: the stream just ends */ }
    const timer = this.#clock.setTimeout(() => this.#duplex.close(), 1000);
    void this.#writer.drain(() => new LinkRefused(reason)).catch(() => {}).finally(() => {
      timer.cancel();
      this.#duplex.close();
    });
  }

  #channel(): HandshakeChannel {
    return {
      send: (header) => this.#writer.enqueue(header),
      next: async () => {
        const frame = await this.#reader.next();
        if (frame === null) throw new LinkRefused("peer closed the stream during the handshake");
        if (frame.header.t === "refuse") {
          const refused = refuseSchema.safeParse(frame.header);
          throw new LinkRefused(
            `peer refused the link: ${refused.success ? refused.data.reason : "no reason given"}`,
          );
        }
        return frame.header;
      },
      refuse: async (why) => {
        // Tells the peer why, lets the words go out, and fails the handshake.
        this.#writer.enqueue({ t: "refuse", reason: why.slice(0, 4096) });
        await this.#writer.drain(() => new LinkRefused(why)).catch(() => {});
        throw new LinkRefused(why);
      },
    };
  }

  #name(): string {
    return this.#peer?.node ?? this.#duplex.remote;
  }

  #closedError(): LinkSendError {
    return new LinkSendError(`link to ${this.#name()} closed: ${this.#closing?.reason}`);
  }

  // ---- receiving ----

  /** Resolves when `wait` does or when the link starts closing, whichever is first. */
  #waitFor(wait: Promise<void>): Promise<void> {
    return Promise.race([wait, new Promise<void>((resolve) => (this.#wakeReader = resolve))])
      .finally(() => (this.#wakeReader = undefined));
  }

  async #readLoop(): Promise<void> {
    try {
      for (;;) {
        // Frames wait while the receiver holds them back or has not called receive() yet:
        // nothing more is read then, so what a peer can make this end buffer stays bounded.
        while (this.#closing === undefined && (this.#held !== undefined || this.#inbox.length)) {
          if (this.#held !== undefined) await this.#waitFor(this.#held);
          else if (this.#handler === undefined) await this.#waitFor(new Promise(() => {}));
          else this.#deliverInbox();
        }
        if (this.#closing !== undefined) return;
        const first = await this.#reader.next();
        if (this.#closing !== undefined) return;
        if (first === null) {
          this.#terminate("remote", "peer closed the stream without a goodbye");
          return;
        }
        this.#onFrame(first);
        // Handle every frame already buffered in this turn, so replies batch into one write.
        while (this.#closing === undefined && this.#held === undefined && this.#handler) {
          const next = this.#reader.poll();
          if (next === undefined) break;
          this.#onFrame(next);
        }
        if (this.#closing !== undefined) return;
      }
    } catch (error) {
      if (this.#closing !== undefined) return;
      if (error instanceof FrameError) {
        this.#terminate("error", `bad frame from peer: ${error.message}`);
      } else {
        this.#terminate("remote", `connection lost: ${(error as Error).message}`);
      }
    }
  }

  #onFrame(frame: ReceivedFrame): void {
    const t = frame.header.t;
    if (CONTROL_TYPES.has(t)) {
      this.#onControl(frame.header);
      this.#reader.recycle(frame);
      return;
    }
    const schema = this.#options.headerSchema;
    if (schema !== undefined) {
      const parsed = schema.safeParse(frame.header);
      if (!parsed.success) {
        this.#terminate("error", `invalid header from peer: ${describe(parsed.error)}`);
        return;
      }
      frame = frame.withHeader(parsed.data);
    }
    if (this.#handler === undefined || this.#held !== undefined || this.#inbox.length > 0) {
      this.#inbox.push(frame);
    } else {
      this.#deliver(frame);
    }
  }

  /** Delivers waiting frames in order until none is left or the receiver holds back. */
  #deliverInbox(): void {
    while (this.#inbox.length > 0 && this.#held === undefined && this.#closing === undefined) {
      this.#deliver(this.#inbox.shift()!);
    }
  }

  #deliver(frame: Frame): void {
    let result: unknown;
    try {
      result = this.#handler!(frame);
    } catch (error) {
      this.#terminate("error", `receive handler threw: ${(error as Error).message}`);
      return;
    }
    if (!(result instanceof Promise)) return;
    const held: Promise<void> = result.then(
      () => {
        if (this.#held === held) this.#held = undefined;
      },
      (error: Error) => {
        if (this.#held === held) this.#held = undefined;
        this.#terminate("error", `receive handler failed: ${error.message}`);
      },
    );
    this.#held = held;
  }

  #onControl(header: Header): void {
    switch (header.t) {
      case "ping":
      case "pong": {
        if (!pingSchema.safeParse(header).success) break;
        if (header.t === "ping") this.#writer.enqueue({ t: "pong" });
        return;
      }
      case "bye": {
        const bye = byeSchema.safeParse(header);
        if (!bye.success) break;
        this.#terminate("remote", `peer closed the link: ${bye.data.reason}`);
        return;
      }
      case "refuse": {
        const refused = refuseSchema.safeParse(header);
        if (!refused.success) break;
        this.#terminate("error", `peer refused the link: ${refused.data.reason}`);
        return;
      }
    }
    this.#terminate("error", `invalid control frame "${header.t}" from peer`);
  }

  // ---- keepalive and the write stall check ----

  #armTimer(): void {
    if (this.#closing !== undefined) return;
    const periods = [this.#writeStallMs];
    if (this.#keepAliveMs > 0) periods.push(this.#keepAliveMs, this.#deadAfterMs);
    const enabled = periods.filter((ms) => ms > 0);
    if (enabled.length === 0) return;
    const tick = Math.max(1, Math.min(...enabled) / 2);
    this.#keepAlive = this.#clock.setTimeout(() => {
      this.#keepAlive = undefined;
      if (this.#closing !== undefined) return;
      if (this.#onTick()) this.#armTimer();
    }, tick);
  }

  /** One timer tick; false once the link was closed for silence or a stalled peer. */
  #onTick(): boolean {
    const now = this.#clock.now();
    // Counters moved since the last tick (no clock read per read or write). While the receiver
    // holds frames back this end reads nothing on purpose: that is not the peer's silence.
    if (this.#reader.received !== this.#receivedSeen || this.#held !== undefined) {
      this.#receivedSeen = this.#reader.received;
      this.#lastReceived = now;
    }
    if (this.#writer.queuedBytes === 0 || this.#writer.progress !== this.#writtenSeen) {
      this.#writtenSeen = this.#writer.progress;
      this.#lastWritten = now;
    }
    const stalled = now - this.#lastWritten;
    if (this.#writeStallMs > 0 && stalled >= this.#writeStallMs) {
      this.#terminate(
        "error",
        `peer stopped reading: ${this.#writer.queuedBytes} bytes unsent for ` +
          `${Math.round(stalled)} ms`,
      );
      return false;
    }
    if (this.#keepAliveMs <= 0) return true;
    const silent = now - this.#lastReceived;
    if (silent >= this.#deadAfterMs) {
      this.#terminate("error", `peer silent for ${Math.round(silent)} ms`);
      return false;
    }
    // A receiver holding frames back reads no pongs, so it pings every tick: the peer still
    // hears that this end is alive, only busy.
    if (silent >= this.#keepAliveMs || this.#held !== undefined) {
      this.#writer.enqueue({ t: "ping" });
    }
    return true;
  }

  // ---- closing ----

  #terminate(by: LinkClosed["by"], reason: string): void {
    if (this.#closing !== undefined) return;
    const info: LinkClosed = { by, reason };
    this.#closing = info;
    this.#keepAlive?.cancel();
    this.#keepAlive = undefined;
    this.#logger.log(by === "error" ? "warn" : "info", "link closed", {
      peer: this.#name(),
      by,
      reason,
    });
    this.#wakeReader?.();
    void this.#shutDown(info);
  }

  async #shutDown(info: LinkClosed): Promise<void> {
    if (info.by === "local") {
      // Say goodbye after what is already queued, within a bound.
      try {
        this.#writer.enqueue({ t: "bye", reason: info.reason });
      } catch { /* queue full: the peer sees the stream end instead */ }
      let timer: Timer | undefined;
      const bounded = new Promise<void>((resolve) => {
        timer = this.#clock.setTimeout(resolve, CLOSE_FLUSH_MS);
      });
      const flushed = this.#writer.drain(() => this.#closedError()).catch(() => {});
      await Promise.race([flushed, bounded]);
      timer?.cancel();
    }
    this.#duplex.close();
    await Promise.all([this.#readDone, this.#writer.done.catch(() => {}), this.#duplex.finished]);
    this.#writer.fail(this.#closedError());
    this.#resolveClosed(info);
  }
}
