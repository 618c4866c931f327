/**
 * The maintenance API of a running storage: what an administrator may ask of its mirrors
 * (suspend, resume, mark clean or dirty, add or remove a leg, verify). The status endpoint's
 * control routes and `dst ctl` call it; every action resolves once the mirror has taken it in
 * (a resync or verify it starts runs on afterwards and shows in the node's state) and rejects
 * with a ControlError saying what was wrong for unknown nodes or impossible actions.
 */

/** What a node of the storage tree may be, as status shows it. */
export type NodeStateName =
  | "in-sync"
  | "degraded"
  | "rebuilding"
  | "suspended"
  | "down"
  | "connecting"
  | "split-brain"
  | "judging"
  | "removed"
  | "out"
  /** A newer exporter owns the storage: this one acknowledges nothing (fencing). */
  | "fenced";

/** A resync in progress on one leg: the mirror's own report of it. */
export type { ResyncStatus as ResyncProgress } from "../actors/mirror/mod.ts";
import type { VerifyReport } from "../actors/mirror/mod.ts";

/** A leaf or remote node to add as a new leg (the same shapes as topology leaves). */
export type LegSpec =
  | { readonly kind: "memory"; readonly size: number | string }
  | { readonly kind: "file"; readonly path: string; readonly size?: number | string }
  | { readonly kind: "remote"; readonly url: string; readonly storageId?: string };

/** The result of an action, for the caller to show. */
export interface ControlResult {
  readonly ok: true;
  readonly message: string;
  /** What a verify found. */
  readonly verify?: VerifyReport;
}

export interface StorageControl {
  /** Names of the nodes an action may name (mirror legs and mirrors). */
  nodes(): string[];
  /** Takes a leg out of service; its misses are tracked in the bitmap. */
  suspend(node: string): Promise<ControlResult>;
  /** Brings a suspended (or refused) leg back; it resyncs what it missed. */
  resume(node: string): Promise<ControlResult>;
  /**
   * Declares a leg's data good as it is, without copying. Refused for a leg that may lack
   * writes (it missed some, or split brain) unless `force`: it would then serve old data.
   */
  clean(node: string, force?: boolean): Promise<ControlResult>;
  /** Declares a leg's data bad: it is resynced in full. */
  dirty(node: string): Promise<ControlResult>;
  /** Adds a new leg to a mirror while it serves; it is resynced in full. */
  addLeg(mirror: string, name: string, spec: LegSpec): Promise<ControlResult>;
  /** Removes a leg from a mirror while it serves (never the last in-sync one). */
  removeLeg(mirror: string, leg: string): Promise<ControlResult>;
  /**
   * Compares every in-sync leg's digests chunk by chunk. A chunk where a strict majority agrees
   * is repaired on the others; where no majority exists it is only reported, unless
   * `repairFrom` names the leg to trust.
   */
  verify(mirror: string, repairFrom?: string): Promise<ControlResult>;
}

/** An action that cannot be done; the message says why and what to do. */
export class ControlError extends Error {
  constructor(readonly code: "unknown-node" | "impossible" | "failed", message: string) {
    super(message);
    this.name = "ControlError";
  }
}

/** The control actions, for argument parsing in `dst ctl` and the HTTP routes. */
export const CONTROL_ACTIONS = [
  "suspend",
  "resume",
  "clean",
  "dirty",
  "add-leg",
  "remove-leg",
  "verify",
] as const;
export type ControlAction = (typeof CONTROL_ACTIONS)[number];
