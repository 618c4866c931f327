/**
 * Parity arithmetic: XOR of one buffer into another. Measured with `deno bench
 * actors/parity/xor_bench.ts` on this machine: a hand-written wasm SIMD xor (v128.xor, 16 bytes a
 * step) with the copies into and out of its memory that the legs' buffers need runs 1.4–1.8×
 * faster than 32-bit words in JS (64 KiB: 7.7 µs vs 13.7 µs; 1 MiB: 142 µs vs 198 µs) and 7–9×
 * faster than bytes; so large buffers go through wasm in fixed 64 KiB blocks (its memory is
 * allocated once), small ones through words. Nothing is allocated per call beyond typed-array
 * views.
 */

/** (func $xor (param $d i32) (param $s i32) (param $n i32)): d[0..n) ^= s[0..n), 16 bytes a step. */
const MODULE = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
  ...[1, 7, 1, 0x60, 3, 0x7f, 0x7f, 0x7f, 0], // type: (i32 i32 i32) -> ()
  ...[3, 2, 1, 0], // one function of that type
  ...[5, 3, 1, 0, 4], // memory: 4 pages (256 KiB)
  ...[7, 13, 2, 3, 0x78, 0x6f, 0x72, 0, 0, 3, 0x6d, 0x65, 0x6d, 2, 0], // export xor, mem
  ...[10, 57, 1, 55, 1, 1, 0x7f, 0x02, 0x40, 0x03, 0x40], // code: local $i; block; loop
  ...[0x20, 3, 0x20, 2, 0x4f, 0x0d, 1], // br_if 1 ($i >= $n)
  ...[0x20, 0, 0x20, 3, 0x6a], // address $d+$i
  ...[0x20, 0, 0x20, 3, 0x6a, 0xfd, 0x00, 0x04, 0x00], // v128.load ($d+$i)
  ...[0x20, 1, 0x20, 3, 0x6a, 0xfd, 0x00, 0x04, 0x00], // v128.load ($s+$i)
  ...[0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x00], // v128.xor; v128.store
  ...[0x20, 3, 0x41, 0x10, 0x6a, 0x21, 3, 0x0c, 0, 0x0b, 0x0b, 0x0b], // $i += 16; br 0
]);

/** Bytes xored per wasm call: the two halves of its first 128 KiB. */
const BLOCK = 64 * 1024;
/** Below this, words in JS (the copies cost more than they save). */
const SMALL = 1024;

const instance = new WebAssembly.Instance(new WebAssembly.Module(MODULE));
const wasmXor = instance.exports.xor as (d: number, s: number, n: number) => void;
const memory = new Uint8Array((instance.exports.mem as WebAssembly.Memory).buffer);

/** dst[i] ^= src[i] for every byte of `dst` (`src` at least as long). */
export function xorInto(dst: Uint8Array, src: Uint8Array): void {
  const n = dst.length;
  if (n < SMALL) return xorWords(dst, src);
  for (let at = 0; at < n; at += BLOCK) {
    const len = Math.min(BLOCK, n - at);
    memory.set(dst.subarray(at, at + len), 0);
    memory.set(src.subarray(at, at + len), BLOCK);
    // Whole 16-byte steps; the few bytes past len in memory are ignored.
    wasmXor(0, BLOCK, len);
    dst.set(memory.subarray(0, len), at);
  }
}

/** The same on 32-bit words where both views share their alignment, bytes elsewhere. */
export function xorWords(dst: Uint8Array, src: Uint8Array): void {
  const n = dst.length;
  let i = 0;
  if ((dst.byteOffset & 3) === (src.byteOffset & 3) && n >= 16) {
    const head = (4 - (dst.byteOffset & 3)) & 3;
    for (; i < head; i++) dst[i]! ^= src[i]!;
    const words = (n - head) >> 2;
    const a = new Int32Array(dst.buffer, dst.byteOffset + head, words);
    const b = new Int32Array(src.buffer, src.byteOffset + head, words);
    for (let w = 0; w < words; w++) a[w]! ^= b[w]!;
    i = head + words * 4;
  }
  for (; i < n; i++) dst[i]! ^= src[i]!;
}

/** Is every byte zero (word-wise where aligned)? */
export function isZero(data: Uint8Array): boolean {
  const n = data.length;
  let i = 0;
  const head = (4 - (data.byteOffset & 3)) & 3;
  if (n >= 16) {
    for (; i < head; i++) if (data[i] !== 0) return false;
    const words = (n - head) >> 2;
    const a = new Int32Array(data.buffer, data.byteOffset + head, words);
    for (let w = 0; w < words; w++) if (a[w] !== 0) return false;
    i = head + words * 4;
  }
  for (; i < n; i++) if (data[i] !== 0) return false;
  return true;
}
