/** Tests of the local runtime: tell/ask, bounded mailboxes, ordering, watches, children, stop. */
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { pack, unpack } from "msgpackr";
import { ManualClock } from "../../util/clock.ts";
import { SeededRandom } from "../../util/random.ts";
import type { Down } from "./behavior.ts";
import { AskTimeoutError, DeadActorError, OverloadedError } from "./errors.ts";
import type { ActorRef } from "./ref.ts";
import { ActorSystem } from "./system.ts";

/** Lets every queued microtask and actor turn run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function manualSystem(extra: Partial<ConstructorParameters<typeof ActorSystem>[0]> = {}) {
  const clock = new ManualClock();
  const system = new ActorSystem({ node: "n1", clock, random: new SeededRandom(7), ...extra });
  return { clock, system };
}

/** A promise with its resolve exposed, to hold an actor busy. */
function gate() {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

type Echo = { text: string; replyTo: ActorRef<string> };

Deno.test("tell and ask round trip through a reply-to ref", async () => {
  const { system } = manualSystem();
  const seen: string[] = [];
  const echo = system.spawn<Echo>((ctx) => (m) => {
    seen.push(m.text);
    ctx.tell(m.replyTo, m.text.toUpperCase());
  }, { name: "echo" });
  assert.deepEqual(echo, { node: "n1", path: "echo", incarnation: echo.incarnation });
  const reply = await system.ask<Echo, string>(echo, (replyTo) => ({ text: "hi", replyTo }), 100);
  assert.equal(reply, "HI");
  const dropped: ActorRef<string> = { node: "n1", path: "$ask", incarnation: 1 };
  assert.equal(system.tell(echo, { text: "x", replyTo: dropped }), "accepted");
  await settle();
  assert.deepEqual(seen, ["hi", "x"]);
  assert.equal(system.stats.lateReplies, 1);
  await system.shutdown();
});

Deno.test("a ref survives msgpack and still addresses the actor", async () => {
  const { system } = manualSystem();
  const echo = system.spawn<Echo>((ctx) => (m) => void ctx.tell(m.replyTo, m.text), {
    name: "echo",
  });
  const decoded = unpack(pack(echo)) as ActorRef<Echo>;
  assert.equal(await system.ask(decoded, (replyTo) => ({ text: "ok", replyTo }), 100), "ok");
  await system.shutdown();
});

Deno.test("an actor handles one message at a time, in order", async () => {
  const { system } = manualSystem();
  let running = 0;
  let maxRunning = 0;
  const order: number[] = [];
  const gates = [gate(), gate(), gate()];
  const worker = system.spawn<number>(() => async (n) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    await gates[n]!.promise;
    order.push(n);
    running--;
  });
  for (const n of [0, 1, 2]) assert.equal(system.tell(worker, n), "accepted");
  await settle();
  assert.equal(running, 1);
  gates[2]!.open();
  gates[1]!.open();
  await settle();
  assert.deepEqual(order, []);
  gates[0]!.open();
  await settle();
  assert.deepEqual(order, [0, 1, 2]);
  assert.equal(maxRunning, 1);
  await system.shutdown();
});

Deno.test("concurrency lets up to n async messages run at once, never more", async () => {
  const { system } = manualSystem();
  let running = 0;
  let maxRunning = 0;
  const hold = gate();
  const worker = system.spawn<number>(() => async () => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    await hold.promise;
    running--;
  }, { concurrency: 3 });
  for (let i = 0; i < 10; i++) system.tell(worker, i);
  await settle();
  assert.equal(running, 3);
  hold.open();
  for (let i = 0; i < 10 && running > 0; i++) await settle();
  assert.equal(maxRunning, 3);
  assert.equal(running, 0);
  await system.shutdown();
});

