/**
 * Linear mapping: children of any sizes concatenated into one address space. A request that
 * crosses a child boundary is split, and each piece goes to its child in parallel; reads land
 * directly in the caller's buffer (no copy).
 */
import { type BlockDevice, BlockError, type BlockInfo, type Extent } from "../block/contract.ts";
import { combineInfo } from "../block/info.ts";
import { readPieces } from "../block/read_pieces.ts";

/** One piece of a request, as seen by the child that serves it. */
interface Piece {
  readonly child: BlockDevice;
  /** Offset within the child. */
  readonly offset: number;
  readonly length: number;
  /** Offset of the piece within the request. */
  readonly at: number;
}

export class LinearMapping implements BlockDevice {
  readonly #children: readonly BlockDevice[];
  /** starts[i] is the first byte of child i in the mapping; starts[n] is the size. */
  readonly #starts: number[];
  readonly #info: BlockInfo;

  constructor(children: readonly BlockDevice[]) {
    if (children.length === 0) throw new RangeError("a linear mapping needs at least one child");
    this.#children = children;
    this.#starts = [0];
    for (const child of children) {
      this.#starts.push(this.#starts[this.#starts.length - 1]! + child.info().size);
    }
    const size = this.#starts[children.length]!;
    this.#info = { ...combineInfo(children.map((c) => c.info())), size };
  }

  info(): BlockInfo {
    return this.#info;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return await readPieces(
      length,
      into,
      this.#split(offset, length).map((p) => ({
        at: p.at,
        length: p.length,
        read: (view) => p.child.read(p.offset, p.length, view),
      })),
    );
  }

  async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    await Promise.all(
      this.#split(offset, data.length).map((p) =>
        p.child.write(p.offset, data.subarray(p.at, p.at + p.length), fua)
      ),
    );
  }

  async flush(): Promise<void> {
    await Promise.all(this.#children.map((c) => c.flush()));
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    await Promise.all(
      this.#split(offset, length).map((p) => p.child.trim(p.offset, p.length, fua)),
    );
  }

  async zero(
    offset: number,
    length: number,
    options: { fua: boolean; fastZero: boolean; mayTrim: boolean },
  ): Promise<void> {
    await Promise.all(
      this.#split(offset, length).map((p) => p.child.zero(p.offset, p.length, options)),
    );
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    const parts = await Promise.all(
      this.#split(offset, length).map((p) => p.child.extents(p.offset, p.length)),
    );
    return parts.flat();
  }

  async cache(offset: number, length: number): Promise<void> {
    await Promise.all(this.#split(offset, length).map((p) => p.child.cache(p.offset, p.length)));
  }

  async close(): Promise<void> {
    await Promise.all(this.#children.map((c) => c.close()));
  }

  /** Cuts [offset, offset+length) at child boundaries. */
  #split(offset: number, length: number): Piece[] {
    const size = this.#info.size;
    if (offset < 0 || length < 0 || offset + length > size) {
      throw new BlockError("EINVAL", `range ${offset}+${length} is outside the device (${size})`);
    }
    const pieces: Piece[] = [];
    let index = this.#childAt(offset);
    let at = 0;
    // A zero-length request still reaches one child, so it validates and answers.
    do {
      const start = this.#starts[index]!;
      const end = this.#starts[index + 1]!;
      const n = Math.min(end - (offset + at), length - at);
      pieces.push({ child: this.#children[index]!, offset: offset + at - start, length: n, at });
      at += n;
      index++;
    } while (at < length);
    return pieces;
  }

  /** Index of the child holding byte `offset` (binary search; the last child for the end). */
  #childAt(offset: number): number {
    let lo = 0;
    let hi = this.#children.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    // Skip zero-sized children so the piece lands where the bytes are.
    while (lo < this.#children.length - 1 && this.#starts[lo + 1]! <= offset) lo++;
    return lo;
  }
}
