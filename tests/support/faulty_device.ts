/**
 * A block device wrapper that fails or stalls on command, for testing how mappings react to a
 * leg that errors or stops answering. The data underneath is a real device.
 */
import {
  type BlockDevice,
  BlockError,
  type BlockInfo,
  type Extent,
  type ZeroOptions,
} from "../../actors/block/contract.ts";
import { hold } from "../../util/buffer_lease.ts";

/** What a hung read writes into its buffer when released (see FaultyDevice.read). */
export const LATE_ANSWER = 0xee;

export type FaultMode = "healthy" | "error" | "hang";

export class FaultyDevice implements BlockDevice {
  mode: FaultMode = "healthy";
  /** Operations that reached the inner device. */
  calls = 0;
  readonly #hung: (() => void)[] = [];

  constructor(readonly inner: BlockDevice) {}

  info(): BlockInfo {
    return this.inner.info();
  }

  /** Releases hung operations with an error (so tests end without leaked promises). */
  releaseHung(): void {
    for (const release of this.#hung.splice(0)) release();
  }

  #gate<T>(op: () => Promise<T>): Promise<T> {
    if (this.mode === "error") return Promise.reject(new BlockError("EIO", "injected fault"));
    if (this.mode === "hang") {
      return new Promise<T>((_, reject) =>
        this.#hung.push(() => reject(new BlockError("EIO", "released hang")))
      );
    }
    this.calls++;
    return op();
  }

  /**
   * A hung read behaves as a read whose answer is still on the wire: it holds the buffer it was
   * given and, when released, writes junk (0xee) into it, as a late answer landing there would.
   */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (this.mode === "hang" && into !== undefined) {
      const release = hold(into);
      return new Promise<Uint8Array>((_, reject) =>
        this.#hung.push(() => {
          into.fill(LATE_ANSWER, 0, length);
          release();
          reject(new BlockError("EIO", "released hang"));
        })
      );
    }
    return this.#gate(() => this.inner.read(offset, length, into));
  }
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    return this.#gate(() => this.inner.write(offset, data, fua));
  }
  flush(): Promise<void> {
    return this.#gate(() => this.inner.flush());
  }
  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.#gate(() => this.inner.trim(offset, length, fua));
  }
  zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    return this.#gate(() => this.inner.zero(offset, length, options));
  }
  extents(offset: number, length: number): Promise<Extent[]> {
    return this.#gate(() => this.inner.extents(offset, length));
  }
  cache(offset: number, length: number): Promise<void> {
    return this.#gate(() => this.inner.cache(offset, length));
  }
  close(): Promise<void> {
    this.releaseHung();
    return this.inner.close();
  }
}
