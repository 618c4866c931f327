/**
 * The parity mapping (RAID 5, left-symmetric): `spawnParity` starts one over its legs; the rest
 * is its inside (layout.ts says how it sits on the mirror's core).
 */
export { type ParityOptions, spawnParity } from "./actor.ts";
export { DEFAULT_UNIT, parityLayout } from "./layout.ts";
export { Geometry } from "./geometry.ts";
