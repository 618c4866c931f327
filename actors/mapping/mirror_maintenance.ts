/**
 * The administrator's operations on a serving mirror: suspend and resume a leg, declare one
 * clean or dirty, add or remove a leg, and verify the in-sync legs against each other. They act
 * on the mirror through `MaintenanceHost`, the few internals they need, and never bypass its
 * range lock: each waits for the writes in flight before it changes a leg.
 */
import type { BlockDevice, MediaDevice } from "../block/contract.ts";
import { newGenerationId, NO_GENERATION } from "../block/media.ts";
import type { Logger } from "../../util/log.ts";
import { ChunkBits } from "../resync/bitmap.ts";
import type { MirrorGenerations } from "./mirror_generations.ts";
import { type Leg, type LegState, newLeg } from "./mirror_leg.ts";
import type { WriteIntentBitmap } from "./write_intent_bitmap.ts";

/** What maintenance needs of the mirror. */
export interface MaintenanceHost {
  /** The mirror's legs, in order (maintenance adds and removes legs here). */
  readonly legs: Leg[];
  readonly size: number;
  readonly chunks: number;
  readonly chunkSize: number;
  readonly inSync: number;
  readonly bitmap: WriteIntentBitmap;
  readonly logger: Logger;
  /** The generations the serving legs carry, and their stamping. */
  readonly gen: MirrorGenerations;
  /** Runs `fn` with [offset, offset+length) locked against writes and resyncs. */
  lock<T>(offset: number, length: number, fn: () => Promise<T>): Promise<T>;
  setState(leg: Leg, state: LegState, reason: string | undefined): void;
  /** Judges a leg that is out (decision table) and starts its resync. */
  judge(leg: Leg): Promise<void>;
}

/** Resolves once every write in flight has ended (the whole device locked for a moment). */
function quiesce(host: MaintenanceHost): Promise<void> {
  return host.lock(0, host.size, () => Promise.resolve());
}

export function findLeg(legs: readonly Leg[], name: string): Leg {
  const leg = legs.find((l) => l.name === name);
  if (leg === undefined) {
    throw new Error(
      `no leg named "${name}" in this mirror (legs: ${legs.map((l) => l.name).join(", ")})`,
    );
  }
  return leg;
}

/** Takes a leg out of service: writes go on to the others and its misses are tracked. */
export async function suspend(host: MaintenanceHost, name: string): Promise<void> {
  const leg = findLeg(host.legs, name);
  if (leg.state === "suspended") return;
  if (leg.state === "in-sync" && host.inSync === 1) {
    throw new Error(`${name} is the last in-sync leg: suspending it would stop the storage`);
  }
  await quiesce(host);
  leg.need ??= new ChunkBits(host.chunks);
  if (leg.state === "in-sync") host.gen.mustRotate = true;
  host.setState(leg, "suspended", "suspended by the administrator");
}

/** Brings a suspended or refused leg back: it is judged again and resynced. */
export async function resume(host: MaintenanceHost, name: string): Promise<void> {
  const leg = findLeg(host.legs, name);
  if (leg.state === "in-sync" || leg.state === "rebuilding") return;
  host.setState(leg, "out", "resuming");
  await host.judge(leg);
}

/** Declares a leg's data good as it is: it joins the in-sync set without a copy. */
export async function markClean(host: MaintenanceHost, name: string): Promise<void> {
  const leg = findLeg(host.legs, name);
  if (leg.state === "in-sync") return;
  leg.removed = true; // stops a running resync
  await quiesce(host);
  leg.removed = false;
  const noneServing = host.inSync === 0;
  if (noneServing) {
    // The administrator picked the truth (a split brain): this leg's generations lead.
    const g = leg.known?.generations;
    host.gen.current = g !== undefined && g.current !== NO_GENERATION
      ? g
      : { current: newGenerationId(), bitmap: NO_GENERATION, history: [] };
  }
  leg.need = undefined;
  leg.adopt = true;
  await host.gen.stamp(leg);
  host.setState(leg, "in-sync", undefined);
  host.gen.mustRotate = host.legs.some((l) => l.state !== "in-sync");
}

