/**
 * The link handshake: the version check, then mutual authentication with the cluster secret, in
 * one place so that its order of messages and what each proof covers can be read (and reviewed)
 * at once. The link runs it over its framing; tests drive it by hand.
 *
 * Shape: ISO/IEC 9798-4 mutual authentication with nonces and a MAC, with the proofs computed
 * over the whole transcript and a direction label (as TLS 1.3 Finished and SIGMA's MAC do):
 *
 *   1. initiator → responder  hello  {link, version, node I, nonce Ni, auth}
 *   2. responder → initiator  hello  {link, version, node R, nonce Nr, auth}
 *   3. initiator → responder  auth   {info I, proof I = MAC(K, "initiator" ‖ T ‖ info I)}
 *   4. responder → initiator  auth   {info R, proof R = MAC(K, "responder" ‖ T ‖ info I ‖ proof I ‖ info R)}
 *
 * T is a hash of both hellos (version, both identities, both nonces, both auth flags). A proof is
 * bound to its direction, so a responder's proof is never an initiator's (reflection fails); to
 * both fresh nonces, so no proof fits another session (replay fails); and to both identities. The
 * responder proves itself only after the initiator did, so an unauthenticated peer gets no MAC
 * computed by a node at all. Application info (size, storage id, ...) travels only inside the
 * auth messages and is read only after the proof in the same message checked out.
 */

import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { packr, unpackr } from "./codec.ts";
import type { Header, Hello } from "./types.ts";

/** Bumped on any change to the handshake's messages; a mismatch is refused naming both. */
export const LINK_PROTOCOL_VERSION = 2;
/** Bytes of each side's fresh nonce. */
export const NONCE_BYTES = 32;
/** Largest header accepted while the handshake runs (the peer is not yet trusted). */
export const MAX_HANDSHAKE_HEADER_BYTES = 8 * 1024;
/** Largest application info a side may announce (packed msgpack). */
export const MAX_INFO_BYTES = 4 * 1024;

/** Which end of the link this is: the dialing end initiates, the accepting end responds. */
export type Role = "initiator" | "responder";

/** Thrown when the handshake ends without a link; the message says why. */
export class LinkRefused extends Error {
  override readonly name = "LinkRefused";
}

/** What the handshake needs from the link beneath it. */
export interface HandshakeChannel {
  /** Queues one handshake frame (a header, no payload). */
  send(header: Header): void;
  /** The peer's next header; a `refuse` from the peer rejects with its reason. */
  next(): Promise<Header>;
  /** Tells the peer why, and rejects with LinkRefused. */
  refuse(why: string): Promise<never>;
}

export interface HandshakeParams {
  readonly role: Role;
  /** What this end says about itself. */
  readonly hello: Hello;
  readonly secret?: string | Uint8Array | undefined;
  /**
   * Responder only: asked once the initiator has proven itself and before this end proves
   * itself; a returned string refuses the link with that reason (a server at its link limit).
   */
  readonly admit?: ((peer: Hello) => string | undefined) | undefined;
}

const bytes = z.instanceof(Uint8Array);
const helloHeadSchema = z.object({
  t: z.literal("hello"),
  link: z.number().int().optional(),
  version: z.number().int(),
});
const helloSchema = z.object({
  t: z.literal("hello"),
  link: z.literal(LINK_PROTOCOL_VERSION),
  version: z.number().int(),
  node: z.string().min(1).max(1024),
  nonce: bytes.refine((b) => b.length === NONCE_BYTES, `nonce must be ${NONCE_BYTES} bytes`),
  auth: z.boolean(),
});
const authSchema = z.object({
  t: z.literal("auth"),
  info: bytes.refine((b) => b.length <= MAX_INFO_BYTES, `info over ${MAX_INFO_BYTES} bytes`),
  proof: bytes.refine((b) => b.length === 32, "proof must be 32 bytes").optional(),
});
const infoSchema = z.record(z.string(), z.unknown());

type PeerHello = z.infer<typeof helloSchema>;

/** One side's part of the transcript. */
interface Party {
  readonly node: string;
  readonly nonce: Uint8Array;
  readonly auth: boolean;
}

function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "header"}: ${i.message}`).join("; ");
}

const utf8 = new TextEncoder();

/** Length-prefixed, so no two different field lists encode to the same bytes. */
function field(value: Uint8Array | string): Uint8Array[] {
  const data = typeof value === "string" ? utf8.encode(value) : value;
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, data.length);
  return [length, data];
}

/** T: a hash of both hellos, in role order (initiator first) whichever end computes it. */
export function transcriptHash(version: number, initiator: Party, responder: Party): Uint8Array {
  const hash = createHash("sha256");
  const parts = [
    "dst link handshake",
    String(LINK_PROTOCOL_VERSION),
    String(version),
    initiator.node,
    initiator.nonce,
    initiator.auth ? "auth" : "open",
    responder.node,
    responder.nonce,
    responder.auth ? "auth" : "open",
  ];
  for (const part of parts) for (const piece of field(part)) hash.update(piece);
  return hash.digest();
}

/** The proof `role` sends: a MAC over its direction label, T and what was said after T. */
export function proofOf(
  secret: string | Uint8Array,
  role: Role,
  transcript: Uint8Array,
  after: readonly Uint8Array[],
): Uint8Array {
  const mac = createHmac("sha256", secret);
  for (const part of [`dst link ${role} proof`, transcript, ...after]) {
    for (const piece of field(part)) mac.update(piece);
  }
  return mac.digest();
}

function equal(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && a.length === b.length && timingSafeEqual(a, b);
}

/** Packs this end's info for its auth message (a copy: packr reuses its buffer). */
export function packInfo(info: Hello["info"]): Uint8Array {
  const packed = (packr.pack(info) as Uint8Array).slice();
  if (packed.length > MAX_INFO_BYTES) {
    throw new LinkRefused(
      `this end's hello info is ${packed.length} bytes, over ${MAX_INFO_BYTES}`,
    );
  }
  return packed;
}

