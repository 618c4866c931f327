/**
 * The one guard every block actor sits behind: it checks each request against the contract
 * (range, alignment, size, read-only, capabilities, closed) in one place and emulates what the
 * device underneath lacks — zero as writes from one shared zero buffer, FUA as write + flush,
 * extents as one allocated extent, cache and unsupported trim as no-ops — so backends and
 * mappings stay small (nbdkit's server/backend.c + plugins.c, in one file).
 */
import {
  type BlockDevice,
  BlockError,
  type BlockInfo,
  type Extent,
  type ZeroOptions,
} from "./contract.ts";

/** The one preallocated zero buffer emulated zeroing writes from; never written to. */
export const ZERO_BUFFER = new Uint8Array(1024 * 1024);

/** How a FUA request reaches the device underneath. */
type FuaPath = "native" | "flush" | "none";

export interface GuardOptions {
  /** Refuse every change (EPERM) even when the device underneath could make it. */
  readonly readOnly?: boolean;
}

/** Wraps `inner`; the returned device is safe to hand to anyone. */
export function guard(inner: BlockDevice, options: GuardOptions = {}): GuardedBlockDevice {
  if (inner instanceof GuardedBlockDevice && (!options.readOnly || inner.info().readOnly)) {
    return inner;
  }
  return new GuardedBlockDevice(inner, options);
}

export class GuardedBlockDevice implements BlockDevice {
  readonly inner: BlockDevice;
  readonly #inner: BlockInfo;
  readonly #info: BlockInfo;
  readonly #fua: FuaPath;
  #closed = false;

