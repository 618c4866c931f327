/**
 * The mirror mapping and its resync: one subsystem. `spawnMirror` starts a mirror actor over
 * its legs; the rest is its inside (see core.ts for where state lives and how it moves).
 */
export { type Mirror, type MirrorActorOptions, spawnMirror } from "./actor.ts";
export { ControlRefused, type MirrorOptions } from "./core.ts";
export type { ActionDone, MirrorAction } from "./maintenance.ts";
export type { LegState } from "./leg_machine.ts";
export type { LegStatus, ResyncStatus } from "./status.ts";
export type { VerifyReport } from "./verify.ts";
export { StartRefused } from "./start.ts";
export { type FenceRecord, isFencedError } from "./fencing.ts";
