/**
 * Fencing in the mirror. A leg answering EFENCED is not a failing leg: its node was claimed by a
 * newer exporter of this storage, so this mirror no longer owns any of its legs. Marking that
 * leg out would let this mirror go on writing the others, beside the new owner; instead the
 * whole mirror is fenced (core.ts `fence`), a one-way move after which it acknowledges no
 * client request, changes no leg state and stamps nothing.
 *
 * Each leg's device and media are seen through a wrapper that fences the mirror the moment an
 * EFENCED answer arrives, before the code that asked sees the error, so no path (client writes,
 * bitmap stores, generation stamps, resync copies) can treat it as the leg's fault.
 */
import {
  type BlockDevice,
  BlockError,
  type BlockInfo,
  type Extent,
  type MediaDevice,
  type MediaPatch,
  type MediaState,
  type ZeroOptions,
} from "../block/contract.ts";

/** Why and when the mirror was fenced. */
export interface FenceRecord {
  readonly why: string;
  /** Clock time of the fencing. */
  readonly at: number;
}

export function isFencedError(error: unknown): error is BlockError {
  return error instanceof BlockError && error.code === "EFENCED";
}

/** What a client of a fenced mirror hears (EFENCED; NBD clients see EIO). */
export function fencedError(what: string, record: FenceRecord): BlockError {
  return new BlockError(
    "EFENCED",
    `${what} refused: this exporter was fenced and acknowledges nothing more (${record.why})`,
  );
}

/** `op`, with an EFENCED rejection reported to `onFenced` first. */
function watch<T>(op: Promise<T>, onFenced: (why: string) => void): Promise<T> {
  return op.then(undefined, (error) => {
    if (isFencedError(error)) onFenced(error.detail);
    throw error;
  });
}

/** A leg's device that fences the mirror on the first EFENCED answer. */
export class FenceAwareDevice implements BlockDevice {
  constructor(readonly inner: BlockDevice, readonly onFenced: (why: string) => void) {}

  info(): BlockInfo {
    return this.inner.info();
  }
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return watch(this.inner.read(offset, length, into), this.onFenced);
  }
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    return watch(this.inner.write(offset, data, fua), this.onFenced);
  }
  flush(): Promise<void> {
    return watch(this.inner.flush(), this.onFenced);
  }
  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return watch(this.inner.trim(offset, length, fua), this.onFenced);
  }
  zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    return watch(this.inner.zero(offset, length, options), this.onFenced);
  }
  extents(offset: number, length: number): Promise<Extent[]> {
    return watch(this.inner.extents(offset, length), this.onFenced);
  }
  cache(offset: number, length: number): Promise<void> {
    return watch(this.inner.cache(offset, length), this.onFenced);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A leg's media operations that fence the mirror on the first EFENCED answer. */
export function fenceAwareMedia(
  media: MediaDevice,
  onFenced: (why: string) => void,
): MediaDevice {
  return {
    media: (): Promise<MediaState> => watch(media.media(), onFenced),
    updateMedia: (patch: MediaPatch) => watch(media.updateMedia(patch), onFenced),
    readBitmap: () => watch(media.readBitmap(), onFenced),
    storeBitmap: (at: number, bytes: Uint8Array) => watch(media.storeBitmap(at, bytes), onFenced),
    digest: (offset: number, length: number, chunk: number) =>
      watch(media.digest(offset, length, chunk), onFenced),
  };
}
