/** Unit tests of the bounded mailbox: ring order, refusal when full, system messages first. */
import assert from "node:assert/strict";
import { Mailbox, Ring } from "./mailbox.ts";

Deno.test("ring keeps FIFO order across wrap-around and refuses when full", () => {
  const ring = new Ring<number>(3);
  assert.ok(ring.push(1) && ring.push(2) && ring.push(3));
  assert.equal(ring.push(4), false);
  assert.equal(ring.shift(), 1);
  assert.ok(ring.push(4));
  assert.deepEqual([ring.shift(), ring.shift(), ring.shift(), ring.shift()], [2, 3, 4, undefined]);
  assert.equal(ring.size, 0);
});

Deno.test("ring clear reports dropped count and resets", () => {
  const ring = new Ring<string>(2);
  ring.push("a");
  ring.push("b");
  assert.equal(ring.clear(), 2);
  assert.ok(ring.push("c"));
  assert.equal(ring.shift(), "c");
});

Deno.test("ring rejects a non-positive capacity", () => {
  assert.throws(() => new Ring(0), RangeError);
});

Deno.test("mailbox gives system messages before user messages", () => {
  const box = new Mailbox<string, string>(2);
  assert.ok(box.post("u1"));
  assert.ok(box.post("u2"));
  assert.equal(box.post("u3"), false);
  box.postSystem("s1");
  box.postSystem("s2");
  assert.ok(box.hasSystem);
  assert.equal(box.takeSystem(), "s1");
  assert.equal(box.takeSystem(), "s2");
  assert.equal(box.takeSystem(), undefined);
  assert.equal(box.takeUser(), "u1");
  box.postSystem("s3");
  assert.equal(box.takeSystem(), "s3");
  assert.equal(box.takeUser(), "u2");
  assert.equal(box.hasUser, false);
});
