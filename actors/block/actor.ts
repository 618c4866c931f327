/**
 * Block devices as actors. `spawnBlockActor` hosts any BlockDevice (a node, a mapping) behind a
 * bounded mailbox that pipelines requests; `BlockClient` is the BlockDevice a caller holds to
 * talk to such an actor by ref, so a mapping or the NBD edge uses a local or remote block actor
 * the same way. Block data rides in the top-level `data` field, which the remote bridge carries
 * as the frame payload, never through msgpack.
 */
import { AskTimeoutError, DeadActorError } from "../runtime/errors.ts";
import type { ActorRef } from "../runtime/ref.ts";
import type { ActorSystem } from "../runtime/system.ts";
import {
  type BlockDevice,
  BlockError,
  type BlockErrorCode,
  type BlockInfo,
  type Extent,
  type ZeroOptions,
} from "./contract.ts";

/** A reply from a block actor: data for reads, extents, info, or an error. */
export type BlockReply =
  | {
    readonly ok: true;
    readonly data?: Uint8Array;
    readonly extents?: Extent[];
    readonly info?: BlockInfo;
  }
  | { readonly ok: false; readonly code: BlockErrorCode; readonly message: string };

type Reply = ActorRef<BlockReply>;

/** The messages a block actor answers, one per contract operation. */
export type BlockMessage =
  | { readonly op: "info"; readonly replyTo: Reply }
  | {
    readonly op: "read";
    readonly offset: number;
    readonly length: number;
    /**
     * Where the data should land (a caller's pooled buffer, in this process: held by whoever
     * keeps a view of it past the call, util/buffer_lease.ts).
     */
    readonly into?: Uint8Array;
    readonly replyTo: Reply;
  }
  | {
    readonly op: "write";
    readonly offset: number;
    readonly data: Uint8Array;
    readonly fua: boolean;
    readonly replyTo: Reply;
  }
  | { readonly op: "flush"; readonly replyTo: Reply }
  | {
    readonly op: "trim";
    readonly offset: number;
    readonly length: number;
    readonly fua: boolean;
    readonly replyTo: Reply;
  }
  | {
    readonly op: "zero";
    readonly offset: number;
    readonly length: number;
    readonly options: ZeroOptions;
    readonly replyTo: Reply;
  }
  | {
    readonly op: "extents";
    readonly offset: number;
    readonly length: number;
    readonly replyTo: Reply;
  }
  | {
    readonly op: "cache";
    readonly offset: number;
    readonly length: number;
    readonly replyTo: Reply;
  };

export interface BlockActorOptions {
  readonly name?: string;
  /** Requests served at once (default 256); more wait in the mailbox. */
  readonly concurrency?: number;
  /** Mailbox bound (default 4096); beyond it callers get an explicit overload. */
  readonly capacity?: number;
}

const OK: BlockReply = { ok: true };

export function failure(error: unknown): BlockReply {
  if (error instanceof BlockError) return { ok: false, code: error.code, message: error.detail };
  return {
    ok: false,
    code: "EIO",
    message: error instanceof Error ? error.message : String(error),
  };
}

/**
 * Serves one message against the device; never throws, except an error `fatal` picks (the
 * device's own bookkeeping broke: the caller stops the actor).
 */
export async function serve(
  device: BlockDevice,
  m: BlockMessage,
  fatal?: (error: unknown) => boolean,
): Promise<BlockReply> {
  try {
    switch (m.op) {
      case "info":
        return { ok: true, info: device.info() };
      case "read":
        return { ok: true, data: await device.read(m.offset, m.length, m.into) };
      case "write":
        await device.write(m.offset, m.data, m.fua);
        return OK;
      case "flush":
        await device.flush();
        return OK;
      case "trim":
        await device.trim(m.offset, m.length, m.fua);
        return OK;
      case "zero":
        await device.zero(m.offset, m.length, m.options);
        return OK;
      case "extents":
        return { ok: true, extents: await device.extents(m.offset, m.length) };
      case "cache":
        await device.cache(m.offset, m.length);
        return OK;
    }
  } catch (error) {
    if (fatal?.(error)) throw error;
    return failure(error);
  }
}