Deno.test("a full mailbox answers overload: tell says so, ask rejects at once", async () => {
  const { system } = manualSystem();
  const hold = gate();
  const busy = system.spawn<Echo>(() => () => hold.promise, { capacity: 2 });
  const noReply: ActorRef<string> = { node: "n1", path: "$ask", incarnation: 0 };
  assert.equal(system.tell(busy, { text: "1", replyTo: noReply }), "accepted");
  await settle(); // message 1 is now being handled; the mailbox is empty again
  assert.equal(system.tell(busy, { text: "2", replyTo: noReply }), "accepted");
  assert.equal(system.tell(busy, { text: "3", replyTo: noReply }), "accepted");
  assert.equal(system.tell(busy, { text: "4", replyTo: noReply }), "overloaded");
  await assert.rejects(
    system.ask<Echo, string>(busy, (replyTo) => ({ text: "5", replyTo }), 1000),
    OverloadedError,
  );
  assert.equal(system.stats.overloaded, 2);
  hold.open();
  await system.shutdown();
});

Deno.test("ask times out on the injected clock; the late reply is dropped and counted", async () => {
  const { clock, system } = manualSystem();
  const held: Echo[] = [];
  const slow = system.spawn<Echo>(() => (m) => void held.push(m));
  const answer = system.ask<Echo, string>(slow, (replyTo) => ({ text: "q", replyTo }), 50);
  let settled: unknown;
  answer.then((v) => (settled = v), (e) => (settled = e));
  const outcome = () => settled;
  await settle();
  clock.advance(49);
  await settle();
  assert.equal(outcome(), undefined);
  clock.advance(1);
  await settle();
  const error = outcome();
  assert.ok(error instanceof AskTimeoutError);
  assert.equal(error.deadlineMs, 50);
  assert.equal(system.tell(held[0]!.replyTo, "too late"), "dead");
  assert.equal(system.stats.lateReplies, 1);
  assert.equal(clock.pending, 0);
  await system.shutdown();
});

Deno.test("ask rejects a missing or bad deadline and a dead target", async () => {
  const { system } = manualSystem();
  const ghost: ActorRef<Echo> = { node: "n1", path: "nobody", incarnation: 1 };
  await assert.rejects(system.ask(ghost, (replyTo) => ({ text: "", replyTo }), 0), RangeError);
  await assert.rejects(
    system.ask(ghost, (replyTo) => ({ text: "", replyTo }), Infinity),
    RangeError,
  );
  await assert.rejects(system.ask(ghost, (replyTo) => ({ text: "", replyTo }), 10), DeadActorError);
  await system.shutdown();
});

Deno.test("a deferred reply leaves the mailbox free for the next message", async () => {
  const { system } = manualSystem();
  const disk = gate();
  type Req = { key: string; replyTo: ActorRef<string> };
  const store = system.spawn<Req>((ctx) => (m) => {
    if (m.key === "slow") ctx.defer(disk.promise.then(() => ctx.tell(m.replyTo, "slow done")));
    else ctx.tell(m.replyTo, `${m.key} done`);
  });
  const slow = system.ask<Req, string>(store, (replyTo) => ({ key: "slow", replyTo }), 1000);
  const fast = await system.ask<Req, string>(store, (replyTo) => ({ key: "fast", replyTo }), 1000);
  assert.equal(fast, "fast done");
  disk.open();
  assert.equal(await slow, "slow done");
  await system.shutdown();
});

Deno.test("a rejected deferred reply crashes the actor and its watchers see why", async () => {
  const { system } = manualSystem();
  const failing = system.spawn<string>((ctx) => () => {
    ctx.defer(Promise.reject(new Error("disk on fire")));
  });
  const down = system.terminated(failing);
  system.tell(failing, "go");
  const d = await down;
  assert.equal(d.reason, "crash");
  assert.match(String(d.error), /disk on fire/);
});

Deno.test("stop is a system message: it runs before queued user messages", async () => {
  const { system } = manualSystem();
  const handled: number[] = [];
  const worker = system.spawn<number>(() => (n) => void handled.push(n));
  for (let i = 0; i < 5; i++) system.tell(worker, i);
  assert.equal(system.stop(worker), "accepted");
  const down = await system.terminated(worker);
  assert.equal(down.reason, "normal");
  assert.deepEqual(handled, []);
  assert.equal(system.stats.deadLetters, 5);
  assert.equal(system.tell(worker, 9), "dead");
});

