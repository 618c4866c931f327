/**
 * The remote node proxy: a BlockDevice that forwards to a `dst node` over any transport. It
 * learns the node's size and capabilities in the handshake, pipelines many requests with replies
 * matched by id, verifies the negotiated checksum on every payload (a mismatch is counted and the
 * request sent again, never returned or written), and when the link dies it reconnects with
 * jittered backoff and sends what was outstanding again, oldest first, before anything newer.
 * A request that gets no answer within its deadline fails with ETIMEDOUT ("maybe applied"); one
 * that waits for a lost node longer than the I/O timeout fails with EIO.
 *
 * An exporter's claim on the node (claim.ts) is carried across reconnects: every new link
 * claims again with the grant held, before anything outstanding is sent again. A node that
 * refuses it belongs to a newer owner: the proxy says so (`onFenced`), and the node answers
 * every change with EFENCED.
 */
import { shortfall } from "../block/info.ts";
import { newStorageId } from "../block/media.ts";
import { hold, type Release } from "../../util/buffer_lease.ts";
import {
  type BlockDevice,
  BlockError,
  type BlockInfo,
  type Extent,
  type MediaDevice,
  type MediaPatch,
  type MediaState,
  type ZeroOptions,
} from "../block/contract.ts";
import { backoffDelay, type BackoffOptions } from "../runtime/backoff.ts";
import type { Clock, Timer } from "../../util/clock.ts";
import { coarseSystemClock } from "../../util/coarse_clock.ts";
import { type Logger, silentLogger } from "../../util/log.ts";
import { osErrorCode, osReasonFor } from "../../util/os_error.ts";
import { type Random, systemRandom } from "../../util/random.ts";
import { dial, type DialOptions } from "../../transport/dial.ts";
import type { Frame, Header, Link } from "../../transport/types.ts";
import { type ChecksumName, CHECKSUMS, frameChecksum, negotiateChecksum } from "./checksum.ts";
import { describeGrant, type OwnerGrant } from "../block/owner_grant.ts";
import { type ClaimAnswer, FENCED_BYE } from "./claim.ts";
import {
  claimAnswerSchema,
  DATA_OPS,
  decodeJson,
  encodeJson,
  type ErrorReply,
  EXTENT_HOLE,
  EXTENT_ZERO,
  infoFromHello,
  mediaStateSchema,
  NODE_PROTOCOL_VERSION,
  nodeHeaderSchema,
  type NodeHello,
  nodeHelloSchema,
  type Op,
  type Reply,
  type Request,
  requestFlags,
} from "./protocol.ts";

export interface RemoteNodeOptions {
  /** Our identity in the handshake. */
  readonly node: string;
  readonly secret?: string | Uint8Array;
  readonly tls?: DialOptions["tls"];
  readonly transports?: DialOptions["transports"];
  readonly logger?: Logger;
  readonly clock?: Clock;
  readonly random?: Random;
  /** A request not answered within this fails with ETIMEDOUT. Default 30 s (or ioTimeoutMs). */
  readonly requestTimeoutMs?: number;
  /**
   * The first connection, connecting and the handshake together, must succeed within this;
   * each reconnect attempt is bounded by it too. Default 10 s.
   */
  readonly connectTimeoutMs?: number;
  /** Pacing of reconnect attempts. */
  readonly backoff?: BackoffOptions;
  /** Refuse a node whose media belongs to another storage. */
  readonly expectStorageId?: string;
  /** Checksums we accept, in order of preference (default: all this build knows). */
  readonly checksums?: readonly string[];
  readonly keepAliveMs?: number;
  readonly deadAfterMs?: number;
  /**
   * How long a request may wait for a lost node (link down, reconnecting) before it fails with
   * EIO, counted for each request from when it began waiting (default: until its own deadline).
   * A mirror leg sets 0: better to leave the in-sync set at once and resync later than to stall
   * every client write behind a dead node.
   */
  readonly ioTimeoutMs?: number;
  /** Told when the link goes down or comes back. */
  readonly onState?: (state: RemoteState) => void;
  /** Told when the node refuses the claim this proxy held: a newer owner has it. */
  readonly onFenced?: (why: string) => void;
  /**
   * The grant of the exporter this proxy works for, claimed on a link when the proxy holds
   * none yet (a node that was offline at start claims when it is first reached).
   */
  readonly owner?: () => OwnerGrant | undefined;
}

