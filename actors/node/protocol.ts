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
import type { Header } from "../../transport/types.ts";

/** Bumped on any incompatible change to these messages; checked in the link handshake. */
export const NODE_PROTOCOL_VERSION = 1;

export const OPS = ["read", "write", "flush", "trim", "zero", "extents", "cache"] as const;
export type Op = (typeof OPS)[number];

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
