/**
 * The block protocol between a remote node proxy and a node server, carried by transport links.
 * A request names an operation; block data travels as the frame payload (never msgpack). When
 * the link negotiated a checksum, every frame carries one over its identifying fields and its
 * payload; a frame that fails it closes the link, and the proxy reconnects and sends everything
 * outstanding again (its ids cannot be trusted, so nothing in it is acted on). Replies match requests by id and may
 * come in any order. Headers are validated with zod at the boundary (the link applies the schema).
 */
import { z } from "zod";
import type { BlockErrorCode, BlockInfo } from "../block/contract.ts";
import { HISTORY_SLOTS, OUTDATED_SLOTS } from "../block/media.ts";
import type { Header } from "../../transport/types.ts";

/** Bumped on any incompatible change to these messages; checked in the link handshake. */
export const NODE_PROTOCOL_VERSION = 4;

/**
 * Block operations, then media operations (MediaDevice): `media` reads the media state and
 * `setmedia` changes it (both as JSON in the payload, so the frame checksum covers it), `rbitmap`
 * reads the bitmap region, `wbitmap` stores payload bytes at `off` of it, and `digest` answers
 * digests of each `ch`-sized chunk of [off, off+len) as payload. `claim` claims the node for an
 * exporter (an OwnerGrant as JSON in the payload; the reply carries the node's grant after it,
 * see claim.ts): changes from links that do not hold the node's grant fail with EFENCED.
 */
export const OPS = [
  "read",
  "write",
  "flush",
  "trim",
  "zero",
  "extents",
  "cache",
  "media",
  "setmedia",
  "rbitmap",
  "wbitmap",
  "digest",
  "claim",
] as const;
export type Op = (typeof OPS)[number];

/** Operations whose `off`/`len` address the data area (the others address media metadata). */
export const DATA_OPS: ReadonlySet<Op> = new Set([
  "read",
  "write",
  "trim",
  "zero",
  "extents",
  "cache",
  "digest",
]);

const id = z.number().int().nonnegative();
const u64 = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const ck = z.number().int().nonnegative().max(0xffffffff).optional();

/** A request from proxy to node. */
export const requestSchema = z.object({
  t: z.literal("rq"),
  id,
  op: z.enum(OPS),
  off: u64,
  len: u64,
  fua: z.boolean().optional(),
  /** zero: fast-zero and may-trim. */
  fz: z.boolean().optional(),
  mt: z.boolean().optional(),
  /** digest: the chunk size digested. */
  ch: z.number().int().min(4096).max(1 << 30).optional(),
  ck,
});
export type Request = z.infer<typeof requestSchema>;

const ERROR_CODES = [
  "EPERM",
  "EIO",
  "ENOMEM",
  "EINVAL",
  "ENOSPC",
  "EOVERFLOW",
  "ENOTSUP",
  "ESHUTDOWN",
  "ETIMEDOUT",
  "EFENCED",
] as const satisfies readonly BlockErrorCode[];

/** A successful reply; reads carry data as payload, extents as [length, flags] pairs. */
export const replySchema = z.object({
  t: z.literal("rp"),
  id,
  ck,
  ext: z.array(z.tuple([u64, z.number().int().min(0).max(3)])).max(1 << 20).optional(),
});
export type Reply = z.infer<typeof replySchema>;

/** A failed request. */
export const errorSchema = z.object({
  t: z.literal("er"),
  id,
  code: z.enum(ERROR_CODES),
  msg: z.string().max(4096),
  ck,
});
export type ErrorReply = z.infer<typeof errorSchema>;

/** Every application header a node link may carry, for `LinkOptions.headerSchema`. */
export const nodeHeaderSchema = z.discriminatedUnion("t", [
  requestSchema,
  replySchema,
  errorSchema,
]) as unknown as z.ZodType<Header>;

