/**
 * A block device (with media operations) that records every call the node server makes on it,
 * so a fuzz test can prove what was acted on: before authentication, nothing.
 */
import type {
  BlockDevice,
  BlockInfo,
  Extent,
  MediaDevice,
  MediaPatch,
  MediaState,
  ZeroOptions,
} from "../../actors/block/contract.ts";

export interface RecordedCall {
  readonly op: string;
  readonly offset: number;
  readonly length: number;
}

export class RecordingDevice implements BlockDevice, MediaDevice {
  readonly calls: RecordedCall[] = [];

  constructor(readonly inner: BlockDevice, readonly media_: MediaDevice) {}

  #note(op: string, offset = 0, length = 0): void {
    this.calls.push({ op, offset, length });
  }

  info(): BlockInfo {
    return this.inner.info();
  }
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#note("read", offset, length);
    return this.inner.read(offset, length, into);
  }
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    this.#note("write", offset, data.length);
    return this.inner.write(offset, data, fua);
  }
  flush(): Promise<void> {
    this.#note("flush");
    return this.inner.flush();
  }
  trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.#note("trim", offset, length);
    return this.inner.trim(offset, length, fua);
  }
  zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    this.#note("zero", offset, length);
    return this.inner.zero(offset, length, options);
  }
  extents(offset: number, length: number): Promise<Extent[]> {
    this.#note("extents", offset, length);
    return this.inner.extents(offset, length);
  }
  cache(offset: number, length: number): Promise<void> {
    this.#note("cache", offset, length);
    return this.inner.cache(offset, length);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  media(): Promise<MediaState> {
    this.#note("media");
    return this.media_.media();
  }
  updateMedia(patch: MediaPatch): Promise<MediaState> {
    this.#note("setmedia");
    return this.media_.updateMedia(patch);
  }
  readBitmap(): Promise<Uint8Array> {
    this.#note("rbitmap");
    return this.media_.readBitmap();
  }
  storeBitmap(at: number, bytes: Uint8Array): Promise<void> {
    this.#note("wbitmap", at, bytes.length);
    return this.media_.storeBitmap(at, bytes);
  }
  digest(offset: number, length: number, chunk: number): Promise<Uint8Array> {
    this.#note("digest", offset, length);
    return this.media_.digest(offset, length, chunk);
  }
}
