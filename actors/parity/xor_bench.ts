/**
 * How parity XOR was chosen (`deno bench actors/parity/xor_bench.ts`): bytes, 32-bit words (what
 * xor.ts does for small buffers), and a hand-written wasm SIMD xor (v128.xor) both with the copies into and out of
 * its memory that real leg buffers need and without them (data already resident).
 */
import { xorInto, xorWords } from "./xor.ts";

function xorBytes(d: Uint8Array, s: Uint8Array): void {
  for (let i = 0; i < d.length; i++) d[i]! ^= s[i]!;
}

/** (func (param $d i32 $s i32 $n i32) (local $i i32): 16 bytes at a time with v128.xor. */
const WASM = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
  ...[1, 7, 1, 0x60, 3, 0x7f, 0x7f, 0x7f, 0],
  ...[3, 2, 1, 0],
  ...[5, 3, 1, 0, 64],
  ...[7, 13, 2, 3, 0x78, 0x6f, 0x72, 0, 0, 3, 0x6d, 0x65, 0x6d, 2, 0],
  ...[10, 57, 1, 55, 1, 1, 0x7f, 0x02, 0x40, 0x03, 0x40],
  ...[0x20, 3, 0x20, 2, 0x4f, 0x0d, 1],
  ...[0x20, 0, 0x20, 3, 0x6a],
  ...[0x20, 0, 0x20, 3, 0x6a, 0xfd, 0x00, 0x04, 0x00],
  ...[0x20, 1, 0x20, 3, 0x6a, 0xfd, 0x00, 0x04, 0x00],
  ...[0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x00],
  ...[0x20, 3, 0x41, 0x10, 0x6a, 0x21, 3, 0x0c, 0, 0x0b, 0x0b, 0x0b],
]);
const instance = new WebAssembly.Instance(new WebAssembly.Module(WASM));
const wasmXor = instance.exports.xor as (d: number, s: number, n: number) => void;
const memory = new Uint8Array((instance.exports.mem as WebAssembly.Memory).buffer);
const SRC = 2 * 1024 * 1024;

function xorWasmCopying(d: Uint8Array, s: Uint8Array): void {
  memory.set(d, 0);
  memory.set(s, SRC);
  wasmXor(0, SRC, d.length);
  d.set(memory.subarray(0, d.length));
}

for (const size of [64 * 1024, 1024 * 1024]) {
  const a = new Uint8Array(size);
  const b = new Uint8Array(size).fill(3);
  const group = `${size / 1024} KiB`;
  Deno.bench(`bytes ${group}`, { group }, () => xorBytes(a, b));
  Deno.bench(`words ${group}`, { group }, () => xorWords(a, b));
  Deno.bench(
    `xor.ts (wasm in 64 KiB blocks) ${group}`,
    { group, baseline: true },
    () => xorInto(a, b),
  );
  Deno.bench(`wasm simd + copies ${group}`, { group }, () => xorWasmCopying(a, b));
  Deno.bench(`wasm simd resident ${group}`, { group }, () => wasmXor(0, SRC, size));
}
