/**
 * A small seeded generator for the fuzz suites: numbers that sit on boundaries, bytes, and text
 * that breaks naive code (unicode, NUL, lone surrogates, long runs). Built on the project's
 * seeded random so a failing case replays alone from its seed and index.
 */
import { SeededRandom } from "../../util/random.ts";

/** The seed of case `index` of a run seeded `seed`: each case replays without the others. */
export function caseSeed(seed: number, index: number): number {
  return (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
}

const TWO_32 = 2 ** 32;

const TEXT_PIECES = [
  "a",
  "dst",
  "é",
  "日本",
  "🙂",
  "\u202e", // right-to-left override
  "\u0301", // combining accent
  "\0",
  "\ud800", // a lone surrogate
  "%",
  "%00",
  "%2F",
  "/",
  "..",
  "\\",
  " ",
  "\n",
  "\r\n",
  "'",
  '"',
  "<script>",
  "{",
  "}",
  "$",
];

export class FuzzGen {
  readonly #random: SeededRandom;

  constructor(seed: number) {
    this.#random = new SeededRandom(seed);
  }

  /** A whole number in [0, n). */
  below(n: number): number {
    return this.#random.below(n);
  }

  /** A whole number in [min, max]. */
  between(min: number, max: number): number {
    return min + this.#random.below(max - min + 1);
  }

  chance(p: number): boolean {
    return this.#random.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.#random.below(items.length)]!;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.#random.below(256);
    return out;
  }

  /** A 32-bit value, often one on a boundary. */
  u32(): number {
    if (this.chance(0.5)) {
      return this.pick([
        0,
        1,
        2,
        7,
        0xff,
        0x10001,
        0x1000000,
        0x1000001,
        0x7fffffff,
        0x80000000,
        0xfffffffe,
        0xffffffff,
      ]);
    }
    return this.below(TWO_32);
  }

  /** A 64-bit value as [high, low] words, often one on a boundary or near `near`. */
  u64(near = 0): [number, number] {
    const n = this.pick([0, 1, near - 1, near, near + 1, 2 * near, TWO_32 - 1, TWO_32, -1]);
    if (this.chance(0.3)) return [this.u32(), this.u32()];
    if (n === -1) return [0xffffffff, 0xffffffff];
    const v = Math.max(0, n);
    return [Math.floor(v / TWO_32), v >>> 0];
  }

  /** Text of up to `max` pieces, mixing plain words with characters that break naive code. */
  text(max = 8): string {
    let out = "";
    const n = this.below(max + 1);
    for (let i = 0; i < n; i++) {
      out += this.chance(0.6) ? this.pick(TEXT_PIECES) : String.fromCharCode(this.below(0x3000));
    }
    return out;
  }
}
