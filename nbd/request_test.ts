/** Request header parsing and the edge validation table, without a socket. */
import assert from "node:assert/strict";
import { RequestHeader, type RequestLimits, validateRequest } from "./request.ts";

function header(
  type: number,
  offset: number,
  length: number,
  flags = 0,
  extended = false,
): RequestHeader {
  const bytes = new Uint8Array(extended ? 32 : 28);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, extended ? 0x21e41c71 : 0x25609513);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  v.setUint32(8, 0xdeadbeef);
  v.setUint32(12, 0x01020304);
  v.setUint32(16, Math.floor(offset / 2 ** 32));
  v.setUint32(20, offset >>> 0);
  if (extended) {
    v.setUint32(24, Math.floor(length / 2 ** 32));
    v.setUint32(28, length >>> 0);
  } else v.setUint32(24, length);
  const h = new RequestHeader();
  assert.ok(h.parse(bytes, extended));
  return h;
}

const all = 0x1 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800;
const limits: RequestLimits = {
  size: 1 << 20,
  flags: all,
  minBlock: 512,
  maxBlock: 64 * 1024,
  blockStatus: true,
};

Deno.test("request: compact and extended headers parse to the same fields", () => {
  const c = header(1, 2 ** 40 + 512, 4096, 1);
  const e = header(1, 2 ** 40 + 512, 4096, 1, true);
  for (const h of [c, e]) {
    assert.equal(h.type, 1);
    assert.equal(h.flags, 1);
    assert.equal(h.handleHi, 0xdeadbeef);
    assert.equal(h.handleLo, 0x01020304);
    assert.equal(h.offset, 2 ** 40 + 512);
    assert.equal(h.length, 4096);
    assert.equal(h.payloadLength(h === e), 4096);
  }
  assert.equal(new RequestHeader().parse(new Uint8Array(28), false), false, "bad magic");
});

Deno.test("request: validation answers the errors the protocol document names", () => {
  const cases: [RequestHeader, RequestLimits, number | null][] = [
    [header(0, 0, 4096), limits, null],
    [header(0, 1 << 20, 512), limits, 22], // read past the end: EINVAL
    [header(1, 1 << 20, 512), limits, 28], // write past the end: ENOSPC
    [header(6, (1 << 20) - 512, 1024), limits, 28], // zero past the end: ENOSPC
    [header(0, 100, 512), limits, 22], // misaligned
    [header(0, 0, 128 * 1024), limits, 22], // over the maximum
    [header(0, 0, 128 * 1024, 4), limits, 75], // over the maximum with DF: EOVERFLOW
    [header(6, 0, 128 * 1024, 16), limits, null], // fast zero may exceed the maximum
    [header(4, 0, 512 * 1024), limits, null], // trim is not capped
    [header(9, 0, 512), limits, 22], // unknown command
    [header(0, 0, 512, 0x200), limits, 22], // unknown flag
    [header(0, 0, 512, 8), limits, 22], // REQ_ONE on a read
    [header(3, 0, 0), limits, null],
    [header(3, 0, 512), limits, 22], // flush with a length
    [header(1, 0, 512), { ...limits, flags: 0x3 }, 1], // write to read-only: EPERM
    [header(4, 0, 512), { ...limits, flags: 0x3 }, 1],
    [header(4, 0, 512), { ...limits, flags: 0x1 }, 22], // trim not advertised
    [header(7, 0, 512), { ...limits, blockStatus: false }, 22],
    [header(0, 0, 512, 1), { ...limits, flags: all & ~0x8 }, 22], // FUA not advertised
    [header(6, 0, 512, 16), { ...limits, flags: all & ~0x800 }, 22], // FAST_ZERO not advertised
    [header(0, 0, 0), limits, 22], // zero length
  ];
  for (const [h, l, error] of cases) {
    const r = validateRequest(h, l, false);
    assert.equal(
      r?.error ?? null,
      error,
      `type ${h.type} ${h.offset}+${h.length} flags ${h.flags}: ${r?.message}`,
    );
  }
});
