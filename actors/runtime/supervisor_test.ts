/**
 * Supervision tests driven purely by ManualClock and SeededRandom: backoff timing, restart
 * intensity, strategies, restart types and ordered shutdown.
 */
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { ManualClock } from "../../util/clock.ts";
import { SeededRandom } from "../../util/random.ts";
import type { Actor, Down } from "./behavior.ts";
import { ActorSystem } from "./system.ts";
import {
  type ChildSpec,
  type ChildStatus,
  type Strategy,
  supervisor,
  SupervisorGaveUpError,
  type SupervisorMessage,
} from "./supervisor.ts";

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function setup(seed = 1) {
  const clock = new ManualClock();
  const system = new ActorSystem({ node: "n1", clock, random: new SeededRandom(seed) });
  /** Moves time 1 ms at a time, letting actors run, until `done()` or `limitMs` passes. */
  async function runUntil(done: () => boolean, limitMs = 10_000): Promise<void> {
    await settle();
    for (let t = 0; t < limitMs && !done(); t++) {
      clock.advance(1);
      await settle();
    }
    assert.ok(done(), `condition not met within ${limitMs} ms of simulated time`);
  }
  return { clock, system, runUntil };
}

/** Crash-loop: returns the simulated times at which the child started, and the final downs. */
async function crashLoop(seed: number) {
  const { clock, system, runUntil } = setup(seed);
  const starts: number[] = [];
  const sup = system.spawn(
    supervisor({
      intensity: 3,
      periodMs: 10_000,
      backoff: { initialMs: 100, maxMs: 1000, jitter: 0.2 },
      children: [{
        id: "w",
        behavior: () => {
          starts.push(clock.now());
          return () => {
            throw new Error("boom");
          };
        },
      }],
    }),
    { name: "sup" },
  );
  const worker = system.resolve<string>("sup/w")!;
  const downs: Down[] = [];
  system.watch(sup, (d) => downs.push(d));
  system.watch(worker, (d) => downs.push(d));
  // Four crashes queued at once: each restart takes the next one from the kept mailbox.
  for (let i = 0; i < 4; i++) assert.equal(system.tell(worker, "crash"), "accepted");
  await runUntil(() => downs.length === 2);
  return { starts, downs };
}

Deno.test("backoff grows exponentially with jitter, and intensity makes the supervisor give up", async () => {
  const { starts, downs } = await crashLoop(42);
  assert.equal(starts.length, 4, `started at ${starts}`);
  assert.equal(starts[0], 0);
  const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
  for (const [i, gap] of gaps.entries()) {
    const base = 100 * 2 ** i;
    assert.ok(gap >= base * 0.8 && gap <= base * 1.2, `gap ${i} = ${gap} ms, expected ~${base}`);
  }
  const [workerDown, supDown] = downs;
  assert.equal(workerDown?.reason, "shutdown");
  assert.equal(supDown?.reason, "crash");
  assert.ok(supDown?.error instanceof SupervisorGaveUpError);
  // Same seed, same schedule: the run replays exactly.
  assert.deepEqual((await crashLoop(42)).starts, starts);
});

Deno.test("restarts older than the period are forgotten: no give-up, backoff starts over", async () => {
  const { clock, system, runUntil } = setup();
  const starts: number[] = [];
  system.spawn(
    supervisor({
      intensity: 1,
      periodMs: 1000,
      backoff: { initialMs: 50, jitter: 0 },
      children: [{
        id: "w",
        behavior: () => {
          starts.push(clock.now());
          return () => {
            throw new Error("boom");
          };
        },
      }],
    }),
    { name: "sup" },
  );
  const worker = system.resolve<string>("sup/w")!;
  system.tell(worker, "crash");
  await runUntil(() => starts.length === 2);
  clock.advance(2000);
  system.tell(worker, "crash");
  await runUntil(() => starts.length === 3);
  assert.deepEqual(starts, [0, 50, 2100]);
  await system.shutdown();
});

/** Three children a, b, c that count their instances and log their stops. */
function trio(log: string[], instances: Record<string, number>): ChildSpec[] {
  return ["a", "b", "c"].map((id) => ({
    id,
    behavior: (): Actor<string> => {
      instances[id] = (instances[id] ?? 0) + 1;
      return {
        receive: (m) => {
          if (m === "crash") throw new Error(`${id} failed`);
        },
        stopped: (reason) => void log.push(`${id}:${reason}`),
      };
    },
  }));
}

const strategies: [Strategy, string[], Record<string, number>][] = [
  ["one_for_one", ["b:crash"], { a: 1, b: 2, c: 1 }],
  ["one_for_all", ["b:crash", "c:shutdown", "a:shutdown"], { a: 2, b: 2, c: 2 }],
  ["rest_for_one", ["b:crash", "c:shutdown"], { a: 1, b: 2, c: 2 }],
];

