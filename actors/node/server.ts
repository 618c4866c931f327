/**
 * The node server: serves one block device to remote node proxies over any transport. Each link
 * pipelines requests; replies go back in completion order. Writes (and trims, zeros) to
 * overlapping ranges are applied in arrival order across all links, so a write retried on a new
 * link can never be overtaken by a stale copy still running from the link that died.
 *
 * What a peer can make it hold is bounded: links and pending handshakes (by the transport's
 * server), and per link the requests in flight and the bytes held for it (request payloads being
 * served plus replies not yet written to the socket). A link at its bound is not read further
 * until replies drain, so a proxy that stops reading is pushed back, then dropped after the
 * write stall timeout; nothing is buffered for it.
 *
 * Ownership (claim.ts): an exporter claims the node with an epoch; changes from any link that
 * does not hold the node's grant are refused with EFENCED, reads are served to anyone.
 *
 * Sessions (sessions.ts): a proxy's newer link closes its older ones, and is served only once
 * the requests taken off those have ended; nothing sent on a link a proxy gave up on lands later.
 */
import {
  type BlockDevice,
  BlockError,
  type BlockInfo,
  DIGEST_BYTES,
  type MediaDevice,
} from "../block/contract.ts";
import { RangeLock } from "../block/range_lock.ts";
import { BufferPool } from "../../util/buffer_pool.ts";
import { type Logger, silentLogger } from "../../util/log.ts";
import type { Clock } from "../../util/clock.ts";
import { type DialOptions, serve, type Server } from "../../transport/dial.ts";
import type { FramedLink } from "../../transport/link.ts";
import type { Frame, Header } from "../../transport/types.ts";
import { CHECKSUMS, frameChecksum, negotiateChecksum } from "./checksum.ts";
import { mediaOf } from "../block/media.ts";
import {
  describeGrant,
  type GrantStore,
  grantStoreOf,
  type OwnerGrant,
} from "../block/owner_grant.ts";
import { ClaimBook, type ClaimStats, FENCED_BYE, type LinkClaim, memoryGrants } from "./claim.ts";
import { LinkSessions } from "./sessions.ts";
import {
  claimAnswerSchema,
  decodeJson,
  encodeJson,
  EXTENT_HOLE,
  EXTENT_ZERO,
  grantSchema,
  mediaPatchSchema,
  NODE_PROTOCOL_VERSION,
  nodeHeaderSchema,
  type NodeHello,
  proxyHelloSchema,
  type Request,
  requestFlags,
} from "./protocol.ts";

export interface NodeServerOptions {
  /** This node's identity, sent in the handshake. */
  readonly node: string;
  /**
   * The media operations to serve (metadata, bitmap, digests); default: found on `device` or
   * what it wraps. Pass it when `device` wraps the media opaquely (an I/O counter).
   */
  readonly media?: MediaDevice;
  /** The storage id ("age") on the media, announced to proxies. */
  readonly storageId?: string;
  /**
   * Where the owner grant is kept (claim.ts); default: the device's own (file media keep it in
   * their header), else memory. A storage served as a node passes one that claims its legs.
   */
  readonly grants?: GrantStore;
  /** Cluster secret; links without it are refused. */
  readonly secret?: string | Uint8Array;
  readonly tls?: DialOptions["tls"];
  readonly transports?: DialOptions["transports"];
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** Checksums offered, in order of preference (default: all this build knows). */
  readonly checksums?: readonly string[];
  /** Requests in flight per link; more wait unread (default 256). */
  readonly maxInFlight?: number;
  /**
   * Bytes one link may make this node hold: payloads of requests being served plus replies not
   * yet written to the socket. Past it the link is not read until they drain (default 32 MiB;
   * one request larger than this is served alone).
   */
  readonly maxLinkBytes?: number;
  /** Proxy links held at once; a proven proxy beyond it is refused (default 64). */
  readonly maxLinks?: number;
  /** Connections still in their handshake; beyond it the oldest is dropped (default 64). */
  readonly maxPendingHandshakes?: number;
  /** A link whose replies did not move for this long is dropped (default 30000). */
  readonly writeStallMs?: number;
  readonly keepAliveMs?: number;
  readonly deadAfterMs?: number;
}

