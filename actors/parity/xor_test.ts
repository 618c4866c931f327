/** XOR on words and bytes agrees with the byte-by-byte definition at every alignment. */
import assert from "node:assert/strict";
import { isZero, xorInto, xorWords } from "./xor.ts";

Deno.test("xorInto matches bytes at every alignment and length", () => {
  const backA = new Uint8Array(70_010).map((_, i) => (i * 37 + 11) & 0xff);
  const backB = new Uint8Array(70_010).map((_, i) => (i * 91 + 5) & 0xff);
  for (const [offA, offB] of [[0, 0], [1, 1], [2, 2], [3, 3], [0, 1], [1, 3], [2, 0]]) {
    for (const length of [0, 1, 3, 4, 15, 16, 17, 63, 64, 65, 200, 1024, 1031, 70_001]) {
      for (const xor of [xorInto, xorWords]) {
        const a = backA.slice().subarray(offA!, offA! + length);
        const b = backB.subarray(offB!, offB! + length);
        const want = a.map((x, i) => x ^ b[i]!);
        xor(a, b);
        assert.deepEqual(a, want, `${xor.name}: offsets ${offA}/${offB} length ${length}`);
      }
    }
  }
});

Deno.test("xor twice restores, and isZero sees a single set byte anywhere", () => {
  const a = new Uint8Array(4096).map((_, i) => i & 0xff);
  const b = new Uint8Array(4096).map((_, i) => (i * 7) & 0xff);
  const keep = a.slice();
  xorInto(a, b);
  xorInto(a, b);
  assert.deepEqual(a, keep);
  const z = new Uint8Array(1000);
  assert.ok(isZero(z) && isZero(z.subarray(3, 997)));
  for (const at of [0, 1, 2, 3, 4, 500, 998, 999]) {
    z[at] = 1;
    assert.ok(!isZero(z), `byte ${at}`);
    assert.equal(isZero(z.subarray(at + 1)), true);
    z[at] = 0;
  }
});