for (const [strategy, stops, counts] of strategies) {
  Deno.test(`${strategy}: a crash of b restarts the right children, keeping their refs`, async () => {
    const { system, runUntil } = setup();
    const log: string[] = [];
    const instances: Record<string, number> = {};
    const sup = system.spawn(
      supervisor({ strategy, backoff: { initialMs: 5 }, children: trio(log, instances) }),
      { name: "sup" },
    );
    const b = system.resolve<string>("sup/b")!;
    system.tell(b, "crash");
    await runUntil(() => instances.b === 2);
    await settle();
    assert.deepEqual(log, stops);
    assert.deepEqual(instances, counts);
    assert.equal(system.resolve<string>("sup/b")?.incarnation, b.incarnation);
    const children = await system.ask<SupervisorMessage, ChildStatus[]>(
      sup,
      (replyTo) => ({ t: "which_children", replyTo }),
      100,
    );
    assert.deepEqual(children.map((c) => [c.id, c.state]), [
      ["a", "running"],
      ["b", "running"],
      ["c", "running"],
    ]);
    await system.shutdown();
  });
}

Deno.test("restart types: permanent always, transient only on crash, temporary never", async () => {
  const { system, runUntil } = setup();
  const instances: Record<string, number> = {};
  const child = (id: string, restart: "permanent" | "transient" | "temporary"): ChildSpec => ({
    id,
    restart,
    behavior: (ctx) => {
      instances[id] = (instances[id] ?? 0) + 1;
      return (m: string) => {
        if (m === "crash") throw new Error("crash");
        if (m === "stop") ctx.stop();
      };
    },
  });
  system.spawn(
    supervisor({
      backoff: { initialMs: 5 },
      intensity: 10,
      children: [
        child("perm", "permanent"),
        child("trans", "transient"),
        child("trans2", "transient"),
        child("temp", "temporary"),
      ],
    }),
    { name: "sup" },
  );
  const ref = (id: string) => system.resolve<string>(`sup/${id}`)!;
  const [perm, trans, trans2, temp] = ["perm", "trans", "trans2", "temp"].map(ref);
  const downs = new Map<string, string>();
  for (const r of [perm!, trans!, trans2!, temp!]) {
    system.watch(r, (d) => downs.set(d.ref.path, d.reason));
  }
  system.tell(perm!, "stop");
  system.tell(trans!, "stop");
  system.tell(trans2!, "crash");
  system.tell(temp!, "crash");
  await runUntil(() => instances.perm === 2 && instances.trans2 === 2 && downs.size === 2);
  assert.deepEqual(Object.fromEntries(downs), { "sup/trans": "normal", "sup/temp": "crash" });
  assert.deepEqual(instances, { perm: 2, trans: 1, trans2: 2, temp: 1 });
  assert.equal(system.resolve("sup/trans"), undefined);
  await system.shutdown();
});

Deno.test("messages sent during the backoff wait in the mailbox and are answered after restart", async () => {
  const { clock, system } = setup();
  type Msg = { t: "crash" } | { t: "ping"; replyTo: import("./ref.ts").ActorRef<number> };
  let instance = 0;
  system.spawn(
    supervisor({
      backoff: { initialMs: 200, jitter: 0 },
      children: [{
        id: "w",
        behavior: (ctx) => {
          const me = ++instance;
          return (m: Msg) => {
            if (m.t === "crash") throw new Error("boom");
            ctx.tell(m.replyTo, me);
          };
        },
      }],
    }),
    { name: "sup" },
  );
  const worker = system.resolve<Msg>("sup/w")!;
  system.tell(worker, { t: "crash" });
  await settle();
  const answer = system.ask<Msg, number>(worker, (replyTo) => ({ t: "ping", replyTo }), 1000);
  clock.advance(199);
  await settle();
  assert.equal(instance, 1);
  clock.advance(1);
  assert.equal(await answer, 2);
  await system.shutdown();
});

Deno.test("a supervisor that gives up is restarted by its own supervisor, children fresh", async () => {
  const { system, runUntil } = setup();
  let starts = 0;
  const inner = supervisor({
    intensity: 0,
    children: [{
      id: "w",
      behavior: () => {
        starts++;
        return () => {
          throw new Error("boom");
        };
      },
    }],
  });
  system.spawn(
    supervisor({ backoff: { initialMs: 5 }, children: [{ id: "inner", behavior: inner }] }),
    { name: "outer" },
  );
  const first = system.resolve<string>("outer/inner/w")!;
  const firstDown = system.terminated(first);
  system.tell(first, "crash");
  await runUntil(() => starts === 2);
  assert.equal((await firstDown).reason, "shutdown");
  const second = system.resolve<string>("outer/inner/w");
  assert.ok(second !== undefined && second.incarnation !== first.incarnation);
  await system.shutdown();
});

Deno.test("stopping a supervisor shuts children down in reverse order within their timeouts", async () => {
  const { clock, system } = setup();
  const log: string[] = [];
  const child = (id: string, hang: boolean): ChildSpec => ({
    id,
    shutdownMs: 30,
    behavior: () => ({
      receive() {},
      stopped: () => {
        log.push(id);
        return hang ? new Promise<void>(() => {}) : undefined;
      },
    }),
  });
  const sup = system.spawn(
    supervisor({ children: [child("a", false), child("b", true), child("c", false)] }),
    { name: "sup" },
  );
  const bDown = system.terminated(system.resolve("sup/b")!);
  const supDown = system.terminated(sup);
  system.stop(sup);
  await settle();
  assert.deepEqual(log, ["c", "b"]);
  clock.advance(30);
  assert.equal((await bDown).reason, "killed");
  assert.equal((await supDown).reason, "normal");
  assert.deepEqual(log, ["c", "b", "a"]);
  assert.equal(system.size, 0);
});
