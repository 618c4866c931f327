/**
 * Owner grants on media: kept durably in the header (a reopen finds them), media written before
 * the field existed reads as epoch 0 with no owner, and generation stamps are compare-and-swap
 * on file and memory devices alike: a stamp expecting another current generation changes
 * nothing and fails with EFENCED.
 */
import assert from "node:assert/strict";
import { BlockError, type MediaDevice } from "./contract.ts";
import { FileBlockDevice } from "./file.ts";
import { MemoryBlockDevice } from "./memory.ts";
import { MEDIA_PAGE, NO_OWNER } from "./media.ts";
import { type GrantStore, grantStoreOf, NO_GRANT } from "./owner_grant.ts";
import { guard } from "./guard.ts";

const MiB = 1024 * 1024;
const owner = "0123456789abcdef0123456789abcdef";

Deno.test("owner grant: kept in the header across a reopen; a long label is cut on a character", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/m.img`;
  try {
    const device = await FileBlockDevice.create({ path, size: MiB });
    assert.deepEqual(device.ownerGrant(), NO_GRANT);
    const label = "é".repeat(40); // 80 bytes of UTF-8
    await device.storeOwnerGrant({ epoch: 2 ** 40 + 7, owner, label });
    await device.close();
    const again = await FileBlockDevice.open({ path });
    const grant = again.ownerGrant();
    assert.equal(grant.epoch, 2 ** 40 + 7);
    assert.equal(grant.owner, owner);
    assert.equal(grant.label, "é".repeat(32));
    assert.equal(grantStoreOf(guard(again)), again as GrantStore, "found behind the guard");
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("owner grant: a header from before the field reads as epoch 0, no owner", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/old.img`;
  try {
    await (await FileBlockDevice.create({ path, size: MiB })).close();
    const bytes = await Deno.readFile(path);
    // What older dst wrote there: nothing. The new fields live in bytes it left zero.
    assert.ok(bytes.subarray(676, MEDIA_PAGE - 32).every((b) => b === 0));
    const device = await FileBlockDevice.open({ path });
    assert.deepEqual(device.ownerGrant(), { epoch: 0, owner: NO_OWNER, label: "" });
    await device.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const devices: [string, () => Promise<MediaDevice & { close(): Promise<void> }>][] = [
  ["memory", () => Promise.resolve(new MemoryBlockDevice({ size: MiB }))],
  ["file", async () => {
    const dir = await Deno.makeTempDir();
    const d = await FileBlockDevice.create({ path: `${dir}/c.img`, size: MiB });
    return {
      media: () => d.media(),
      updateMedia: (p) => d.updateMedia(p),
      readBitmap: () => d.readBitmap(),
      storeBitmap: (a, b) => d.storeBitmap(a, b),
      digest: (o, l, c) => d.digest(o, l, c),
      close: async () => {
        await d.close();
        await Deno.remove(dir, { recursive: true });
      },
    };
  }],
];

for (const [name, make] of devices) {
  Deno.test(`generation stamps are compare-and-swap (${name})`, async () => {
    const d = await make();
    try {
      const before = (await d.media()).generations;
      const next = { current: "1111111111111111", bitmap: before.current, history: [] };
      await assert.rejects(
        d.updateMedia({ generations: next, expectCurrent: ["2222222222222222"] }),
        (e: unknown) =>
          e instanceof BlockError && e.code === "EFENCED" && /another exporter/.test(e.message),
      );
      assert.deepEqual((await d.media()).generations, before, "nothing changed");
      await d.updateMedia({
        generations: next,
        expectCurrent: ["9999999999999999", before.current],
      });
      assert.equal((await d.media()).generations.current, "1111111111111111");
    } finally {
      await d.close();
    }
  });
}
