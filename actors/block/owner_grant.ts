/**
 * Owner grants: the epoch a node last granted an exporter (fencing, actors/node/claim.ts) and
 * where a device keeps it — durably in file media's header, for its life in a memory device.
 * A node refuses changes from an exporter holding a lower grant than the one it keeps.
 */
import { BlockError, type MediaPatch } from "./contract.ts";
import { NO_OWNER } from "./media.ts";

/** An owner epoch and who holds it. */
export interface OwnerGrant {
  readonly epoch: number;
  /** 32 hex digits, random per exporter run (NO_OWNER when nobody claimed). */
  readonly owner: string;
  /** The owner's name, for messages. */
  readonly label: string;
}

/** What media nobody has claimed holds. */
export const NO_GRANT: OwnerGrant = { epoch: 0, owner: NO_OWNER, label: "" };

/** A device that keeps its owner grant. */
export interface GrantStore {
  ownerGrant(): OwnerGrant;
  /** Keeps `grant` (durably, where the device is durable) before resolving. */
  storeOwnerGrant(grant: OwnerGrant): Promise<void>;
}

export function isGrantStore(device: unknown): device is GrantStore {
  const d = device as Partial<GrantStore> | null;
  return typeof d?.ownerGrant === "function" && typeof d.storeOwnerGrant === "function";
}

/** The grant store of `device` or of what it wraps (a guard's `inner`), if any. */
export function grantStoreOf(device: unknown): GrantStore | undefined {
  for (let d: unknown = device, depth = 0; d !== undefined && depth < 8; depth++) {
    if (isGrantStore(d)) return d;
    d = (d as { inner?: unknown }).inner;
  }
  return undefined;
}

/** A grant as "epoch 7 (owner m@host)", for messages. */
export function describeGrant(grant: OwnerGrant): string {
  return `epoch ${grant.epoch}${grant.label === "" ? "" : ` (owner ${grant.label})`}`;
}

/**
 * The compare-and-swap of a generation stamp: throws EFENCED when `patch` expects the media's
 * current generation to be one it is not (another exporter stamped it since).
 */
export function checkExpectedGeneration(patch: MediaPatch, current: string): void {
  const expect = patch.expectCurrent;
  if (expect === undefined || expect.includes(current)) return;
  throw new BlockError(
    "EFENCED",
    `generation stamp refused: the media's current generation is ${current}, not one this ` +
      `exporter wrote or read (${expect.join(", ")}): another exporter stamped it`,
  );
}
