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
 *
 * Except an answer to a request sent before the leg last left its sets: one the mirror gave up
 * on, which the node got late (sent again after a reconnect) and judged against media that
 * moved on since, such as a generation stamp expecting what the media held before. It says
 * nothing about who owns the leg now; the requests sent since will, if another exporter does.
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

/**
 * Called as a request is sent: answers a test of whether the leg is still where it was then
 * (false once it left its sets since).
 */
export type SentAt = () => () => boolean;

/** Told of an EFENCED answer; `current`: to a request sent since the leg last left. */
export type OnFenced = (why: string, current: boolean) => void;

/** `op`, with an EFENCED rejection reported to `onFenced` first. */
function watch<T>(op: Promise<T>, onFenced: OnFenced, sent: SentAt | undefined): Promise<T> {
  const current = sent?.();
  return op.then(undefined, (error) => {
    if (isFencedError(error)) onFenced(error.detail, current?.() ?? true);
    throw error;
  });
}

/** A leg's device that fences the mirror on the first EFENCED answer. */
export class FenceAwareDevice implements BlockDevice {
  constructor(
    readonly inner: BlockDevice,
    readonly onFenced: OnFenced,
    readonly sent?: SentAt,
  ) {}

  info(): BlockInfo {
    return this.inner.info();
  }
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return watch(this.inner.read(offset, length, into), this.onFenced, this.sent);
  }
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    return watch(this.inner.write(offset, data, fua), this.onFenced, this.sent);
  }
  flush(): Promise<void> {
    return watch(this.inner.flush(), this.onFenced, this.sent);
  }
  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return watch(this.inner.trim(offset, length, fua), this.onFenced, this.sent);
  }
  zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    return watch(this.inner.zero(offset, length, options), this.onFenced, this.sent);
  }
  extents(offset: number, length: number): Promise<Extent[]> {
    return watch(this.inner.extents(offset, length), this.onFenced, this.sent);
  }
  cache(offset: number, length: number): Promise<void> {
    return watch(this.inner.cache(offset, length), this.onFenced, this.sent);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A leg's media operations that fence the mirror on the first EFENCED answer. */
export function fenceAwareMedia(
  media: MediaDevice,
  onFenced: OnFenced,
  sent?: SentAt,
): MediaDevice {
  return {
    media: (): Promise<MediaState> => watch(media.media(), onFenced, sent),
    updateMedia: (patch: MediaPatch) => watch(media.updateMedia(patch), onFenced, sent),
    readBitmap: () => watch(media.readBitmap(), onFenced, sent),
    storeBitmap: (at: number, bytes: Uint8Array) =>
      watch(media.storeBitmap(at, bytes), onFenced, sent),
    digest: (offset: number, length: number, chunk: number) =>
      watch(media.digest(offset, length, chunk), onFenced, sent),
  };
}
