/**
 * A mirror actor over memory legs that fail, hang or answer on command, in one process: what the
 * mirror's unit tests drive. Each leg's media fails and hangs with its block device, as a node's
 * would.
 */
import { ActorSystem } from "../../actors/runtime/system.ts";
import type { MediaDevice } from "../../actors/block/contract.ts";
import { MemoryBlockDevice } from "../../actors/block/memory.ts";
import { type Mirror, type MirrorActorOptions, spawnMirror } from "../../actors/mirror/mod.ts";
import { MemoryLogger } from "../../util/log.ts";
import { FaultyDevice } from "./faulty_device.ts";

export interface MirrorFixture {
  readonly system: ActorSystem;
  /** The data under each leg (bypassing faults). */
  readonly legs: MemoryBlockDevice[];
  /** Each leg as the mirror sees it: set `mode` to fail or hang it. */
  readonly faulty: FaultyDevice[];
  readonly mirror: Mirror;
  readonly logger: MemoryLogger;
  close(): Promise<void>;
}

/** The leg's media answers (or hangs, or fails) as its faulty device does. */
export function faultyMedia(leg: MemoryBlockDevice, faulty: FaultyDevice): MediaDevice {
  const gate = () => faulty.mode === "healthy" ? Promise.resolve() : faulty.flush();
  return {
    media: () => gate().then(() => leg.media()),
    updateMedia: (patch) => gate().then(() => leg.updateMedia(patch)),
    readBitmap: () => gate().then(() => leg.readBitmap()),
    storeBitmap: (at, bytes) => gate().then(() => leg.storeBitmap(at, bytes)),
    digest: (offset, length, chunk) => gate().then(() => leg.digest(offset, length, chunk)),
  };
}

export interface FixtureOptions extends MirrorActorOptions {
  /** Legs' size in bytes (default 16 MiB). */
  readonly size?: number;
  /** Keep no media state (the mirror then tracks nothing across restarts). */
  readonly noMedia?: boolean;
}

/** A mirror over `legs` (fresh memory legs when a number is given). */
export async function mirrorFixture(
  legs: number | MemoryBlockDevice[],
  options: FixtureOptions = {},
): Promise<MirrorFixture> {
  const size = options.size ?? 16 * 1024 * 1024;
  const data = typeof legs === "number"
    ? Array.from({ length: legs }, () => new MemoryBlockDevice({ size }))
    : legs;
  const faulty = data.map((l) => {
    const f = new FaultyDevice(l);
    // A leg is a node: it outlives the mirror (closing the mirror closes its link, not it).
    f.close = () => Promise.resolve(f.releaseHung());
    return f;
  });
  const logger = new MemoryLogger();
  const system = new ActorSystem({ node: "test", log: logger });
  const mirror = await spawnMirror(system, faulty, {
    probeMs: 0,
    activityIdleMs: 50,
    legTimeoutMs: 500,
    logger,
    ...(options.noMedia ? {} : { media: data.map((l, i) => faultyMedia(l, faulty[i]!)) }),
    ...options,
  });
  return {
    system,
    legs: data,
    faulty,
    mirror,
    logger,
    close: async () => {
      for (const f of faulty) f.releaseHung();
      await mirror.close();
      await system.shutdown();
    },
  };
}

/** Waits (in real time, bounded) until `ok` holds. */
export async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const fill = (byte: number, n = 4096): Uint8Array => new Uint8Array(n).fill(byte);

export const states = (mirror: Mirror): string[] => mirror.legs().map((l) => l.state);