export type RemoteState = "connected" | "connecting" | "closed";

export interface RemoteStats {
  reconnects: number;
  /** Requests sent again after a reconnect. */
  resent: number;
  /** Payloads that failed their checksum, in either direction. */
  checksumErrors: number;
  timeouts: number;
}

interface Pending {
  readonly id: number;
  readonly header: Omit<Request, "id" | "ck">;
  readonly payload: Uint8Array | undefined;
  readonly into: Uint8Array | undefined;
  readonly resolve: (reply: { header: Reply; payload: Uint8Array }) => void;
  readonly reject: (error: BlockError) => void;
  timer: Timer | undefined;
  /** Runs while the request waits for a lost link; it fails the request at the I/O timeout. */
  waiting: Timer | undefined;
  /**
   * Lets go of the caller's buffers (the payload sent, the buffer a read lands in): held until
   * the request settles, whatever a deadline above did meanwhile (util/buffer_lease.ts).
   */
  release: Release;
}

/** Holds both buffers a request keeps a view of; one release lets go of both. */
function holdBoth(payload: Uint8Array | undefined, into: Uint8Array | undefined): Release {
  const a = payload === undefined ? undefined : hold(payload);
  const b = into === undefined ? undefined : hold(into);
  return () => {
    a?.();
    b?.();
  };
}

/** Fails when a hello is not a dst node's, or of another storage. */
function checkNode(link: Link, expectStorageId: string | undefined): NodeHello {
  const parsed = nodeHelloSchema.safeParse(link.peer.info);
  if (!parsed.success) {
    throw new BlockError("EIO", `${link.peer.node} is not a dst node: ${parsed.error.message}`);
  }
  if (expectStorageId !== undefined && parsed.data.storageId !== expectStorageId) {
    throw new BlockError(
      "EIO",
      `node ${link.peer.node} holds storage ${parsed.data.storageId ?? "(none)"}, ` +
        `expected ${expectStorageId}: refusing media of another storage`,
    );
  }
  return parsed.data;
}

/** What a proxy's hello says of its session: its id and the link's number. */
interface SessionHello {
  readonly id: string;
  readonly seq: number;
}

/**
 * A proxy's random id and its links' numbers: the node closes a proxy's older links and lets
 * their requests end before it serves a newer one (sessions.ts), so nothing sent on a link
 * this proxy gave up on lands after what it sends on the next.
 */
class LinkSession {
  readonly id: string;
  #seq = 0;

  constructor(random: Random | undefined) {
    this.id = newStorageId(random);
  }

  /** The hello of the next link dialled. */
  next(): SessionHello {
    return { id: this.id, seq: ++this.#seq };
  }
}

/** A connect attempt is not started with less time left than this (it could only time out). */
const MIN_ATTEMPT_MS = 50;

/** Requests that change the node: refused at once by a proxy that knows it was fenced. */
const CHANGES: ReadonlySet<Op> = new Set(["write", "flush", "trim", "zero", "setmedia", "wbitmap"]);

export class RemoteNode implements BlockDevice, MediaDevice {
  readonly url: string;
  readonly stats: RemoteStats = { reconnects: 0, resent: 0, checksumErrors: 0, timeouts: 0 };
  readonly #options: RemoteNodeOptions;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #logger: Logger;
  readonly #timeoutMs: number;
  readonly #pending = new Map<number, Pending>();
  #info: BlockInfo;
  /** Undefined while a node started offline has never been reached. */
  #hello: NodeHello | undefined;
  #link: Link | undefined;
  #algorithm: ChecksumName | undefined;
  #state: RemoteState = "connected";
  #nextId = 1;
  #attempt = 0;
  #retryTimer: Timer | undefined;
  /** The grant this proxy holds on the node, claimed again on every new link. */
  #grant: OwnerGrant | undefined;
  /** Why the node refused our claim, once it has. */
  #fenced: string | undefined;
  /** The claim sent on the current link, if any (replaced on the next). */
  #reclaimId: number | undefined;
  /** This proxy's links, numbered as dialled, for the node's sessions (sessions.ts). */
  readonly #session: LinkSession;