/** Defaults of the bounds above, for help texts. */
export const NODE_LIMITS = {
  maxInFlight: 256,
  maxLinkBytes: 32 * 1024 * 1024,
  maxLinks: 64,
  maxPendingHandshakes: 64,
  writeStallMs: 30_000,
} as const;

/** What a request makes the node hold: the payload it carries and the reply it will get. */
function costOf(rq: Request, payload: Uint8Array): number {
  const overhead = 4096; // headers, closures, bookkeeping: never free
  switch (rq.op) {
    case "read":
      return overhead + rq.len;
    case "digest":
      return overhead + Math.ceil(rq.len / (rq.ch ?? 1024 * 1024)) * DIGEST_BYTES;
    default:
      return overhead + payload.length;
  }
}

export interface NodeServerStats extends ClaimStats {
  requests: number;
  /** Payloads that arrived with a checksum that did not match: refused, asked again. */
  checksumErrors: number;
  links: number;
}

export interface NodeServer {
  readonly url: string;
  /** Connections still in their handshake (strangers, until they prove themselves). */
  readonly pending: number;
  readonly stats: Readonly<NodeServerStats>;
  /** The highest owner grant this node made (who may change it now). */
  readonly grant: OwnerGrant;
  close(): Promise<void>;
}

/** The handshake info a node announces for `device`. */
export function nodeHello(
  info: BlockInfo,
  checksums: readonly string[],
  storageId?: string,
): NodeHello {
  return {
    role: "node",
    ...info,
    checksums: [...checksums],
    ...(storageId === undefined ? {} : { storageId }),
  };
}

/** A read reply in a pooled buffer: `done` once it is handed to the link. */
class Lent {
  constructor(readonly data: Uint8Array, readonly done: () => void) {}
}

