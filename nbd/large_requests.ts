/**
 * NBD clients may send requests up to 64 MiB (nbdkit accepts them; nbd-tester-client's
 * integrityhuge trace sends reads of 47.6 MiB without asking the block size): the export takes
 * them and cuts what is larger than its device's own maximum into pieces the device takes, sent
 * at once. The export advertises 64 MiB through NBD_INFO_BLOCK_SIZE.
 */
import type { BlockDevice, BlockInfo, Extent, ZeroOptions } from "../actors/block/contract.ts";
import { type ReadPiece, readPieces } from "../actors/block/read_pieces.ts";

/** The largest request the NBD edge takes, as nbdkit does. */
export const NBD_MAX_REQUEST = 64 * 1024 * 1024;

/** `device` taking requests up to NBD_MAX_REQUEST, cut to its own maximum when larger. */
export function acceptLarge(device: BlockDevice): BlockDevice {
  const inner = device.info();
  if (inner.maxBlock >= NBD_MAX_REQUEST) return device;
  return new LargeRequests(device, inner);
}

class LargeRequests implements BlockDevice {
  readonly #info: BlockInfo;

  constructor(readonly inner: BlockDevice, innerInfo: BlockInfo) {
    this.#info = { ...innerInfo, maxBlock: NBD_MAX_REQUEST };
  }

  info(): BlockInfo {
    return this.#info;
  }

  /** Runs `op` on each piece of [offset, offset+length) no longer than the device's maximum. */
  #pieces(
    offset: number,
    length: number,
    op: (at: number, n: number, within: number) => Promise<unknown>,
  ): Promise<unknown> {
    const max = this.inner.info().maxBlock;
    if (length <= max) return op(offset, length, 0);
    const work: Promise<unknown>[] = [];
    for (let done = 0; done < length; done += max) {
      work.push(op(offset + done, Math.min(max, length - done), done));
    }
    return Promise.all(work);
  }

  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const max = this.inner.info().maxBlock;
    if (length <= max) return this.inner.read(offset, length, into);
    const pieces: ReadPiece[] = [];
    for (let at = 0; at < length; at += max) {
      const n = Math.min(max, length - at);
      pieces.push({ at, length: n, read: (view) => this.inner.read(offset + at, n, view) });
    }
    return readPieces(length, into, pieces);
  }

  async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    await this.#pieces(
      offset,
      data.length,
      (at, n, within) => this.inner.write(at, data.subarray(within, within + n), fua),
    );
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    await this.#pieces(offset, length, (at, n) => this.inner.trim(at, n, fua));
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    await this.#pieces(offset, length, (at, n) => this.inner.zero(at, n, options));
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    return this.inner.extents(offset, length);
  }

  async cache(offset: number, length: number): Promise<void> {
    await this.#pieces(offset, length, (at, n) => this.inner.cache(at, n));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
