/**
 * Online verify of a parity storage: stripes whose units do not XOR to zero are counted and
 * named (a corrupted byte on one leg, under the storage's feet), nothing is repaired, a repair
 * from a leg is refused (a stripe cannot tell which unit is wrong), and verify needs every leg
 * in sync.
 */
import assert from "node:assert/strict";
import { until } from "../../tests/support/mirror_fixture.ts";
import { Geometry } from "./geometry.ts";
import { parityFixture, pattern, UNIT } from "./test_support.ts";

const SIZE = 4 * 1024 * 1024;

Deno.test("verify counts the stripes that do not add up and repairs nothing", async () => {
  const f = await parityFixture(4, { size: SIZE });
  try {
    await until("in sync", () => f.mirror.inSync() === 4);
    const g = new Geometry(4, UNIT, SIZE);
    await f.mirror.device.write(0, pattern(1, 10 * g.rowBytes), false);
    const clean = await f.mirror.act({ action: "verify" });
    assert.match(clean.message, /every stripe's parity matches its data/);
    assert.equal(clean.verify?.mismatchedChunks, 0);
    // One byte of row 5 and one of row 9 change on their legs, the storage unaware.
    for (const row of [5, 9]) {
      const leg = f.legs[g.dataLeg(row, 1)]!;
      const at = g.legOffset(row, 100);
      const byte = await leg.read(at, 1);
      await leg.write(at, Uint8Array.of(byte[0]! ^ 0xff), false);
    }
    const found = await f.mirror.act({ action: "verify" });
    assert.match(found.message, /verify found 2 stripe\(s\).*stripes 5, 9\).*nothing was repaired/);
    assert.equal(found.verify?.mismatchedBytes, 2 * g.rowBytes);
    const again = await f.mirror.act({ action: "verify" });
    assert.equal(again.verify?.mismatchedBytes, 2 * g.rowBytes, "nothing was repaired");
    await assert.rejects(
      f.mirror.act({ action: "verify", repairFrom: "leg0" }),
      /cannot tell which of its units is wrong/,
    );
    f.faulty[2]!.mode = "error";
    await f.mirror.device.read(0, g.rowBytes * 4);
    await until("leg2 out", () => f.mirror.inSync() === 3);
    await assert.rejects(
      f.mirror.act({ action: "verify" }),
      /verify needs every leg of a parity storage in sync.*leg2 is out/,
    );
  } finally {
    await f.close();
  }
});
