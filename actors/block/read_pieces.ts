/**
 * A read made of pieces read at once (a linear's children, a request cut to a device's maximum,
 * a mirror's large read spread over its legs), each into its own part of the caller's buffer.
 * When every piece landed where it was asked to, the caller's buffer holds the whole read. When
 * one came back elsewhere (its device abandoned an attempt that may still write into that part:
 * see BlockDevice.read), the read is put together in a fresh buffer instead, and the caller's
 * buffer is not read again.
 */
import { landedIn } from "./contract.ts";

/** One piece: `length` bytes at `at` within the read, read by `read` into the view it is given. */
export interface ReadPiece {
  readonly at: number;
  readonly length: number;
  readonly read: (into: Uint8Array) => Promise<Uint8Array>;
}

/** Reads every piece at once into `into` (or a fresh buffer) and returns the whole read. */
export async function readPieces(
  length: number,
  into: Uint8Array | undefined,
  pieces: readonly ReadPiece[],
): Promise<Uint8Array> {
  const out = into === undefined ? new Uint8Array(length) : into.subarray(0, length);
  const got = await Promise.all(
    pieces.map((p) => p.read(out.subarray(p.at, p.at + p.length))),
  );
  if (pieces.every((p, i) => landedIn(got[i]!, out.subarray(p.at, p.at + p.length)))) return out;
  const fresh = new Uint8Array(length);
  pieces.forEach((p, i) => fresh.set(got[i]!.subarray(0, p.length), p.at));
  return fresh;
}
