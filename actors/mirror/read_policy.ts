/**
 * Which in-sync leg serves a read. `round-robin` spreads reads evenly, so every leg's links and
 * CPUs work at once; `nearest` sends a read to the leg whose last read ended closest to where this
 * one starts, so a sequential stream stays on one leg and its read-ahead and caches keep paying (reads
 * near no leg's last position are spread round robin).
 * `bench/storage.ts --read-policy` measures both (see the README for the figures).
 */

export type ReadPolicyName = "round-robin" | "nearest";

/** A read starting within this distance of where a leg's last read ended continues its stream. */
const NEAR_BYTES = 4 * 1024 * 1024;

export class ReadPolicy {
  #next = 0;
  /** Where each leg's last read ended. */
  #lastEnd: number[] = [];

  constructor(readonly name: ReadPolicyName = "round-robin") {}

  /** Index of the leg to read [offset, offset+length) from, among `legs` for which `usable` holds. */
  pick(count: number, usable: (index: number) => boolean, offset: number, length: number): number {
    let chosen = -1;
    if (this.name === "nearest") {
      let best = NEAR_BYTES;
      for (let i = 0; i < count; i++) {
        if (!usable(i)) continue;
        const distance = Math.abs((this.#lastEnd[i] ?? -Infinity) - offset);
        if (distance <= best) {
          best = distance;
          chosen = i;
        }
      }
    }
    // Round robin, and for `nearest` when no leg was reading near here (a random read or a new
    // stream): spread it.
    if (chosen < 0) {
      for (let i = 0; i < count; i++) {
        const index = (this.#next + i) % count;
        if (usable(index)) {
          chosen = index;
          break;
        }
      }
    }
    if (chosen >= 0) {
      this.#next = (chosen + 1) % count;
      this.#lastEnd[chosen] = offset + length;
    }
    return chosen;
  }
}
