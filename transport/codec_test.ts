/** The hand codec of flat headers agrees with msgpackr, and declines what it does not know. */

import assert from "node:assert/strict";
import { SeededRandom } from "../util/random.ts";
import { decodeFlatMap, encodeFlatMap, packr, unpackr } from "./codec.ts";

function randomValue(random: SeededRandom): unknown {
  switch (random.below(12)) {
    case 0:
      return random.below(128);
    case 1:
      return random.below(1 << 16);
    case 2:
      return random.below(2 ** 32);
    case 3:
      return -1 - random.below(2 ** 31);
    case 4:
      return random.below(2 ** 52) * 2; // beyond 32 bits
    case 5:
      return random.below(1000) / 7;
    case 6:
      return random.below(2) === 0;
    case 7:
      return null;
    case 8:
      return "x".repeat(random.below(40));
    case 9:
      return "é" + "y".repeat(random.below(5)); // not ASCII
    case 10:
      return new Uint8Array(random.below(300)).map((_, i) => i);
    default:
      return [random.below(5)];
  }
}

Deno.test("flat headers decode as msgpackr decodes them; others are declined", () => {
  const random = new SeededRandom(42);
  let fast = 0;
  for (let n = 0; n < 5000; n++) {
    const header: Record<string, unknown> = { t: "rq" };
    const fields = random.below(8);
    for (let f = 0; f < fields; f++) header[`k${f}`] = randomValue(random);
    const bytes = (packr.pack(header) as Uint8Array).slice();
    const expected = unpackr.unpack(bytes);
    const got = decodeFlatMap(bytes, 0, bytes.length);
    if (got === undefined) continue;
    fast++;
    assert.deepEqual({ ...got }, { ...expected }, JSON.stringify(header));
  }
  assert.ok(fast > 1000, `only ${fast} of 5000 took the fast path`);
});

Deno.test("the usual block request header takes the fast path, inside a larger buffer", () => {
  const header = {
    t: "rq",
    id: 7,
    op: "write",
    off: 2 ** 40,
    len: 4096,
    fua: true,
    ck: 0xdeadbeef,
  };
  const packed = packr.pack(header) as Uint8Array;
  const wire = new Uint8Array(packed.length + 20);
  wire.set(packed, 10);
  assert.deepEqual(decodeFlatMap(wire, 10, 10 + packed.length), header);
});

Deno.test("truncated or trailing bytes are declined, never half-decoded", () => {
  const bytes = (packr.pack({ t: "rp", id: 1, ck: 99, key: new Uint8Array(8) }) as Uint8Array)
    .slice();
  for (let end = 0; end < bytes.length; end++) {
    assert.equal(decodeFlatMap(bytes, 0, end), undefined, `cut at ${end}`);
  }
  const longer = new Uint8Array(bytes.length + 1);
  longer.set(bytes);
  assert.equal(decodeFlatMap(longer, 0, longer.length), undefined, "trailing byte");
  assert.deepEqual(decodeFlatMap(bytes, 0, bytes.length)?.id, 1);
});

Deno.test("flat headers encoded by hand decode the same with msgpackr and by hand", () => {
  const random = new SeededRandom(43);
  const into = new Uint8Array(1024);
  let fast = 0;
  for (let n = 0; n < 5000; n++) {
    const header: Record<string, unknown> = { t: "rp" };
    const fields = random.below(8);
    for (let f = 0; f < fields; f++) header[`k${f}`] = randomValue(random);
    const length = encodeFlatMap(header, into);
    if (length === undefined) continue;
    fast++;
    const bytes = into.slice(0, length);
    assert.deepEqual({ ...unpackr.unpack(bytes) }, header, JSON.stringify(header));
    assert.deepEqual({ ...decodeFlatMap(bytes, 0, length) }, header);
  }
  assert.ok(fast > 1000, `only ${fast} of 5000 took the fast path`);
  assert.equal(encodeFlatMap({ t: "x", list: [1] }, into), undefined, "arrays go to msgpackr");
  assert.equal(encodeFlatMap({ t: "x", big: new Uint8Array(2000) }, into), undefined, "too big");
});
