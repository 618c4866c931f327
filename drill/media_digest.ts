/**
 * The digest of a stopped node's data, read straight from its media file (the data area starts
 * where the media header, checked by the media module, says), so legs can be compared without
 * trusting dst to read them back.
 */
import { createHash } from "node:crypto";
import { openMedia } from "../actors/block/media.ts";
import { isZero, xorInto } from "../actors/parity/xor.ts";

export async function mediaDigest(path: string, size: number): Promise<string> {
  const file = await Deno.open(path, { read: true });
  try {
    const offset = await dataOffset(file);
    const hash = createHash("sha256");
    const chunk = new Uint8Array(1 << 20);
    for (let at = 0; at < size; at += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, size - at));
      await readFully(file, part, offset + at);
      hash.update(part);
    }
    return hash.digest("hex");
  } finally {
    file.close();
  }
}

/**
 * The first stripe (unit-sized row) where the data areas of a parity's stopped legs do not XOR
 * to zero, or -1 when every stripe adds up.
 */
export async function firstBadStripe(
  paths: readonly string[],
  size: number,
  unit: number,
): Promise<number> {
  const files = await Promise.all(paths.map((p) => Deno.open(p, { read: true })));
  try {
    const offsets = await Promise.all(files.map(dataOffset));
    const sum = new Uint8Array(1 << 20);
    const part = new Uint8Array(1 << 20);
    for (let at = 0; at < size; at += sum.length) {
      const n = Math.min(sum.length, size - at);
      sum.fill(0);
      for (const [i, file] of files.entries()) {
        await readFully(file, part.subarray(0, n), offsets[i]! + at);
        xorInto(sum.subarray(0, n), part.subarray(0, n));
      }
      for (let u = 0; u < n; u += unit) {
        if (!isZero(sum.subarray(u, Math.min(n, u + unit)))) return (at + u) / unit;
      }
    }
    return -1;
  } finally {
    for (const f of files) f.close();
  }
}

/** Where the data area of the media in `file` starts, as its (checked) header says. */
async function dataOffset(file: Deno.FsFile): Promise<number> {
  const bytes = (await file.stat()).size;
  const meta = await openMedia({
    pread: (buf, position) => readFully(file, buf, position),
    pwrite: () => Promise.reject(new Error("read-only: the drill only reads media")),
    sync: () => Promise.resolve(),
    size: () => bytes,
  });
  return meta.dataOffset;
}

async function readFully(file: Deno.FsFile, buf: Uint8Array, position: number): Promise<void> {
  await file.seek(position, Deno.SeekMode.Start);
  for (let got = 0; got < buf.length;) {
    const n = await file.read(buf.subarray(got));
    if (n === null) throw new Error(`media ends before byte ${position + buf.length}`);
    got += n;
  }
}