export async function serveNode(
  url: string,
  device: BlockDevice,
  options: NodeServerOptions,
): Promise<NodeServer> {
  const logger = options.logger ?? silentLogger;
  const offered = options.checksums ?? CHECKSUMS;
  const maxInFlight = options.maxInFlight ?? NODE_LIMITS.maxInFlight;
  const maxLinkBytes = options.maxLinkBytes ?? NODE_LIMITS.maxLinkBytes;
  const writes = new RangeLock();
  /** Read replies are read into these and go back once their link wrote them. */
  const pool = new BufferPool();
  const media = options.media ?? mediaOf(device);
  const needMedia = (op: string) => {
    if (media === undefined) {
      throw new BlockError("ENOTSUP", `${op}: this node keeps no media state`);
    }
    return media;
  };
  const mediaReply = (state: Awaited<ReturnType<NonNullable<typeof media>["media"]>>) =>
    encodeJson({ ...state, storageId: state.storageId ?? null });
  // A read-only node changes nothing, so its grants need not (and cannot) be stored.
  const store = options.grants ??
    (device.info().readOnly ? undefined : grantStoreOf(device)) ?? memoryGrants();
  const book = new ClaimBook(store, options.node);
  const counts = { requests: 0, checksumErrors: 0, links: 0 };
  const stats: NodeServerStats = Object.defineProperties(counts, {
    claims: { get: () => book.stats.claims, enumerable: true },
    refusedClaims: { get: () => book.stats.refusedClaims, enumerable: true },
    fencedRequests: { get: () => book.stats.fencedRequests, enumerable: true },
  }) as NodeServerStats;

  /** Every link and what it holds, so a winning claim can close the links it fenced. */
  const claims = new Map<FramedLink, LinkClaim>();
  const sessions = new LinkSessions();

  const onLink = (link: FramedLink): void => {
    const peer = proxyHelloSchema.safeParse(link.peer.info);
    if (!peer.success) {
      logger.log("warn", "refused a link from a peer that is not a dst proxy", {
        peer: link.peer.node,
      });
      link.close("this is a dst node: only a dst remote node proxy may connect");
      return;
    }
    /** Requests taken off this link and still running. */
    const running = new Set<Promise<void>>();
    const session = peer.data.session;
    let ready: Promise<void> | undefined;
    if (session !== undefined) {
      // Idle once its own wait on the older links ended too: a link replaced before it served
      // anything still stands for what those older ones run.
      let waited: Promise<void> = Promise.resolve();
      const entry = {
        close: (reason: string) => link.close(reason),
        idle: () => waited.then(() => Promise.all([...running])).then(() => {}),
      };
      ready = sessions.open(session.id, session.seq, entry);
      if (ready !== undefined) waited = ready;
      if (ready === undefined) {
        link.close(`link ${session.seq} of this proxy is older than one it opened since`);
        return;
      }
      void link.closed.then(() => sessions.closed(session.id, entry));
    }
    stats.links++;
    const claim: LinkClaim = { grant: undefined };
    claims.set(link, claim);
    void link.closed.then(() => claims.delete(link));
    const algorithm = negotiateChecksum(peer.data.checksums, offered);
    logger.log("info", "proxy connected", { peer: link.peer.node, checksum: algorithm ?? "none" });
    /** Sends a reply frame, with its checksum when the link has one. */
    const reply = (rq: Request, header: Header, payload?: Uint8Array): void => {
      if (link.isClosed) return;
      if (algorithm !== undefined) {
        const bound = {
          kind: header.t as "rp" | "er",
          op: rq.op,
          id: rq.id,
          off: rq.off,
          len: rq.len,
          flags: 0,
        };
        header = { ...header, ck: frameChecksum(algorithm, bound, payload) };
      }
      try {
        link.send(header, payload);
      } catch (error) {
        link.close(`cannot queue a reply: ${(error as Error).message}`);
      }
    };

    const handle = async (rq: Request, payload: Uint8Array): Promise<void> => {
      try {
        const result = await execute(rq, payload, claim);
        if (result === undefined) reply(rq, { t: "rp", id: rq.id });
        else if (result instanceof Uint8Array) reply(rq, { t: "rp", id: rq.id }, result);
        else if (result instanceof Lent) {
          // The link holds the buffer until it wrote it; then it goes back to the pool.
          reply(rq, { t: "rp", id: rq.id }, result.data);
          result.done();
        } else reply(rq, { t: "rp", id: rq.id, ext: result });
      } catch (error) {
        const code = error instanceof BlockError ? error.code : "EIO";
        const text = error instanceof BlockError
          ? error.detail
          : error instanceof Error
          ? error.message
          : String(error);
        const msg = text.slice(0, 4096);
        reply(rq, { t: "er", id: rq.id, code, msg });
      }
    };

    // What this link holds: requests being served and the bytes charged for them; replies
    // queued on the link count until the link has written them to the socket.
    let inFlight = 0;
    let heldBytes = 0;
    let wake: (() => void) | undefined;
    const fits = (cost: number): boolean =>
      inFlight < maxInFlight &&
      (heldBytes + link.queuedBytes + cost <= maxLinkBytes ||
        (inFlight === 0 && link.queuedBytes === 0));
    /** Waits (the link reads nothing meanwhile) until `cost` fits; false if the link closed. */
    const room = async (cost: number): Promise<boolean> => {
      while (!fits(cost)) {
        if (link.isClosed) return false;
        const waits: Promise<unknown>[] = [
          new Promise<void>((resolve) => (wake = resolve)),
          link.closed,
        ];
        if (link.queuedBytes > 0) waits.push(link.drain().catch(() => {}));
        await Promise.race(waits);
      }
      return !link.isClosed;
    };
    const start = (rq: Request, frame: Frame, cost: number): void => {
      inFlight++;
      heldBytes += cost;
      stats.requests++;
      // Once handled, the device no longer needs the payload: the link may reuse its memory.
      const done: Promise<void> = handle(rq, frame.payload).finally(() => {
        running.delete(done);
        inFlight--;
        heldBytes -= cost;
        link.recycle(frame);
        const woken = wake;
        wake = undefined;
        woken?.();
      });
      running.add(done);
    };

    /** Takes a request off the link: served now, or once there is room for it. */
    const take = (frame: Frame): Promise<void> | undefined => {
      if (link.isClosed) return undefined; // replaced: nothing more is taken off it
      if (frame.header.t !== "rq") {
        link.close(`unexpected message "${frame.header.t}" from a proxy`);
        return undefined;
      }
      const rq = frame.header as Request;
      if (algorithm !== undefined) {
        const bound = { kind: "rq", op: rq.op, id: rq.id, off: rq.off, len: rq.len } as const;
        const payload = rq.op === "write" || rq.op === "wbitmap" || rq.op === "setmedia" ||
            rq.op === "claim"
          ? frame.payload
          : undefined;
        if (rq.ck !== frameChecksum(algorithm, { ...bound, flags: requestFlags(rq) }, payload)) {
          stats.checksumErrors++;
          logger.log("warn", "request failed its checksum; closing the link so the proxy resends", {
            peer: link.peer.node,
          });
          link.close("checksum mismatch: the link corrupts data");
          return undefined;
        }
      }
      const cost = costOf(rq, frame.payload);
      if (fits(cost)) {
        start(rq, frame, cost);
        return undefined;
      }
      // Over the bound: hold this frame, and the link stops reading, until there is room.
      return room(cost).then((open) => {
        // Not once the link closed meanwhile: its session counts only what started before.
        if (open && !link.isClosed) start(rq, frame, cost);
      });
    };

    // Handlers are defined first: receive() may deliver frames that are already waiting. The
    // first frame waits (and the link with it) until the proxy's older links are idle.
    link.receive((frame) => {
      if (ready === undefined) return take(frame);
      return ready.then(() => {
        ready = undefined;
        return link.isClosed ? undefined : take(frame);
      });
    });
  };

  /**
   * Links holding an older grant are closed once a newer claim won: their exporter learns it
   * was fenced when it reconnects and its claim is refused, even if it was idle.
   */
  const closeFenced = (current: OwnerGrant): void => {
    for (const [link, held] of claims) {
      if (held.grant === undefined || held.grant.epoch >= current.epoch) continue;
      logger.log("warn", "closing a fenced owner's link", {
        peer: link.peer.node,
        held: held.grant.epoch,
        owner: current.label,
        epoch: current.epoch,
      });
      link.close(`${FENCED_BYE} ${describeGrant(current)}`);
    }
  };

  /** Runs a change admitted for `link` (EFENCED when it does not hold the node's grant). */
  const change = async <T>(link: LinkClaim, rq: Request, run: () => Promise<T>): Promise<T> => {
    const release = await book.admit(link, rq.op);
    try {
      return await run();
    } finally {
      release();
    }
  };

  // Runs until its first await when called: admission and claims are decided in arrival order.
  const execute = (
    rq: Request,
    payload: Uint8Array,
    link: LinkClaim,
  ): Promise<Uint8Array | Lent | [number, number][] | undefined> => {
    switch (rq.op) {
      case "write":
      case "flush":
      case "trim":
      case "zero":
      case "setmedia":
      case "wbitmap":
        return change(link, rq, () => serveOp(rq, payload));
      case "claim": {
        let grant;
        try {
          grant = decodeJson(grantSchema, payload, "claim");
        } catch (error) {
          return Promise.reject(new BlockError("EINVAL", (error as Error).message));
        }
        return book.claim(link, grant).then((answer) => {
          if (answer.granted) {
            logger.log("info", "claimed", { owner: grant.label, epoch: grant.epoch });
            closeFenced(answer.current);
          }
          return encodeJson(claimAnswerSchema.parse(answer));
        });
      }
      default:
        return serveOp(rq, payload);
    }
  };

  const serveOp = async (
    rq: Request,
    payload: Uint8Array,
  ): Promise<Uint8Array | Lent | [number, number][] | undefined> => {
    switch (rq.op) {
      case "read": {
        // Read into a pooled buffer: no fresh (zeroed) memory per read.
        const buffer = pool.get(rq.len);
        try {
          return new Lent(
            await device.read(rq.off, rq.len, buffer.subarray(0, rq.len)),
            () => pool.put(buffer),
          );
        } catch (error) {
          pool.put(buffer);
          throw error;
        }
      }
      case "write": {
        if (payload.length !== rq.len) {
          throw new BlockError("EINVAL", `write of ${rq.len} bytes carried ${payload.length}`);
        }
        await writes.run(rq.off, rq.len, () => device.write(rq.off, payload, rq.fua ?? false));
        return undefined;
      }
      case "flush":
        await device.flush();
        return undefined;
      case "trim":
        await writes.run(rq.off, rq.len, () => device.trim(rq.off, rq.len, rq.fua ?? false));
        return undefined;
      case "zero":
        await writes.run(rq.off, rq.len, () =>
          device.zero(rq.off, rq.len, {
            fua: rq.fua ?? false,
            fastZero: rq.fz ?? false,
            mayTrim: rq.mt ?? false,
          }));
        return undefined;
      case "extents": {
        const extents = await device.extents(rq.off, rq.len);
        return extents.map((e) => [
          e.length,
          (e.hole ? EXTENT_HOLE : 0) | (e.zero ? EXTENT_ZERO : 0),
        ]);
      }
      case "cache":
        await device.cache(rq.off, rq.len);
        return undefined;
      case "media":
        return mediaReply(await needMedia(rq.op).media());
      case "setmedia": {
        let patch;
        try {
          patch = decodeJson(mediaPatchSchema, payload, "setmedia");
        } catch (error) {
          throw new BlockError("EINVAL", (error as Error).message);
        }
        const clean = {
          ...(patch.storageId === undefined ? {} : { storageId: patch.storageId }),
          ...(patch.generations === undefined ? {} : { generations: patch.generations }),
          ...(patch.flags === undefined ? {} : { flags: patch.flags }),
          ...(patch.outdated === undefined ? {} : { outdated: patch.outdated }),
          ...(patch.expectCurrent === undefined ? {} : { expectCurrent: patch.expectCurrent }),
        };
        return mediaReply(await needMedia(rq.op).updateMedia(clean));
      }
      case "rbitmap":
        return await needMedia(rq.op).readBitmap();
      case "wbitmap":
        if (payload.length !== rq.len) {
          throw new BlockError("EINVAL", `wbitmap of ${rq.len} bytes carried ${payload.length}`);
        }
        await needMedia(rq.op).storeBitmap(rq.off, payload);
        return undefined;
      case "digest":
        if (rq.len / (rq.ch ?? 1024 * 1024) > 65536) {
          throw new BlockError("EINVAL", "digest: at most 65536 chunks per request");
        }
        return await needMedia(rq.op).digest(rq.off, rq.len, rq.ch ?? 1024 * 1024);
      case "claim":
        throw new BlockError("EINVAL", "claim is not a block operation");
    }
  };

  const server: Server = await serve(url, {
    hello: {
      version: NODE_PROTOCOL_VERSION,
      node: options.node,
      info: nodeHello(device.info(), offered, options.storageId),
    },
    headerSchema: nodeHeaderSchema,
    logger,
    maxLinks: options.maxLinks ?? NODE_LIMITS.maxLinks,
    maxPendingHandshakes: options.maxPendingHandshakes ?? NODE_LIMITS.maxPendingHandshakes,
    writeStallMs: options.writeStallMs ?? NODE_LIMITS.writeStallMs,
    ...(options.secret === undefined ? {} : { secret: options.secret }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(options.transports === undefined ? {} : { transports: options.transports }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.keepAliveMs === undefined ? {} : { keepAliveMs: options.keepAliveMs }),
    ...(options.deadAfterMs === undefined ? {} : { deadAfterMs: options.deadAfterMs }),
  }, onLink);

  return {
    url: server.url,
    get pending() {
      return server.pending;
    },
    stats,
    get grant() {
      return book.granted;
    },
    close: () => server.close("node server shutting down"),
  };
}
