/**
 * The framed, handshaken link over any Duplex: hello exchange with version check and an optional
 * shared-secret challenge–response, keepalive, header validation with zod at the boundary, and
 * write batching through a reused staging buffer. Written once so every medium behaves the same.
 */

import { createHmac, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import type { Clock, Timer } from "../util/clock.ts";
import { systemClock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { silentLogger } from "../util/log.ts";
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  encodeHeader,
  FrameError,
  FrameReader,
  PREFIX_BYTES,
  ReceivedFrame,
  writePrefix,
} from "./frame.ts";
import type { Duplex, Frame, Header, Hello, Link, LinkClosed } from "./types.ts";

/** How a link is opened. Only `hello` is required. */
export interface LinkOptions {
  /** What this end says about itself. */
  readonly hello: Hello;
  /** When set, both ends must prove they hold it; a peer without it is refused. */
  readonly secret?: string | Uint8Array;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** The whole handshake must finish within this. Default 5000. */
  readonly handshakeTimeoutMs?: number;
  /** Ping when nothing arrived for this long; 0 turns keepalive off. Default 1000. */
  readonly keepAliveMs?: number;
  /** Close the link when nothing arrived for this long. Default 5000. */
  readonly deadAfterMs?: number;
  /** Largest payload sent or accepted. Default 64 MiB. */
  readonly maxPayloadBytes?: number;
  /** Bound on bytes queued and not yet handed to the medium. Default 128 MiB. */
  readonly maxQueuedBytes?: number;
  /** Validates every application header; a failing frame closes the link. */
  readonly headerSchema?: z.ZodType<Header>;
  /** Receive chunk size. Default 256 KiB. */
  readonly chunkBytes?: number;
}

/** The handshake failed: version mismatch, wrong or missing secret, deadline, bad hello. */
export class LinkRefused extends Error {
  override readonly name = "LinkRefused";
}

/** A send on a link that is closed or whose queue is full. */
export class LinkSendError extends Error {
  override readonly name = "LinkSendError";
}

const EMPTY = new Uint8Array(0);
/** Payloads up to this size are copied into the staging buffer; larger ones are written as is. */
const INLINE_PAYLOAD_BYTES = 64 * 1024;
const STAGING_BYTES = 256 * 1024;
const NONCE_BYTES = 16;
const AUTH_LABEL = new TextEncoder().encode("dst link auth v1");
/** How long a local close waits for queued frames and the goodbye to go out. */
const CLOSE_FLUSH_MS = 2000;

const bytes = z.instanceof(Uint8Array);
const reason = z.string().max(4096);
const helloVersionSchema = z.object({ t: z.literal("hello"), version: z.number().int() });
const helloSchema = z.object({
  t: z.literal("hello"),
  version: z.number().int(),
  node: z.string().min(1).max(1024),
  info: z.record(z.string(), z.unknown()),
  nonce: bytes.refine((b) => b.length === NONCE_BYTES, "nonce must be 16 bytes"),
  auth: z.boolean(),
});
const authSchema = z.object({ t: z.literal("auth"), proof: bytes });
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

function proofOf(secret: string | Uint8Array, nonce: Uint8Array, node: string): Uint8Array {
  return createHmac("sha256", secret).update(AUTH_LABEL).update(nonce).update(node).digest();
}

/**
 * Opens a link over `duplex`: runs the handshake and resolves once both ends agreed, or rejects
 * with {@link LinkRefused} (the duplex is closed then).
 */
export async function openLink(duplex: Duplex, options: LinkOptions): Promise<Link> {
  const link = new FramedLink(duplex, options);
  await link.handshake();
  return link;
}

interface Batch {
  staging: Uint8Array;
  segments: Uint8Array[];
  bytes: number;
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
  readonly #maxPayload: number;
  readonly #maxQueued: number;
  readonly #keepAliveMs: number;
  readonly #deadAfterMs: number;

  #handler: ((frame: Frame) => void) | undefined;
  #inbox: Frame[] = [];
  #handlerSet: (() => void) | undefined;
  #lastReceived: number;
  #receivedSeen = 0;
  #keepAlive: Timer | undefined;

  // Write side: frames are staged into `#staging` while the previous batch is being written
  // from the other staging buffer; a batch is a list of segments written in order.
  #staging: Uint8Array = new Uint8Array(STAGING_BYTES);
  #spare: Uint8Array | undefined = new Uint8Array(STAGING_BYTES);
  #stagedAt = 0;
  #segmentStart = 0;
  #segments: Uint8Array[] = [];
  #pendingBytes = 0;
  #queuedBytes = 0;
  #writing = false;
  #flushQueued = false;
  #drainWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  #writeDone: Promise<void> = Promise.resolve();
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
    this.#maxQueued = options.maxQueuedBytes ?? 128 * 1024 * 1024;
    this.#keepAliveMs = options.keepAliveMs ?? 1000;
    this.#deadAfterMs = options.deadAfterMs ?? 5000;
    this.#lastReceived = this.#clock.now();
    const readerOptions = options.chunkBytes === undefined
      ? { maxPayloadBytes: this.#maxPayload }
      : { maxPayloadBytes: this.#maxPayload, chunkBytes: options.chunkBytes };
    this.#reader = new FrameReader(duplex, readerOptions);
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
    return this.#queuedBytes;
  }

  /** The medium's address of the peer, for logs. */
  get remote(): string {
    return this.#duplex.remote;
  }

  send(header: Header, payload: Uint8Array = EMPTY): void {
    if (this.#closing !== undefined) {
      throw new LinkSendError(`link to ${this.#name()} is closed: ${this.#closing.reason}`);
    }
    if (CONTROL_TYPES.has(header.t)) {
      throw new LinkSendError(`header type "${header.t}" is reserved for the link itself`);
    }
    this.#enqueue(header, payload);
  }

  drain(): Promise<void> {
    if (this.#queuedBytes === 0) return Promise.resolve();
    if (this.#closing !== undefined) {
      return Promise.reject(
        new LinkSendError(`link to ${this.#name()} closed: ${this.#closing.reason}`),
      );
    }
    return new Promise((resolve, reject) => this.#drainWaiters.push({ resolve, reject }));
  }

  receive(handler: (frame: Frame) => void): void {
    if (this.#handler !== undefined) throw new Error("receive() was already called on this link");
    this.#handler = handler;
    const early = this.#inbox;
    this.#inbox = [];
    for (const frame of early) {
      if (this.#closing !== undefined) return;
      this.#deliver(frame);
    }
    this.#handlerSet?.();
  }

  recycle(frame: Frame): void {
    this.#reader.recycle(frame);
  }

  close(reason = "closed by this end"): void {
    this.#terminate("local", reason);
  }

  /** Runs the hello exchange (and the secret proof); rejects with LinkRefused. */
  async handshake(): Promise<void> {
    const timeoutMs = this.#options.handshakeTimeoutMs ?? 5000;
    let timedOut = false;
    const deadline = this.#clock.setTimeout(() => {
      timedOut = true;
      this.#duplex.close();
    }, timeoutMs);
    try {
      await this.#exchange();
    } catch (error) {
      const why = timedOut
        ? `handshake timed out after ${timeoutMs} ms`
        : error instanceof LinkRefused
        ? error.message
        : `handshake failed: ${(error as Error).message}`;
      this.#logger.log("warn", "link refused", { remote: this.#duplex.remote, reason: why });
      this.#closing = { by: "error", reason: why };
      await this.#writeDone.catch(() => {});
      this.#duplex.close();
      await this.#duplex.finished;
      this.#resolveClosed(this.#closing);
      throw new LinkRefused(why);
    } finally {
      deadline.cancel();
    }
    this.#lastReceived = this.#clock.now();
    this.#receivedSeen = this.#reader.received;
    this.#readDone = this.#readLoop();
    this.#armKeepAlive();
  }

  async #exchange(): Promise<void> {
    const secret = this.#options.secret;
    const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    const { version, node, info } = this.local;
    this.#enqueue({ t: "hello", version, node, info, nonce, auth: secret !== undefined });

    const first = await this.#nextHandshakeFrame();
    const versioned = helloVersionSchema.safeParse(first.header);
    if (!versioned.success) {
      throw new LinkRefused(`invalid hello from peer: ${describe(versioned.error)}`);
    }
    if (versioned.data.version !== version) {
      await this.#refuse(`peer speaks protocol ${versioned.data.version}, we speak ${version}`);
    }
    const hello = helloSchema.safeParse(first.header);
    if (!hello.success) await this.#refuse(`invalid hello from peer: ${describe(hello.error)}`);
    const peer = hello.data!;
    if (secret === undefined) {
      if (peer.auth) await this.#refuse("peer requires a shared secret and this end has none");
    } else {
      if (!peer.auth) await this.#refuse("peer has no shared secret and this end requires one");
      // Our proof covers the peer's fresh nonce and our identity, so it cannot be replayed.
      this.#enqueue({ t: "auth", proof: proofOf(secret, peer.nonce, node) });
      const answer = await this.#nextHandshakeFrame();
      const auth = authSchema.safeParse(answer.header);
      if (!auth.success) await this.#refuse(`invalid auth from peer: ${describe(auth.error)}`);
      const expected = proofOf(secret, nonce, peer.node);
      const proof = auth.data!.proof;
      if (proof.length !== expected.length || !timingSafeEqual(proof, expected)) {
        await this.#refuse("peer failed the shared-secret proof (wrong secret)");
      }
    }
    this.#peer = { version: peer.version, node: peer.node, info: peer.info };
  }

  /** The next frame during the handshake; a `refuse` from the peer ends it with its reason. */
  async #nextHandshakeFrame(): Promise<Frame> {
    const frame = await this.#reader.next();
    if (frame === null) throw new LinkRefused("peer closed the stream during the handshake");
    if (frame.header.t === "refuse") {
      const refused = refuseSchema.safeParse(frame.header);
      throw new LinkRefused(
        `peer refused the link: ${refused.success ? refused.data.reason : "no reason given"}`,
      );
    }
    return frame;
  }

  /** Tells the peer why, lets the words go out, and fails the handshake. */
  async #refuse(why: string): Promise<never> {
    this.#enqueue({ t: "refuse", reason: why });
    await this.drain().catch(() => {});
    throw new LinkRefused(why);
  }

  #name(): string {
    return this.#peer?.node ?? this.#duplex.remote;
  }

  // ---- receiving ----

  async #readLoop(): Promise<void> {
    try {
      for (;;) {
        if (this.#handler === undefined && this.#inbox.length > 0) {
          // Nobody listens yet: stop reading so early frames stay bounded.
          await new Promise<void>((resolve) => (this.#handlerSet = resolve));
          this.#handlerSet = undefined;
          if (this.#closing !== undefined) return;
        }
        const first = await this.#reader.next();
        if (this.#closing !== undefined) return;
        if (first === null) {
          this.#terminate("remote", "peer closed the stream without a goodbye");
          return;
        }
        this.#onFrame(first);
        // Handle every frame already buffered in this turn, so replies batch into one write.
        while (this.#closing === undefined) {
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
    if (this.#handler === undefined) this.#inbox.push(frame);
    else this.#deliver(frame);
  }

  #deliver(frame: Frame): void {
    try {
      this.#handler!(frame);
    } catch (error) {
      this.#terminate("error", `receive handler threw: ${(error as Error).message}`);
    }
  }

  #onControl(header: Header): void {
    switch (header.t) {
      case "ping":
      case "pong": {
        if (!pingSchema.safeParse(header).success) break;
        if (header.t === "ping") this.#enqueue({ t: "pong" });
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

  // ---- keepalive ----

  #armKeepAlive(): void {
    if (this.#keepAliveMs <= 0 || this.#closing !== undefined) return;
    const tick = Math.max(1, Math.min(this.#keepAliveMs, this.#deadAfterMs) / 2);
    this.#keepAlive = this.#clock.setTimeout(() => {
      this.#keepAlive = undefined;
      if (this.#closing !== undefined) return;
      const now = this.#clock.now();
      if (this.#reader.received !== this.#receivedSeen) {
        // Bytes arrived since the last tick (the reader counts them; no clock read per read).
        this.#receivedSeen = this.#reader.received;
        this.#lastReceived = now;
      }
      const silent = now - this.#lastReceived;
      if (silent >= this.#deadAfterMs) {
        this.#terminate("error", `peer silent for ${Math.round(silent)} ms`);
        return;
      }
      if (silent >= this.#keepAliveMs) this.#enqueue({ t: "ping" });
      this.#armKeepAlive();
    }, tick);
  }

  // ---- sending ----

  #enqueue(header: Header, payload: Uint8Array = EMPTY): void {
    if (payload.length > this.#maxPayload) {
      throw new LinkSendError(
        `payload of ${payload.length} bytes is over the link's ${this.#maxPayload} byte limit`,
      );
    }
    const head = encodeHeader(header);
    const size = PREFIX_BYTES + head.length + payload.length;
    if (this.#queuedBytes > 0 && this.#queuedBytes + size > this.#maxQueued) {
      throw new LinkSendError(
        `send queue full (${this.#queuedBytes} bytes queued, limit ${this.#maxQueued}): ` +
          "await link.drain() before sending more",
      );
    }
    const inline = payload.length <= INLINE_PAYLOAD_BYTES;
    const staged = PREFIX_BYTES + head.length + (inline ? payload.length : 0);
    if (this.#stagedAt + staged > this.#staging.length) {
      // The staging buffer is full: keep what is staged as a segment and start a fresh one.
      this.#cutSegment();
      this.#staging = new Uint8Array(Math.max(STAGING_BYTES, staged));
      this.#stagedAt = this.#segmentStart = 0;
    }
    const at = this.#stagedAt;
    writePrefix(this.#staging, at, head.length, payload.length);
    this.#staging.set(head, at + PREFIX_BYTES);
    if (inline && payload.length > 0) this.#staging.set(payload, at + PREFIX_BYTES + head.length);
    this.#stagedAt = at + staged;
    if (!inline) {
      this.#cutSegment();
      this.#segments.push(payload);
    }
    this.#pendingBytes += size;
    this.#queuedBytes += size;
    if (!this.#writing && !this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#startWriting());
    }
  }

  #cutSegment(): void {
    if (this.#stagedAt > this.#segmentStart) {
      this.#segments.push(this.#staging.subarray(this.#segmentStart, this.#stagedAt));
    }
    this.#segmentStart = this.#stagedAt;
  }

  #takeBatch(): Batch | undefined {
    this.#cutSegment();
    if (this.#segments.length === 0) return undefined;
    const batch = { staging: this.#staging, segments: this.#segments, bytes: this.#pendingBytes };
    this.#segments = [];
    this.#pendingBytes = 0;
    // Stage new frames in the other buffer while this batch is written.
    this.#staging = this.#spare ?? new Uint8Array(STAGING_BYTES);
    this.#spare = undefined;
    this.#stagedAt = this.#segmentStart = 0;
    return batch;
  }

  #startWriting(): void {
    this.#flushQueued = false;
    if (this.#writing) return;
    this.#writing = true;
    this.#writeDone = this.#writeLoop();
  }

  async #writeLoop(): Promise<void> {
    try {
      for (;;) {
        const batch = this.#takeBatch();
        if (batch === undefined) break;
        if (this.#duplex.writev !== undefined) {
          await this.#duplex.writev(batch.segments);
        } else {
          for (const segment of batch.segments) await this.#duplex.write(segment);
        }
        this.#queuedBytes -= batch.bytes;
        if (batch.staging.length === STAGING_BYTES) this.#spare = batch.staging;
      }
    } catch (error) {
      this.#writing = false;
      if (this.#closing === undefined) {
        this.#terminate("remote", `connection lost: ${(error as Error).message}`);
      }
      this.#failDrainWaiters();
      return;
    }
    this.#writing = false;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const waiter of waiters) waiter.resolve();
  }

  #failDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    const error = new LinkSendError(`link to ${this.#name()} closed: ${this.#closing?.reason}`);
    for (const waiter of waiters) waiter.reject(error);
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
    this.#handlerSet?.();
    void this.#shutDown(info);
  }

  async #shutDown(info: LinkClosed): Promise<void> {
    if (info.by === "local") {
      // Say goodbye after what is already queued, within a bound.
      try {
        this.#enqueue({ t: "bye", reason: info.reason });
      } catch { /* queue full: the peer sees the stream end instead */ }
      let timer: Timer | undefined;
      const bounded = new Promise<void>((resolve) => {
        timer = this.#clock.setTimeout(resolve, CLOSE_FLUSH_MS);
      });
      const flushed = new Promise<void>((resolve) => {
        if (this.#queuedBytes === 0) resolve();
        else this.#drainWaiters.push({ resolve, reject: () => resolve() });
      });
      await Promise.race([flushed, bounded]);
      timer?.cancel();
    }
    this.#duplex.close();
    await Promise.all([this.#readDone, this.#writeDone.catch(() => {}), this.#duplex.finished]);
    this.#failDrainWaiters();
    this.#resolveClosed(info);
  }
}
