/**
 * What the parity unit tests share: a parity storage over memory legs that fail or hang on
 * command (the mirror's fixture with the parity layout), a model of what the device should hold,
 * and a check, straight on the legs' bytes, that every stripe adds up.
 */
import type { MemoryBlockDevice } from "../block/memory.ts";
import { type FixtureOptions, mirrorFixture } from "../../tests/support/mirror_fixture.ts";
import { Geometry } from "./geometry.ts";
import { parityLayout } from "./layout.ts";
import { isZero, xorInto } from "./xor.ts";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const UNIT = 64 * KiB;
export const CHUNK = 256 * KiB;

/** A parity storage over `legs` memory legs (or these) with media, 64 KiB units, 256 KiB chunks. */
export function parityFixture(
  legs: number | MemoryBlockDevice[],
  options: FixtureOptions & { unit?: number } = {},
) {
  const { unit = UNIT, ...rest } = options;
  return mirrorFixture(legs, { chunkSize: CHUNK, ...rest, layout: parityLayout(unit) });
}

/** Rows of the legs whose units do not XOR to zero (read straight off the legs). */
export async function stripesNotAddingUp(
  legs: readonly MemoryBlockDevice[],
  unit = UNIT,
): Promise<number[]> {
  const g = new Geometry(legs.length, unit, Math.min(...legs.map((l) => l.info().size)));
  const bad: number[] = [];
  for (let row = 0; row < g.rows; row++) {
    const sum = new Uint8Array(unit);
    for (const leg of legs) xorInto(sum, await leg.read(g.legOffset(row, 0), unit));
    if (!isZero(sum)) bad.push(row);
  }
  return bad;
}

/** Deterministic bytes for (seed, length): different seeds differ everywhere. */
export function pattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** What the device should hold: every acknowledged write applied in order. */
export class Model {
  readonly bytes: Uint8Array;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }
  write(offset: number, data: Uint8Array): void {
    this.bytes.set(data, offset);
  }
  slice(offset: number, length: number): Uint8Array {
    return this.bytes.subarray(offset, offset + length);
  }
}