Deno.test("the mailbox yields to the event loop after its throughput budget", async () => {
  const yields: (() => void)[] = [];
  const { system } = manualSystem({ throughput: 3, yieldToHost: (fn) => void yields.push(fn) });
  const handled: number[] = [];
  const worker = system.spawn<number>(() => (n) => void handled.push(n));
  for (let i = 0; i < 7; i++) system.tell(worker, i);
  await settle();
  assert.deepEqual(handled, [0, 1, 2]);
  assert.equal(yields.length, 1);
  yields.shift()!();
  assert.deepEqual(handled, [0, 1, 2, 3, 4, 5]);
  yields.shift()!();
  assert.equal(handled.length, 7);
  assert.equal(yields.length, 0);
  await system.shutdown();
});

Deno.test("watchers get down signals with the reason: crash, normal, noproc", async () => {
  const { system } = manualSystem();
  type Msg = { t: "boom" } | { t: "down"; down: Down };
  const downs: Down[] = [];
  const crasher = system.spawn<string>(() => () => {
    throw new Error("bad input");
  }, { name: "crasher" });
  const quitter = system.spawn<string>((ctx) => () => ctx.stop(), { name: "quitter" });
  const ghost: ActorRef<string> = { node: "n1", path: "ghost", incarnation: 3 };
  const watcher = system.spawn<Msg>((ctx) => {
    for (const ref of [crasher, quitter, ghost]) ctx.watch(ref, (down) => ({ t: "down", down }));
    return (m) => void (m.t === "down" && downs.push(m.down));
  }, { name: "watcher" });
  system.tell(crasher, "x");
  system.tell(quitter, "x");
  for (let i = 0; i < 5 && downs.length < 3; i++) await settle();
  const byPath = new Map(downs.map((d) => [d.ref.path, d]));
  assert.equal(byPath.get("crasher")?.reason, "crash");
  assert.match(String(byPath.get("crasher")?.error), /bad input/);
  assert.equal(byPath.get("quitter")?.reason, "normal");
  assert.equal(byPath.get("ghost")?.reason, "noproc");
  assert.equal(system.resolve("watcher")?.incarnation, watcher.incarnation);
  await system.shutdown();
});

Deno.test("a stale incarnation does not reach the actor now spawned at the same path", async () => {
  const { system } = manualSystem();
  const first = system.spawn<number>(() => () => {}, { name: "node" });
  system.stop(first);
  await system.terminated(first);
  const second = system.spawn<number>(() => () => {}, { name: "node" });
  assert.notEqual(first.incarnation, second.incarnation);
  assert.equal(system.tell(first, 1), "dead");
  assert.equal(system.tell(second, 1), "accepted");
  assert.throws(() => system.spawn<number>(() => () => {}, { name: "node" }), /already runs/);
  await system.shutdown();
});

Deno.test("stopping a parent stops its children in reverse order; a slow stop is killed", async () => {
  const { clock, system } = manualSystem();
  const stopped: string[] = [];
  const never = new Promise<void>(() => {});
  const parent = system.spawn<string>((ctx) => {
    for (const name of ["a", "b", "c"]) {
      ctx.spawn<string>(() => ({
        receive() {},
        stopped: () => {
          stopped.push(name);
          return name === "b" ? never : undefined;
        },
      }), { name, shutdownMs: 100 });
    }
    return { receive() {}, stopped: () => void stopped.push("parent") };
  }, { name: "p" });
  const b = system.resolve<string>("p/b")!;
  const bDown = system.terminated(b);
  const pDown = system.terminated(parent);
  system.stop(parent);
  await settle();
  assert.deepEqual(stopped, ["c", "b"]); // b hangs in cleanup
  clock.advance(100);
  assert.equal((await bDown).reason, "killed");
  assert.equal((await pDown).reason, "normal");
  assert.deepEqual(stopped, ["c", "b", "a", "parent"]);
  assert.equal(system.size, 0);
});