  private constructor(
    url: string,
    first: { link: Link; hello: NodeHello } | { expect: BlockInfo },
    options: RemoteNodeOptions,
    session: LinkSession,
  ) {
    this.url = url;
    this.#options = options;
    this.#session = session;
    this.#clock = options.clock ?? coarseSystemClock;
    this.#random = options.random ?? systemRandom;
    this.#logger = options.logger ?? silentLogger;
    // A request must be allowed to wait for its node as long as the I/O timeout says.
    this.#timeoutMs = options.requestTimeoutMs ?? Math.max(30_000, options.ioTimeoutMs ?? 0);
    if ("link" in first) {
      this.#hello = first.hello;
      this.#info = infoFromHello(first.hello);
      this.#attach(first.link);
    } else {
      this.#info = first.expect;
      this.#state = "connecting";
      this.#scheduleReconnect();
    }
  }

  /**
   * A node that cannot be reached now, standing in for one that must offer at least `expect`
   * (a mirror leg that is down when its mirror starts): it keeps dialling in the background,
   * and takes the node once it answers, if the node covers `expect`.
   */
  static offline(url: string, expect: BlockInfo, options: RemoteNodeOptions): RemoteNode {
    return new RemoteNode(url, { expect }, options, new LinkSession(options.random));
  }

  /** Connects (retrying with backoff up to the connect timeout) and learns the node's size. */
  static async connect(url: string, options: RemoteNodeOptions): Promise<RemoteNode> {
    const clock = options.clock ?? coarseSystemClock;
    const random = options.random ?? systemRandom;
    const deadline = clock.now() + (options.connectTimeoutMs ?? 10_000);
    const session = new LinkSession(options.random);
    let reason: string | undefined;
    for (let attempt = 1;; attempt++) {
      try {
        const link = await dial(url, {
          ...RemoteNode.#dialOptions(options, session.next()),
          timeoutMs: Math.max(1, deadline - clock.now()),
        });
        try {
          return new RemoteNode(
            url,
            { link, hello: checkNode(link, options.expectStorageId) },
            options,
            session,
          );
        } catch (error) {
          link.close("refused");
          throw error;
        }
      } catch (error) {
        const wait = backoffDelay(
          attempt,
          options.backoff ?? { initialMs: 50, maxMs: 2000 },
          random,
        );
        const why = error instanceof Error
          ? osErrorCode(error) === undefined ? error.message : osReasonFor("connect", error)
          : String(error);
        // The peer's own word (refused, server full) says more than our deadline running out
        // on a last, short attempt: keep it.
        if (reason === undefined || !/timed out|took over/.test(why)) reason = why;
        // An attempt with almost no time left can only time out: stop before it.
        if (error instanceof BlockError || clock.now() + wait + MIN_ATTEMPT_MS > deadline) {
          throw new BlockError("EIO", `cannot reach node ${url}: ${reason}`);
        }
        await new Promise<void>((resolve) => clock.setTimeout(resolve, wait));
      }
    }
  }

  static #dialOptions(options: RemoteNodeOptions, session: SessionHello): DialOptions {
    return {
      hello: {
        version: NODE_PROTOCOL_VERSION,
        node: options.node,
        info: { role: "proxy", checksums: [...(options.checksums ?? CHECKSUMS)], session },
      },
      headerSchema: nodeHeaderSchema,
      ...(options.secret === undefined ? {} : { secret: options.secret }),
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      ...(options.transports === undefined ? {} : { transports: options.transports }),
      ...(options.logger === undefined ? {} : { logger: options.logger }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.keepAliveMs === undefined ? {} : { keepAliveMs: options.keepAliveMs }),
      ...(options.deadAfterMs === undefined ? {} : { deadAfterMs: options.deadAfterMs }),
    };
  }