  constructor(inner: BlockDevice, options: GuardOptions = {}) {
    this.inner = inner;
    const info = options.readOnly ? { ...inner.info(), readOnly: true } : inner.info();
    checkInfo(info);
    this.#inner = info;
    this.#fua = info.canFua ? "native" : info.canFlush ? "flush" : "none";
    this.#info = {
      ...info,
      canFua: this.#fua !== "none",
      canZero: !info.readOnly,
      canFastZero: info.canZero && info.canFastZero && !info.readOnly,
      canTrim: info.canTrim && !info.readOnly,
      canExtents: true,
      canCache: true,
    };
  }

  info(): BlockInfo {
    return this.#info;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#range("read", offset, length, "EINVAL");
    this.#payload("read", length);
    if (into !== undefined && into.length < length) {
      throw new BlockError("EINVAL", `read buffer holds ${into.length} bytes, need ${length}`);
    }
    if (length === 0) return into ? into.subarray(0, 0) : new Uint8Array(0);
    return await this.inner.read(offset, length, into);
  }

  async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    this.#range("write", offset, data.length, "ENOSPC");
    this.#payload("write", data.length);
    this.#writable("write");
    if (data.length === 0) return;
    const path = this.#fuaPath(fua);
    await this.inner.write(offset, data, path === "native");
    if (path === "flush") await this.inner.flush();
  }

  async flush(): Promise<void> {
    this.#open();
    if (!this.#inner.canFlush) {
      // A device that can only FUA has no volatile cache to flush beyond its FUA writes.
      if (this.#inner.canFua) return;
      throw new BlockError("ENOTSUP", "the device cannot flush");
    }
    await this.inner.flush();
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.#range("trim", offset, length, "EINVAL");
    this.#writable("trim");
    const path = this.#fuaPath(fua);
    if (length === 0) return;
    // Trim is advisory: a device without it keeps its data and that is a correct answer.
    if (!this.#inner.canTrim) return;
    await this.inner.trim(offset, length, path === "native");
    if (path === "flush") await this.inner.flush();
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    this.#range("zero", offset, length, "ENOSPC");
    this.#writable("zero");
    const path = this.#fuaPath(options.fua);
    if (options.fastZero && !this.#info.canFastZero) {
      throw new BlockError("ENOTSUP", "the device cannot zero fast");
    }
    if (length === 0) return;
    if (this.#inner.canZero) {
      await this.inner.zero(offset, length, { ...options, fua: path === "native" });
      if (path === "flush") await this.inner.flush();
      return;
    }
    await this.#writeZeros(offset, length, path);
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.#range("extents", offset, length, "EINVAL");
    if (length === 0) throw new BlockError("EINVAL", "extents of an empty range");
    if (!this.#inner.canExtents) return [{ length, hole: false, zero: false }];
    const extents = await this.inner.extents(offset, length);
    return clipExtents(extents, length);
  }

  async cache(offset: number, length: number): Promise<void> {
    this.#range("cache", offset, length, "EINVAL");
    if (length === 0 || !this.#inner.canCache) return;
    await this.inner.cache(offset, length);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.inner.close();
  }

  /** Zeros a range by writing from the shared zero buffer, one bounded piece at a time. */
  async #writeZeros(offset: number, length: number, path: FuaPath): Promise<void> {
    const piece = Math.min(ZERO_BUFFER.length, this.#inner.maxBlock);
    const end = offset + length;
    for (let at = offset; at < end; at += piece) {
      const n = Math.min(piece, end - at);
      await this.inner.write(at, ZERO_BUFFER.subarray(0, n), path === "native" && at + n === end);
    }
    if (path === "flush") await this.inner.flush();
  }

  #fuaPath(fua: boolean): FuaPath {
    if (!fua) return "none";
    if (this.#fua === "none") {
      throw new BlockError("ENOTSUP", "the device can neither flush nor write with FUA");
    }
    return this.#fua;
  }

  #open(): void {
    if (this.#closed) throw new BlockError("ESHUTDOWN", "the device is closed");
  }

  #range(what: string, offset: number, length: number, beyond: "EINVAL" | "ENOSPC"): void {
    this.#open();
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) {
      throw new BlockError(
        "EINVAL",
        `${what}: offset ${offset} and length ${length} must be integers`,
      );
    }
    if (offset < 0 || length < 0) {
      throw new BlockError("EINVAL", `${what}: negative offset ${offset} or length ${length}`);
    }
    const size = this.#info.size;
    if (offset > size || length > size - offset) {
      throw new BlockError(
        beyond,
        `${what}: range ${offset}+${length} is beyond the end (${size})`,
      );
    }
    const min = this.#info.minBlock;
    if (min > 1 && (offset % min !== 0 || length % min !== 0)) {
      throw new BlockError("EINVAL", `${what}: ${offset}+${length} is not aligned to ${min} bytes`);
    }
  }

  #payload(what: string, length: number): void {
    if (length > this.#info.maxBlock) {
      throw new BlockError(
        "EOVERFLOW",
        `${what} of ${length} bytes exceeds the largest request (${this.#info.maxBlock})`,
      );
    }
  }

  #writable(what: string): void {
    if (this.#info.readOnly) throw new BlockError("EPERM", `${what}: the device is read-only`);
  }
}

/** Rejects an info no guard can make sense of: that is a bug in the device, not a request. */
function checkInfo(info: BlockInfo): void {
  const ok = Number.isSafeInteger(info.size) && info.size >= 0 &&
    Number.isSafeInteger(info.minBlock) && info.minBlock >= 1 &&
    Number.isSafeInteger(info.maxBlock) && info.maxBlock >= info.minBlock &&
    info.preferredBlock >= info.minBlock;
  if (!ok) throw new RangeError(`inconsistent block info: ${JSON.stringify(info)}`);
}

/** Keeps extents within the asked length, and insists they cover its first byte. */
function clipExtents(extents: Extent[], length: number): Extent[] {
  let total = 0;
  for (let i = 0; i < extents.length; i++) {
    const e = extents[i]!;
    if (!(e.length > 0)) throw new BlockError("EIO", `device returned an empty extent at ${i}`);
    if (total + e.length >= length) {
      if (total + e.length === length && i === extents.length - 1) return extents;
      const clipped = extents.slice(0, i + 1);
      clipped[i] = { ...e, length: length - total };
      return clipped;
    }
    total += e.length;
  }
  if (total === 0) throw new BlockError("EIO", "device returned no extents");
  return extents;
}