/**
 * Runs this end's half of the handshake and resolves with the peer's hello once the peer proved
 * itself (when there is a secret). Rejects with LinkRefused; the channel has told the peer why.
 */
export async function runHandshake(
  channel: HandshakeChannel,
  params: HandshakeParams,
): Promise<Hello> {
  const { role, hello: local, secret } = params;
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const me: Party = { node: local.node, nonce, auth: secret !== undefined };
  const sayHello = () =>
    channel.send({
      t: "hello",
      link: LINK_PROTOCOL_VERSION,
      version: local.version,
      node: me.node,
      nonce,
      auth: me.auth,
    });

  if (role === "initiator") sayHello();
  const first = await channel.next();
  const head = helloHeadSchema.safeParse(first);
  if (!head.success) {
    return await channel.refuse(`invalid hello from peer: ${describe(head.error)}`);
  }
  const link = head.data.link ?? 1;
  const mismatch = link !== LINK_PROTOCOL_VERSION
    ? `peer speaks link handshake ${link}, we speak ${LINK_PROTOCOL_VERSION}: ` +
      "run the same dst release on both ends"
    : head.data.version !== local.version
    ? `peer speaks protocol ${head.data.version}, we speak ${local.version}`
    : undefined;
  if (mismatch !== undefined) {
    // The responder answers with its hello first, so the peer can say which versions differ.
    if (role === "responder") sayHello();
    return await channel.refuse(mismatch);
  }
  const parsed = helloSchema.safeParse(first);
  if (!parsed.success) {
    return await channel.refuse(`invalid hello from peer: ${describe(parsed.error)}`);
  }
  const peer: PeerHello = parsed.data;
  await checkPeer(channel, me, peer);
  if (role === "responder") sayHello();

  const initiator = role === "initiator" ? me : peer;
  const responder = role === "initiator" ? peer : me;
  const transcript = transcriptHash(local.version, initiator, responder);
  const myInfo = packInfo(local.info);

  if (role === "initiator") {
    const myProof = secret === undefined
      ? undefined
      : proofOf(secret, "initiator", transcript, [myInfo]);
    channel.send({ t: "auth", info: myInfo, ...(myProof === undefined ? {} : { proof: myProof }) });
    const answer = await readAuth(channel);
    if (secret !== undefined) {
      const expected = proofOf(secret, "responder", transcript, [myInfo, myProof!, answer.info]);
      if (!equal(answer.proof, expected)) {
        return await channel.refuse("peer failed the shared-secret proof (wrong secret)");
      }
    }
    return { version: peer.version, node: peer.node, info: await readInfo(channel, answer.info) };
  }

  const answer = await readAuth(channel);
  if (secret !== undefined) {
    const expected = proofOf(secret, "initiator", transcript, [answer.info]);
    if (!equal(answer.proof, expected)) {
      return await channel.refuse("peer failed the shared-secret proof (wrong secret)");
    }
  }
  // Only now is anything the peer said beyond its hello read.
  const found: Hello = {
    version: peer.version,
    node: peer.node,
    info: await readInfo(channel, answer.info),
  };
  const refusal = params.admit?.(found);
  if (refusal !== undefined) return await channel.refuse(refusal);
  const myProof = secret === undefined
    ? undefined
    : proofOf(secret, "responder", transcript, [answer.info, answer.proof!, myInfo]);
  channel.send({ t: "auth", info: myInfo, ...(myProof === undefined ? {} : { proof: myProof }) });
  return found;
}

/** Refuses a peer hello that cannot be part of an honest session with this end. */
async function checkPeer(channel: HandshakeChannel, me: Party, peer: PeerHello): Promise<void> {
  if (peer.node === me.node) {
    await channel.refuse(
      `peer claims this end's own identity "${me.node}": every process needs its own node id`,
    );
  }
  if (equal(peer.nonce, me.nonce)) await channel.refuse("peer reflected this end's nonce");
  if (me.auth && !peer.auth) {
    await channel.refuse("peer has no shared secret and this end requires one");
  }
  if (!me.auth && peer.auth) {
    await channel.refuse("peer requires a shared secret and this end has none");
  }
}

async function readAuth(channel: HandshakeChannel): Promise<z.infer<typeof authSchema>> {
  const header = await channel.next();
  const auth = authSchema.safeParse(header);
  if (!auth.success) return await channel.refuse(`invalid auth from peer: ${describe(auth.error)}`);
  return auth.data;
}

async function readInfo(channel: HandshakeChannel, packed: Uint8Array): Promise<Hello["info"]> {
  let value: unknown;
  try {
    value = unpackr.unpack(packed);
  } catch (error) {
    return await channel.refuse(`undecodable hello info from peer: ${(error as Error).message}`);
  }
  const info = infoSchema.safeParse(value);
  if (!info.success || Array.isArray(value)) {
    return await channel.refuse("hello info from peer is not a map");
  }
  return info.data;
}