/** Declares a leg's data bad: it is resynced in full (never the last in-sync leg). */
export async function markDirty(host: MaintenanceHost, name: string): Promise<void> {
  const leg = findLeg(host.legs, name);
  if (leg.state === "in-sync" && host.inSync === 1) {
    throw new Error(`${name} is the last in-sync leg: there is nothing to resync it from`);
  }
  if (host.inSync === 0) throw new Error("no leg is in sync: mark one leg clean first");
  leg.removed = true;
  await quiesce(host);
  leg.removed = false;
  if (leg.state === "in-sync") host.gen.mustRotate = true;
  if (leg.media !== undefined) {
    leg.known = await leg.media.updateMedia({ flags: 0 }).catch(() => leg.known);
  }
  leg.need = ChunkBits.full(host.chunks);
  leg.adopt = true;
  host.setState(leg, "out", "marked dirty by the administrator");
  await host.judge(leg);
}

/** Adds a leg while serving; it is resynced in full before it is read. */
export async function addLeg(
  host: MaintenanceHost,
  name: string,
  device: BlockDevice,
  media: MediaDevice | undefined,
): Promise<void> {
  if (host.legs.some((l) => l.name === name)) {
    throw new Error(`the mirror already has a leg named "${name}"`);
  }
  if (device.info().size < host.size) {
    throw new Error(`${name} holds ${device.info().size} bytes; the mirror needs ${host.size}`);
  }
  if (host.inSync === 0) throw new Error("no leg is in sync to copy the new leg from");
  const leg = newLeg(device, media, name);
  leg.state = "out";
  leg.need = ChunkBits.full(host.chunks);
  leg.adopt = true;
  host.legs.push(leg);
  host.gen.mustRotate = true;
  if (media !== undefined) {
    leg.known = await media.updateMedia({ flags: 0 }).catch(() => undefined);
  }
  await host.judge(leg);
}

/** Removes a leg while serving (never the last in-sync one); its device is closed. */
export async function removeLeg(host: MaintenanceHost, name: string): Promise<void> {
  const leg = findLeg(host.legs, name);
  if (leg.state === "in-sync" && host.inSync === 1) {
    throw new Error(`${name} is the last in-sync leg: removing it would stop the storage`);
  }
  if (host.legs.length === 1) throw new Error("a mirror keeps at least one leg");
  leg.removed = true;
  await quiesce(host);
  host.legs.splice(host.legs.indexOf(leg), 1);
  // Its media no longer belongs to this storage: were it added back, it is resynced in full.
  await leg.media?.updateMedia({ flags: 0 }).catch(() => {});
  await leg.device.close().catch(() => {});
  host.bitmap.recompute();
}

/**
 * Online verify: compares digests of every in-sync leg chunk by chunk (under the range lock);
 * a leg that disagrees with the majority is marked for those chunks and resynced.
 */
export async function verify(host: MaintenanceHost): Promise<{ mismatches: number }> {
  const legs = host.legs.filter((l) => l.state === "in-sync" && l.media !== undefined);
  if (legs.length < 2) throw new Error("verify needs at least two in-sync legs with media");
  let mismatches = 0;
  const found = new Map<Leg, ChunkBits>();
  for (let c = 0; c < host.chunks; c++) {
    const offset = c * host.chunkSize;
    const length = Math.min(host.chunkSize, host.size - offset);
    const digests = await host.lock(
      offset,
      length,
      () =>
        Promise.all(
          legs.map((l) =>
            l.state === "in-sync"
              ? l.media!.digest(offset, length, host.chunkSize).then(hex, () => undefined)
              : undefined
          ),
        ),
    );
    const counts = new Map<string, number>();
    for (const d of digests) if (d !== undefined) counts.set(d, (counts.get(d) ?? 0) + 1);
    if (counts.size <= 1) continue;
    const best = [...counts.entries()].reduce((a, b) => (b[1] > a[1] ? b : a))[0];
    legs.forEach((l, i) => {
      if (digests[i] !== undefined && digests[i] !== best) {
        mismatches++;
        const bits = found.get(l) ?? new ChunkBits(host.chunks);
        bits.set(c);
        found.set(l, bits);
      }
    });
  }
  for (const [leg, bits] of found) {
    if (leg.state !== "in-sync" || host.inSync === 1) continue;
    leg.need = bits;
    host.bitmap.orChanged(bits);
    host.gen.mustRotate = true;
    host.setState(leg, "out", `verify found ${bits.count()} chunk(s) differing`);
    await host.bitmap.store();
    void host.judge(leg);
  }
  host.logger.log(mismatches ? "warn" : "info", "mirror verify done", { mismatches });
  return { mismatches };
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