/** Hosts `device` as an actor; the device is closed when the actor stops. */
export function spawnBlockActor(
  system: ActorSystem,
  device: BlockDevice,
  options: BlockActorOptions = {},
): ActorRef<BlockMessage> {
  return system.spawn<BlockMessage>((ctx) => ({
    receive: async (m) => {
      ctx.tell(m.replyTo, await serve(device, m));
    },
    stopped: () => device.close(),
  }), {
    ...(options.name === undefined ? {} : { name: options.name }),
    concurrency: options.concurrency ?? 256,
    capacity: options.capacity ?? 4096,
  });
}

/** Turns a failed reply or an actor error (timeout, overload, gone) into a BlockError. */
function unwrap(reply: BlockReply): BlockReply & { ok: true } {
  if (!reply.ok) throw new BlockError(reply.code, reply.message);
  return reply;
}

function asBlockError(error: unknown): BlockError {
  if (error instanceof BlockError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof AskTimeoutError) return new BlockError("ETIMEDOUT", message);
  if (error instanceof DeadActorError) return new BlockError("ESHUTDOWN", message);
  return new BlockError("EIO", message);
}

/** One ask to a block actor; actor failures and error replies become BlockErrors. */
async function askBlock(
  system: ActorSystem,
  ref: ActorRef<BlockMessage>,
  deadlineMs: number,
  build: (replyTo: Reply) => BlockMessage,
): Promise<BlockReply & { ok: true }> {
  let reply: BlockReply;
  try {
    reply = await system.ask<BlockMessage, BlockReply>(ref, build, deadlineMs);
  } catch (error) {
    throw asBlockError(error);
  }
  return unwrap(reply);
}

/** A BlockDevice that forwards every operation to a block actor by ref. */
export class BlockClient implements BlockDevice {
  private constructor(
    readonly system: ActorSystem,
    readonly ref: ActorRef<BlockMessage>,
    readonly deadlineMs: number,
    readonly cachedInfo: BlockInfo,
  ) {}

  /** Asks the actor for its info once; the client answers `info()` from that. */
  static async connect(
    system: ActorSystem,
    ref: ActorRef<BlockMessage>,
    deadlineMs = 30_000,
  ): Promise<BlockClient> {
    const reply = await askBlock(system, ref, deadlineMs, (replyTo) => ({
      op: "info",
      replyTo,
    }));
    if (reply.info === undefined) throw new BlockError("EIO", "block actor sent no info");
    return new BlockClient(system, ref, deadlineMs, reply.info);
  }

  #ask(build: (replyTo: Reply) => BlockMessage): Promise<BlockReply & { ok: true }> {
    return askBlock(this.system, this.ref, this.deadlineMs, build);
  }

  info(): BlockInfo {
    return this.cachedInfo;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    // The actor reads straight into `into`. A caller that gave up on this read (its deadline)
    // cannot have the buffer reused under a late answer: whatever still writes into it holds it.
    const { data } = await this.#ask((replyTo) =>
      into === undefined
        ? { op: "read", offset, length, replyTo }
        : { op: "read", offset, length, into: into.subarray(0, length), replyTo }
    );
    if (data === undefined || data.length !== length) {
      throw new BlockError("EIO", `read of ${length} bytes returned ${data?.length ?? 0}`);
    }
    return data;
  }

  async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    await this.#ask((replyTo) => ({ op: "write", offset, data, fua, replyTo }));
  }

  async flush(): Promise<void> {
    await this.#ask((replyTo) => ({ op: "flush", replyTo }));
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    await this.#ask((replyTo) => ({ op: "trim", offset, length, fua, replyTo }));
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    await this.#ask((replyTo) => ({ op: "zero", offset, length, options, replyTo }));
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    const { extents } = await this.#ask((replyTo) => ({ op: "extents", offset, length, replyTo }));
    return extents ?? [{ length, hole: false, zero: false }];
  }

  async cache(offset: number, length: number): Promise<void> {
    await this.#ask((replyTo) => ({ op: "cache", offset, length, replyTo }));
  }

  /** Stops the actor (which closes its device). */
  close(): Promise<void> {
    this.system.stop(this.ref);
    return this.system.terminated(this.ref).then(() => {});
  }
}
