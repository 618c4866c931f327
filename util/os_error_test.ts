/** OS errors get the action and target said, keep their class and code; others pass through. */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { osError, withOsContext } from "./os_error.ts";

Deno.test("os error: a busy port is named, the error keeps its Deno class", () => {
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (held.addr as Deno.NetAddr).port;
  try {
    const error = (() => {
      try {
        Deno.listen({ hostname: "127.0.0.1", port });
      } catch (e) {
        return osError("listen on", `tcp://127.0.0.1:${port}`, e);
      }
      assert.fail("the port was free");
    })() as Error & { code: string };
    assert.ok(error instanceof Deno.errors.AddrInUse);
    assert.equal(error.code, "EADDRINUSE");
    assert.match(
      error.message,
      new RegExp(`^cannot listen on tcp://127.0.0.1:${port}: address already in use`),
    );
    assert.doesNotMatch(error.message, /os error/);
  } finally {
    held.close();
  }
});

Deno.test("os error: a missing folder is named for Deno's and node:fs's errors alike", async () => {
  await assert.rejects(
    withOsContext("open", "/nonexistent-dst/a.img", () => Deno.open("/nonexistent-dst/a.img")),
    (e: Error) =>
      e instanceof Deno.errors.NotFound &&
      e.message ===
        "cannot open /nonexistent-dst/a.img: no such file or directory (is the folder there?)",
  );
  await assert.rejects(
    withOsContext(
      "create",
      "/nonexistent-dst/b.img",
      () => fs.openSync("/nonexistent-dst/b.img", fs.constants.O_CREAT | fs.constants.O_RDWR),
    ),
    /^Error: cannot create \/nonexistent-dst\/b.img: no such file or directory/,
  );
});

Deno.test("os error: a socket nobody listens on says so, not that a folder is missing", async () => {
  await assert.rejects(
    withOsContext(
      "connect to",
      "unix:///nonexistent-dst/n.sock",
      () => Deno.connect({ transport: "unix", path: "/nonexistent-dst/n.sock" }),
    ),
    /cannot connect to unix:\/\/\/nonexistent-dst\/n.sock: nothing there/,
  );
});

Deno.test("os error: errors that are not the OS's, or were wrapped already, pass unchanged", () => {
  const plain = new RangeError("bad size");
  assert.equal(osError("open", "/x", plain), plain);
  const once = osError("open", "/x", new Deno.errors.NotFound("No such file (os error 2)"));
  assert.equal(osError("open", "/y", once), once);
});
