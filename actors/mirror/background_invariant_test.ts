/**
 * A broken invariant in work nobody awaits (a leg's judgment runs in the background) stops the
 * mirror with a clear message, never escapes as an unhandled promise rejection (which would end
 * the whole process, or be lost).
 */
import assert from "node:assert/strict";
import { fill, mirrorFixture, until } from "../../tests/support/mirror_fixture.ts";
import { MirrorCore } from "./core.ts";
import { InvariantError } from "./invariants.ts";

Deno.test("mirror: an invariant broken while judging a leg in the background stops the mirror", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    unhandled.push(event.reason);
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  const dispatch = MirrorCore.prototype.dispatch;
  const f = await mirrorFixture(2, { size: 1024 * 1024, chunkSize: 64 * 1024 });
  try {
    const { mirror, faulty, logger } = f;
    await until("initial sync", () => mirror.inSync() === 2);
    faulty[0]!.mode = "error";
    await mirror.device.write(0, fill(1), false);
    await until("leg0 out", () => mirror.legs()[0]!.state === "out");
    faulty[0]!.mode = "healthy";
    // The bookkeeping breaks as leg0's judgment lands (staged: a real break is a bug).
    MirrorCore.prototype.dispatch = function (this: MirrorCore, leg, event, epoch) {
      if (event.t === "judged") throw new InvariantError(`${leg.name}: staged break`);
      return dispatch.call(this, leg, event, epoch);
    };
    mirror.legReachable("leg0");
    await until(
      "the mirror stopped",
      () => logger.entries.some((e) => /invariant broke/.test(e.message)),
    );
    const entry = logger.entries.find((e) => /invariant broke/.test(e.message))!;
    assert.match(JSON.stringify(entry.fields), /leg0: staged break/);
    await assert.rejects(mirror.device.read(0, 4096));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(unhandled, []);
  } finally {
    MirrorCore.prototype.dispatch = dispatch;
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
    await f.close();
  }
});
