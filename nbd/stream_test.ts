/**
 * The writer gives a segment back only once its bytes are written, counts what is queued, and
 * lets go of everything when writing fails; the budget lets an oversized request through alone.
 */
import assert from "node:assert/strict";
import { Budget } from "./budget.ts";
import { type ByteStream, StreamReader, StreamWriter } from "./stream.ts";

/** A stream whose writes wait until the test lets them through, like a client not reading. */
class GatedStream implements ByteStream {
  written = 0;
  #gates: { data: Uint8Array; resolve: (n: number) => void; reject: (e: Error) => void }[] = [];

  read(): Promise<number | null> {
    return Promise.resolve(null);
  }

  write(data: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => this.#gates.push({ data, resolve, reject }));
  }

  /** Lets the oldest waiting write through, whole. */
  async pass(): Promise<void> {
    for (let i = 0; i < 10 && this.#gates.length === 0; i++) await tick();
    const gate = this.#gates.shift();
    assert.ok(gate, "no write was waiting");
    this.written += gate.data.length;
    gate.resolve(gate.data.length);
    await tick();
  }

  close(): void {
    for (const gate of this.#gates.splice(0)) gate.reject(new Error("closed"));
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("writer: releases run when bytes are written, not when they are queued", async () => {
  const stream = new GatedStream();
  const writer = new StreamWriter(stream);
  const released: string[] = [];
  writer.send(new Uint8Array(100), () => released.push("a"));
  writer.send(new Uint8Array(200), () => released.push("b")); // batched behind "a"
  writer.send(new Uint8Array(300), () => released.push("c")); // batched with "b"
  writer.send(new Uint8Array(128 * 1024), () => released.push("big"));
  await tick();
  assert.equal(writer.queued, 100 + 200 + 300 + 128 * 1024);
  assert.ok(writer.writing);
  assert.deepEqual(released, [], "nothing is released while the client reads nothing");
  const progress = writer.progress;
  await stream.pass();
  assert.deepEqual(released, ["a"]);
  assert.equal(writer.progress, progress + 1);
  await stream.pass();
  assert.deepEqual(released, ["a", "b", "c"], "a batch is released once the batch is written");
  assert.equal(writer.queued, 128 * 1024);
  await stream.pass();
  assert.deepEqual(released, ["a", "b", "c", "big"]);
  assert.equal(writer.queued, 0);
  assert.equal(writer.writing, false);
  await writer.drained();
});

Deno.test("writer: a failed write releases everything queued, and later sends at once", async () => {
  const stream = new GatedStream();
  const writer = new StreamWriter(stream);
  let released = 0;
  for (let i = 0; i < 5; i++) writer.send(new Uint8Array(1000), () => released++);
  await tick();
  stream.close();
  await writer.drained();
  assert.equal(released, 5);
  assert.equal(writer.queued, 0);
  assert.ok(writer.failed);
  writer.send(new Uint8Array(10), () => released++);
  assert.equal(released, 6);
});

Deno.test("budget: counts and bytes bound what is taken; an oversized request goes alone", async () => {
  const budget = new Budget(2, 100);
  assert.ok(budget.fits(500), "nothing held: even an oversized request fits");
  budget.take(500);
  assert.equal(budget.fits(0), false, "while it runs, nothing else does");
  const changed = budget.changed();
  budget.give(500);
  await changed;
  budget.take(60);
  assert.ok(budget.fits(40));
  assert.equal(budget.fits(41), false);
  budget.take(0);
  assert.equal(budget.fits(0), false, "the count is spent");
  budget.give(0);
  budget.give(60);
  assert.throws(() => budget.give(0), /more than was taken/);
});

/** A stream that hands out `data` in reads of at most what the reader asks for. */
function streamOf(data: Uint8Array): ByteStream & { reads: number[] } {
  let at = 0;
  const reads: number[] = [];
  return {
    reads,
    read(into: Uint8Array) {
      if (at >= data.length) return Promise.resolve(null);
      const n = Math.min(into.length, data.length - at);
      into.set(data.subarray(at, at + n));
      at += n;
      reads.push(into.length);
      return Promise.resolve(n);
    },
    write: (d: Uint8Array) => Promise.resolve(d.length),
    close() {},
  };
}

Deno.test("reader: starts small, grows while the client keeps it full, takes more than it holds", async () => {
  const data = new Uint8Array(600 * 1024).map((_, i) => i & 0xff);
  const stream = streamOf(data);
  const reader = new StreamReader(stream, 256 * 1024);
  const first = await reader.take(28);
  assert.deepEqual(first, data.subarray(0, 28));
  assert.equal(stream.reads[0], 16 * 1024, "an idle connection holds a small buffer");
  const option = await reader.take(64 * 1024); // larger than the buffer so far
  assert.deepEqual(option, data.subarray(28, 28 + 64 * 1024));
  let at = 28 + 64 * 1024;
  while (at + 4096 <= data.length) {
    const piece = await reader.take(4096);
    assert.deepEqual(piece, data.subarray(at, at + 4096));
    at += 4096;
  }
  assert.ok(Math.max(...stream.reads) <= 256 * 1024);
  assert.equal(Math.max(...stream.reads), 256 * 1024, "a busy connection reads in large pieces");
});

Deno.test("writer: replies bigger than the batch go out whole, in order", async () => {
  const out: number[] = [];
  const stream: ByteStream = {
    read: () => Promise.resolve(null),
    write(d: Uint8Array) {
      out.push(...d);
      return Promise.resolve(d.length);
    },
    close() {},
  };
  const writer = new StreamWriter(stream, 1024);
  const sent: number[] = [];
  for (let i = 0; i < 20; i++) {
    const piece = new Uint8Array(100 + i * 97).fill(i);
    sent.push(...piece);
    writer.send(piece);
  }
  await writer.drained();
  assert.deepEqual(out, sent);
});