/** What a node says about itself in the link handshake (`Hello.info`). */
export const nodeHelloSchema = z.object({
  role: z.literal("node"),
  size: u64,
  minBlock: z.number().int().positive(),
  preferredBlock: z.number().int().positive(),
  maxBlock: z.number().int().positive(),
  readOnly: z.boolean(),
  canFlush: z.boolean(),
  canFua: z.boolean(),
  canTrim: z.boolean(),
  canZero: z.boolean(),
  canFastZero: z.boolean(),
  canExtents: z.boolean(),
  canCache: z.boolean(),
  canMultiConn: z.boolean(),
  checksums: z.array(z.string().max(64)).max(16),
  /** The storage id ("age") on the node's media, when it has one. */
  storageId: z.string().max(256).optional(),
});
export type NodeHello = z.infer<typeof nodeHelloSchema>;

/** What a proxy says about itself. */
export const proxyHelloSchema = z.object({
  role: z.literal("proxy"),
  checksums: z.array(z.string().max(64)).max(16),
  /**
   * The proxy's random id and this link's number among its links (sessions.ts): the node
   * serves a newer link only once the older ones are closed and idle. Older proxies send none.
   */
  session: z.strictObject({
    id: z.string().regex(/^[0-9a-f]{32}$/),
    seq: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  }).optional(),
});

export function infoFromHello(hello: NodeHello): BlockInfo {
  const { role: _role, checksums: _c, storageId: _s, ...info } = hello;
  return info;
}

/** Extent flags on the wire: bit 0 hole, bit 1 zero (as NBD base:allocation). */
export const EXTENT_HOLE = 1;
export const EXTENT_ZERO = 2;

/** The flag bits a request's checksum binds. */
export function requestFlags(
  rq: { fua?: boolean | undefined; fz?: boolean | undefined; mt?: boolean | undefined },
): number {
  return (rq.fua ? 1 : 0) | (rq.fz ? 2 : 0) | (rq.mt ? 4 : 0);
}

const generationId = z.string().regex(/^[0-9a-f]{16}$/);
const legIdSchema = z.string().regex(/^[0-9a-f]{32}$/);
const generationsSchema = z.strictObject({
  current: generationId,
  bitmap: generationId,
  history: z.array(generationId).max(HISTORY_SLOTS),
});

/** `setmedia` payload: a MediaPatch. */
export const mediaPatchSchema = z.strictObject({
  storageId: z.string().regex(/^[0-9a-f]{32}$/).optional(),
  generations: generationsSchema.optional(),
  flags: z.number().int().min(0).max(0xffffffff).optional(),
  outdated: z.array(legIdSchema).max(OUTDATED_SLOTS).optional(),
  // What the leg was last seen at, and the mirror's current, bitmap and history ids.
  expectCurrent: z.array(generationId).max(HISTORY_SLOTS + 3).optional(),
});

/** An owner grant on the wire: `claim` payload, and in its reply. */
export const grantSchema = z.strictObject({
  epoch: u64,
  owner: legIdSchema,
  label: z.string().max(256),
});

/** `claim` reply payload: whether the link holds the grant now, and the node's grant. */
export const claimAnswerSchema = z.strictObject({
  granted: z.boolean(),
  current: grantSchema,
});

/** `media` / `setmedia` reply payload: a MediaState (storageId null when the media has none). */
export const mediaStateSchema = z.strictObject({
  storageId: z.string().max(256).nullable(),
  generations: generationsSchema,
  flags: z.number().int().min(0).max(0xffffffff),
  bitmapBytes: z.number().int().nonnegative().max(1 << 30),
  // Older nodes do not send it: they record no outdated legs.
  outdated: z.array(legIdSchema).max(OUTDATED_SLOTS).default([]),
});

const json = new TextEncoder();
const text = new TextDecoder();

export function encodeJson(value: unknown): Uint8Array {
  return json.encode(JSON.stringify(value));
}

/** Parses a JSON payload against `schema`; throws a readable error when it does not fit. */
export function decodeJson<T>(schema: z.ZodType<T>, payload: Uint8Array, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text.decode(payload));
  } catch {
    throw new Error(`${what}: payload is not JSON`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new Error(`${what}: ${parsed.error.message}`);
  return parsed.data;
}