  get state(): RemoteState {
    return this.#state;
  }

  /** The checksum this link agreed on, if any. */
  get checksum(): ChecksumName | undefined {
    return this.#algorithm;
  }

  /** The storage id the node announced. */
  get storageId(): string | undefined {
    return this.#hello?.storageId;
  }

  /** The node's identity, from the handshake. */
  get peer(): string | undefined {
    return this.#link?.peer.node;
  }

  info(): BlockInfo {
    return this.#info;
  }

  /** The owner grant this proxy holds on the node, if it claimed it. */
  get grant(): OwnerGrant | undefined {
    return this.#grant;
  }

  /** Why the node refused this proxy's claim (a newer owner has it), once it has. */
  get fenced(): string | undefined {
    return this.#fenced;
  }

  /**
   * Claims the node with `grant`. When granted, the grant is held (claimed again on every new
   * link); when not, the answer says who holds the node.
   */
  async claim(grant: OwnerGrant): Promise<ClaimAnswer> {
    const body = encodeJson(grant);
    const { payload } = await this.#request(
      { t: "rq", op: "claim", off: 0, len: body.length },
      body,
    );
    const answer = this.#claimAnswer(payload);
    if (answer.granted) {
      this.#grant = grant;
      this.#fenced = undefined;
    }
    return answer;
  }

  #claimAnswer(payload: Uint8Array): ClaimAnswer {
    try {
      return decodeJson(claimAnswerSchema, payload, "claim answer");
    } catch (error) {
      throw new BlockError("EIO", `node ${this.url}: ${(error as Error).message}`);
    }
  }

  /** Claims again on a new link, ahead of what it sends again. */
  #reclaim(link: Link, grant: OwnerGrant): void {
    const body = encodeJson(grant);
    const p: Pending = {
      id: this.#nextId++,
      header: { t: "rq", op: "claim", off: 0, len: body.length },
      payload: body,
      into: undefined,
      release: () => {},
      resolve: ({ payload }) => {
        let answer: ClaimAnswer;
        try {
          answer = this.#claimAnswer(payload);
        } catch {
          return;
        }
        if (answer.granted) {
          this.#grant = grant;
          return;
        }
        // Refused before this proxy held anything (first contact): the exporter's own claim
        // decides (owner.ts); refused after: a newer owner took the node from us.
        if (this.#grant !== undefined) this.#refused(this.#grant, answer.current);
      },
      reject: () => {}, // the link went again: the next one claims again
      timer: undefined,
      waiting: undefined,
    };
    this.#reclaimId = p.id;
    this.#pending.set(p.id, p);
    this.#send(link, p);
  }

  #refused(held: OwnerGrant, current: OwnerGrant | undefined, said?: string): void {
    if (this.#fenced !== undefined) return;
    const now = current === undefined
      ? said?.slice(said.indexOf(FENCED_BYE) + FENCED_BYE.length + 1) ?? "a newer owner"
      : describeGrant(current);
    const why = `node ${this.url} now belongs to ${now}; this exporter held ` +
      `${describeGrant(held)}: fenced`;
    this.#fenced = why;
    this.#logger.log("error", "fenced: the node was claimed by a newer owner", {
      node: this.url,
      held: held.epoch,
      ...(current === undefined ? { said } : { current: current.epoch, owner: current.label }),
    });
    this.#options.onFenced?.(why);
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const { payload } = await this.#request(
      { t: "rq", op: "read", off: offset, len: length },
      undefined,
      into,
    );
    // With `into`, #onFrame has already copied the data there and this is a view of it.
    return payload;
  }

  async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    await this.#request({ t: "rq", op: "write", off: offset, len: data.length, fua }, data);
  }

  async flush(): Promise<void> {
    await this.#simple("flush", 0, 0);
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    await this.#request({ t: "rq", op: "trim", off: offset, len: length, fua });
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    await this.#request({
      t: "rq",
      op: "zero",
      off: offset,
      len: length,
      fua: options.fua,
      fz: options.fastZero,
      mt: options.mayTrim,
    });
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    const { header } = await this.#simple("extents", offset, length);
    return (header.ext ?? [[length, 0]]).map(([len, flags]) => ({
      length: len,
      hole: (flags & EXTENT_HOLE) !== 0,
      zero: (flags & EXTENT_ZERO) !== 0,
    }));
  }

  async cache(offset: number, length: number): Promise<void> {
    await this.#simple("cache", offset, length);
  }

  /** The node's media state (ENOTSUP from a node that keeps none). */
  async media(): Promise<MediaState> {
    const { payload } = await this.#simple("media", 0, 0);
    return this.#mediaState(payload);
  }

  async updateMedia(patch: MediaPatch): Promise<MediaState> {
    const body = encodeJson(patch);
    const { payload } = await this.#request(
      { t: "rq", op: "setmedia", off: 0, len: body.length },
      body,
    );
    return this.#mediaState(payload);
  }

  async readBitmap(): Promise<Uint8Array> {
    const { payload } = await this.#simple("rbitmap", 0, 0);
    return payload.slice();
  }

  async storeBitmap(at: number, bytes: Uint8Array): Promise<void> {
    await this.#request({ t: "rq", op: "wbitmap", off: at, len: bytes.length }, bytes);
  }

  async digest(offset: number, length: number, chunk: number): Promise<Uint8Array> {
    const { payload } = await this.#request({
      t: "rq",
      op: "digest",
      off: offset,
      len: length,
      ch: chunk,
    });
    return payload.slice();
  }

  #mediaState(payload: Uint8Array): MediaState {
    let state;
    try {
      state = decodeJson(mediaStateSchema, payload, "media state");
    } catch (error) {
      throw new BlockError("EIO", `node ${this.url}: ${(error as Error).message}`);
    }
    return { ...state, storageId: state.storageId ?? undefined };
  }

  /** Stops reconnecting, fails what is outstanding with ESHUTDOWN, closes the link. */
  close(): Promise<void> {
    if (this.#state === "closed") return Promise.resolve();
    this.#setState("closed");
    this.#retryTimer?.cancel();
    for (const p of [...this.#pending.values()]) {
      this.#settle(p);
      p.reject(new BlockError("ESHUTDOWN", `remote node ${this.url} was closed`));
    }
    const link = this.#link;
    this.#link = undefined;
    if (link === undefined) return Promise.resolve();
    link.close("proxy closed");
    return link.closed.then(() => {});
  }

  #simple(op: Op, off: number, len: number) {
    return this.#request({ t: "rq", op, off, len });
  }

  #request(
    header: Omit<Request, "id" | "ck">,
    payload?: Uint8Array,
    into?: Uint8Array,
  ): Promise<{ header: Reply; payload: Uint8Array }> {
    if (this.#state === "closed") {
      return Promise.reject(new BlockError("ESHUTDOWN", `remote node ${this.url} was closed`));
    }
    if (this.#fenced !== undefined && CHANGES.has(header.op)) {
      return Promise.reject(new BlockError("EFENCED", this.#fenced));
    }
    if (this.#link === undefined && this.#options.ioTimeoutMs === 0) {
      return Promise.reject(new BlockError("EIO", `link to node ${this.url} is down`));
    }
    const { off, len } = header;
    // Never put on the wire what the node's schema would refuse: that would cost the link.
    if (
      !Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < 0 || len < 0 ||
      (DATA_OPS.has(header.op) && off + len > this.#info.size)
    ) {
      return Promise.reject(
        new BlockError("EINVAL", `range ${off}+${len} is outside the device (${this.#info.size})`),
      );
    }
    return new Promise((resolve, reject) => {
      const id = this.#nextId++;
      const p: Pending = {
        id,
        header,
        payload,
        into,
        resolve,
        reject,
        timer: undefined,
        waiting: undefined,
        release: holdBoth(payload, into),
      };
      p.timer = this.#clock.setTimeout(() => {
        this.stats.timeouts++;
        this.#settle(p);
        reject(
          new BlockError("ETIMEDOUT", `node ${this.url} did not answer ${header.op} ${id} in time`),
        );
      }, this.#timeoutMs);
      this.#pending.set(id, p);
      if (this.#link !== undefined) this.#send(this.#link, p);
      else this.#waitForLink(p);
    });
  }

  #send(link: Link, p: Pending): void {
    const h = p.header;
    const header: Header = this.#algorithm === undefined ? { ...h, id: p.id } : {
      ...h,
      id: p.id,
      ck: frameChecksum(this.#algorithm, {
        kind: "rq",
        op: h.op,
        id: p.id,
        off: h.off,
        len: h.len,
        flags: requestFlags(h),
      }, p.payload),
    };
    try {
      link.send(header, p.payload);
    } catch {
      // The link is closing; the request stays pending and goes out again after reconnect.
    }
  }

  #settle(p: Pending): void {
    p.timer?.cancel();
    p.waiting?.cancel();
    this.#pending.delete(p.id);
    p.release();
  }

  /** A read reply's data lands straight in the buffer its caller is waiting with. */
  #payloadTarget = (header: Header, payloadBytes: number): Uint8Array | undefined => {
    const id = header.id;
    if (header.t !== "ok" || typeof id !== "number") return undefined;
    const p = this.#pending.get(id);
    if (p === undefined || p.into === undefined || p.header.op !== "read") return undefined;
    return p.header.len === payloadBytes ? p.into.subarray(0, payloadBytes) : undefined;
  };

  /** The request waits for the link to come back, at most the I/O timeout. */
  #waitForLink(p: Pending): void {
    const limit = this.#options.ioTimeoutMs;
    if (limit === undefined || p.waiting !== undefined) return;
    const fail = () => {
      this.#settle(p);
      const waited = limit === 0 ? "" : ` (${p.header.op} waited ${limit} ms, the I/O timeout)`;
      p.reject(new BlockError("EIO", `link to node ${this.url} is down${waited}`));
    };
    if (limit === 0) fail();
    else p.waiting = this.#clock.setTimeout(fail, limit);
  }

  #attach(link: Link): void {
    this.#link = link;
    this.#algorithm = negotiateChecksum(
      this.#options.checksums ?? CHECKSUMS,
      this.#hello!.checksums,
    );
    link.receive((frame) => this.#onFrame(link, frame));
    link.setPayloadTarget?.(this.#payloadTarget);
    for (const p of this.#pending.values()) {
      p.waiting?.cancel();
      p.waiting = undefined;
    }
    void link.closed.then((closed) => {
      if (this.#link !== link) return;
      this.#link = undefined;
      if (this.#state === "closed") return;
      if (closed.by === "remote" && closed.reason.includes(FENCED_BYE) && this.#grant) {
        // A newer owner claimed the node: what waits here is refused, not a lost link's.
        this.#refused(this.#grant, undefined, closed.reason);
        for (const p of [...this.#pending.values()]) {
          if (!CHANGES.has(p.header.op)) continue;
          this.#settle(p);
          p.reject(new BlockError("EFENCED", this.#fenced!));
        }
      }
      this.#logger.log("warn", "link to node lost; reconnecting", {
        node: this.url,
        reason: closed.reason,
        pending: this.#pending.size,
      });
      this.#setState("connecting");
      this.#attempt = 0;
      this.#scheduleReconnect();
      for (const p of [...this.#pending.values()]) this.#waitForLink(p);
    });
    // The claim goes first, so what follows it is judged under it; then outstanding requests
    // go out again in the order they were first made (ids ascend).
    if (this.#reclaimId !== undefined) this.#pending.delete(this.#reclaimId);
    const resend = [...this.#pending.values()];
    // The exporter's grant only grows: claim with it when there is one, else with the held one.
    const grant = this.#options.owner?.() ?? this.#grant;
    if (grant !== undefined) this.#reclaim(link, grant);
    for (const p of resend) {
      this.stats.resent++;
      this.#send(link, p);
    }
  }

  #scheduleReconnect(): void {
    const wait = backoffDelay(
      ++this.#attempt,
      this.#options.backoff ?? { initialMs: 50, maxMs: 2000 },
      this.#random,
    );
    this.#retryTimer = this.#clock.setTimeout(() => void this.#reconnect(), wait);
  }

  /** A method, not a field read, so checks after an await are not narrowed away. */
  #isClosed(): boolean {
    return this.#state === "closed";
  }

  async #reconnect(): Promise<void> {
    if (this.#isClosed()) return;
    let link: Link;
    try {
      link = await dial(this.url, {
        ...RemoteNode.#dialOptions(this.#options, this.#session.next()),
        timeoutMs: this.#options.connectTimeoutMs ?? 10_000,
      });
    } catch (error) {
      this.#logger.log("debug", "reconnect failed", { node: this.url, error: String(error) });
      if (!this.#isClosed()) this.#scheduleReconnect();
      return;
    }
    if (this.#isClosed()) {
      link.close("proxy closed");
      return;
    }
    let hello: NodeHello;
    try {
      // Only an explicit expectation is checked here: the storage id on the media changes when a
      // mirror adopts the leg, and what the media holds is the mirror's to judge (by age and
      // generations) once the link is back.
      hello = checkNode(link, this.#options.expectStorageId);
      if (this.#hello === undefined) {
        // First contact with a node started offline: it must offer what was promised for it.
        const short = shortfall(infoFromHello(hello), this.#info);
        if (short !== undefined) throw new BlockError("EIO", `it cannot stand in: ${short}`);
      } else if (hello.size !== this.#hello.size) {
        throw new BlockError("EIO", `node size changed from ${this.#hello.size} to ${hello.size}`);
      }
    } catch (error) {
      this.#logger.log("error", "node came back as something else; not using it", {
        node: this.url,
        error: (error as Error).message,
      });
      link.close("refused: not the same node");
      this.#scheduleReconnect();
      return;
    }
    this.#hello = hello;
    this.stats.reconnects++;
    this.#logger.log("info", "link to node restored", {
      node: this.url,
      resending: this.#pending.size,
    });
    this.#attach(link);
    this.#setState("connected");
  }

  #onFrame(link: Link, frame: Frame): void {
    const header = frame.header as Reply | ErrorReply;
    const p = this.#pending.get(header.id);
    if (p === undefined) {
      link.recycle(frame); // a late reply to a request that timed out
      return;
    }
    if (this.#algorithm !== undefined) {
      const bound = {
        kind: header.t,
        op: p.header.op,
        id: p.id,
        off: p.header.off,
        len: p.header.len,
        flags: 0,
      };
      if (header.ck !== frameChecksum(this.#algorithm, bound, frame.payload)) {
        // Nothing in a corrupted frame can be trusted, not even its id: drop the link; the
        // reconnect sends every outstanding request again.
        this.stats.checksumErrors++;
        this.#logger.log("warn", "reply failed its checksum; reconnecting to resend", {
          node: this.url,
        });
        link.close("checksum mismatch: the link corrupts data");
        return;
      }
    }
    if (header.t === "er") {
      this.#settle(p);
      link.recycle(frame);
      p.reject(new BlockError(header.code, `node ${this.url}: ${header.msg}`));
      return;
    }
    if (p.header.op === "read" && frame.payload.length !== p.header.len) {
      link.close(`read ${p.id} returned ${frame.payload.length} bytes, asked ${p.header.len}`);
      return;
    }
    if (frame.payload.length === 0) {
      this.#settle(p);
      link.recycle(frame);
      p.resolve({ header, payload: frame.payload });
    } else if (p.into !== undefined) {
      // Already there when the link read it into the caller's buffer; else one copy, and the
      // link gets its receive memory back at once.
      const view = p.into.subarray(0, frame.payload.length);
      const landed = frame.payload.buffer === view.buffer &&
        frame.payload.byteOffset === view.byteOffset;
      if (!landed) view.set(frame.payload);
      link.recycle(frame);
      this.#settle(p);
      p.resolve({ header, payload: view });
    } else {
      this.#settle(p);
      p.resolve({ header, payload: frame.payload }); // the caller owns the payload now
    }
  }

  #setState(state: RemoteState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#options.onState?.(state);
  }
}
