/**
 * The mirror as an actor: its mailbox is the one way in for everything that can change its
 * legs (link up and down, resync reports, control actions, the sweep's tick), and client block
 * requests arrive there too (served concurrently, each under the shared guard). Its children
 * are the resync actors, one supervisor each, restarted with backoff when they crash. A broken
 * invariant crashes the mirror: it stops serving, stamps nothing more, and says why.
 */
import type { Behavior, Down } from "../runtime/behavior.ts";
import { BlockClient, type BlockMessage, failure, serve } from "../block/actor.ts";
import type { BlockDevice, BlockInfo, MediaGenerations } from "../block/contract.ts";
import { guard } from "../block/guard.ts";
import type { ActorRef, AnyRef } from "../runtime/ref.ts";
import { supervisor } from "../runtime/supervisor.ts";
import type { ActorSystem } from "../runtime/system.ts";
import { type Clock, systemClock, type Timer } from "../../util/clock.ts";
import { coarseSystemClock } from "../../util/coarse_clock.ts";
import type { Logger } from "../../util/log.ts";
import { systemRandom } from "../../util/random.ts";
import { ControlRefused, MirrorCore, type MirrorOptions } from "./core.ts";
import { describe } from "./errors.ts";
import type { FenceRecord } from "./fencing.ts";
import { InvariantError } from "./invariants.ts";
import { act, type ActionDone, type MirrorAction } from "./maintenance.ts";
import { type ResyncReport, resyncWorker } from "./resync_actor.ts";
import { onResync, resyncPort } from "./resync_host.ts";
import { startMirror, StartRefused } from "./start.ts";
import type { LegStatus } from "./status.ts";
import { Sweeper } from "./sweeper.ts";
import type { VerifyReport } from "./verify.ts";

export type ActionReply =
  | ({ readonly ok: true } & ActionDone)
  | { readonly ok: false; readonly refused: boolean; readonly message: string };

export type MirrorMessage =
  | BlockMessage
  /** A leg's link went down (`up` false, with why) or came back. */
  | { readonly op: "link"; readonly leg: string; readonly up: boolean; readonly why?: string }
  | { readonly op: "resync"; readonly report: ResyncReport }
  | {
    readonly op: "resync-down";
    readonly leg: string;
    readonly epoch: number;
    readonly down: Down;
  }
  | { readonly op: "tick" }
  /** The exporter lost ownership of the storage (its lease, say): fence the mirror. */
  | { readonly op: "fence"; readonly why: string }
  | { readonly op: "start"; readonly replyTo: ActorRef<ActionReply> }
  | {
    readonly op: "control";
    readonly action: MirrorAction;
    readonly replyTo: ActorRef<ActionReply>;
  };

export interface MirrorActorOptions extends MirrorOptions {
  /** The actor's name (unique among top-level actors). */
  readonly name?: string;
  /** Client requests served at once; more wait in order (default 256). */
  readonly concurrency?: number;
  /** Default: the system's clock (its coarse variant for the real clock). */
  readonly clock?: Clock;
  /** Default: the system's logger. */
  readonly logger?: Logger;
}

/** A resync actor that keeps crashing is given up after this many restarts in RESYNC_PERIOD_MS. */
const RESYNC_RESTARTS = 3;
const RESYNC_PERIOD_MS = 60_000;
/** How long a control action may take (verify digests the whole device). */
const CONTROL_DEADLINE_MS = 24 * 3600_000;

const isBlockOp = (m: MirrorMessage): m is BlockMessage =>
  m.op === "info" || m.op === "read" || m.op === "write" || m.op === "flush" || m.op === "trim" ||
  m.op === "zero" || m.op === "extents" || m.op === "cache";

/** The mirror's behaviour; `core` receives the core it made (for read-only status). */
export function mirrorBehavior(
  devices: readonly BlockDevice[],
  options: MirrorActorOptions,
  made: (core: MirrorCore) => void,
): Behavior<MirrorMessage> {
  return (ctx) => {
    const clock = options.clock ?? (ctx.clock === systemClock ? coarseSystemClock : ctx.clock);
    const log = options.logger ?? ctx.log;
    // Ids come from the system's random only when it is seeded (a simulation): otherwise the
    // secure one.
    const random = ctx.random === systemRandom ? undefined : ctx.random;
    const core = new MirrorCore(devices, options, clock, log, random);
    made(core);
    const device = guard(core);
    const sweeper = new Sweeper(core);
    const concurrency = options.concurrency ?? 256;
    const waiting: BlockMessage[] = [];
    let inFlight = 0;
    let tick: Timer | undefined;
    let broken: InvariantError | undefined;

    /** Stops the mirror: it no longer knows which leg holds what. */
    const crash = (error: InvariantError): never => {
      broken ??= error;
      log.log("error", "mirror stopped: an invariant broke", { error: error.message });
      throw error;
    };
    const fatal = (error: unknown) => error instanceof InvariantError;
    // Background work (a judgment, a stamp) has no message to fail: the actor crashes with it.
    core.onBroken = (error) => {
      if (broken !== undefined) return;
      broken = error;
      log.log("error", "mirror stopped: an invariant broke", { error: error.message });
      ctx.defer(Promise.reject(error));
    };

    const startIo = (m: BlockMessage) => {
      inFlight++;
      ctx.defer(
        serve(device, m, fatal).then(
          (reply) => ctx.tell(m.replyTo, reply),
          (error) => {
            ctx.tell(m.replyTo, failure(error));
            crash(error as InvariantError);
          },
        ).finally(() => {
          inFlight--;
          const next = waiting.shift();
          if (next !== undefined) startIo(next);
        }),
      );
    };

    // ---- resync actors ----
    const running = new Map<string, { ref: AnyRef; epoch: number }>();
    let seq = 0;
    const port = resyncPort(core, clock);
    const stopResync = (leg: string) => {
      const r = running.get(leg);
      if (r === undefined) return;
      running.delete(leg);
      ctx.unwatch(r.ref);
      ctx.system.stop(r.ref);
    };
    core.resyncs = {
      start: (leg, epoch) => {
        stopResync(leg);
        const ref = ctx.spawn(
          supervisor({
            strategy: "one_for_one",
            intensity: RESYNC_RESTARTS,
            periodMs: RESYNC_PERIOD_MS,
            backoff: { initialMs: 200, maxMs: 5000 },
            children: [{
              id: "copy",
              restart: "transient",
              behavior: resyncWorker({ port, mirror: ctx.self, leg, epoch }),
            }],
          }),
          { name: `resync-${++seq}` },
        );
        ctx.watch(ref, (down) => ({ op: "resync-down", leg, epoch, down }));
        running.set(leg, { ref, epoch });
      },
      stop: stopResync,
    };

    const arm = () => {
      tick = clock.setTimeout(() => ctx.tell(ctx.self, { op: "tick" }), sweeper.periodMs);
    };

    const receive = (m: MirrorMessage): void => {
      if (broken !== undefined) throw broken;
      if (isBlockOp(m)) {
        if (inFlight < concurrency) startIo(m);
        else waiting.push(m);
        return;
      }
      switch (m.op) {
        case "link": {
          const leg = core.legs.find((l) => l.name === m.leg);
          if (leg === undefined) return;
          if (m.up) core.dispatch(leg, { t: "reachable" });
          else core.fail(leg, leg.epoch, m.why ?? "link to the node lost");
          return;
        }
        case "resync":
          onResync(core, m.report);
          return;
        case "resync-down": {
          const r = running.get(m.leg);
          if (r?.epoch === m.epoch) running.delete(m.leg);
          const leg = core.legs.find((l) => l.name === m.leg);
          if (leg !== undefined && m.down.reason === "crash") {
            core.dispatch(leg, {
              t: "resync-failed",
              why: `its resync crashed too often: ${describe(m.down.error)}`,
            }, m.epoch);
          }
          return;
        }
        case "tick":
          if (core.fenced === undefined) sweeper.sweep();
          arm();
          return;
        case "fence":
          core.fence(m.why);
          return;
        case "start":
          ctx.defer(
            startMirror(core).then(
              () => {
                arm();
                ctx.tell(m.replyTo, { ok: true, message: "started" });
              },
              (error) => {
                if (error instanceof InvariantError) crash(error);
                ctx.tell(m.replyTo, { ok: false, refused: true, message: describe(error) });
              },
            ),
          );
          return;
        case "control":
          ctx.defer(
            act(core, m.action).then(
              (done) => ctx.tell(m.replyTo, { ok: true, ...done }),
              (error) => {
                if (error instanceof InvariantError) crash(error);
                ctx.tell(m.replyTo, {
                  ok: false,
                  refused: error instanceof ControlRefused,
                  message: describe(error),
                });
              },
            ),
          );
          return;
      }
    };

    return {
      receive: (m) => {
        try {
          receive(m);
        } catch (error) {
          if (error instanceof InvariantError) crash(error);
          throw error;
        }
      },
      stopped: async () => {
        tick?.cancel();
        for (const leg of [...running.keys()]) stopResync(leg);
        await core.close(broken !== undefined);
      },
    };
  };
}

/** A running mirror as its users hold it: its actor, a block client, status and control. */
export interface Mirror {
  readonly ref: ActorRef<MirrorMessage>;
  /** The mirror as a block device (a client of its actor). */
  readonly device: BlockDevice;
  readonly chunkSize: number;
  info(): BlockInfo;
  legs(): LegStatus[];
  inSync(): number;
  hasLeg(name: string): boolean;
  storageId(): string | undefined;
  generations(): MediaGenerations | undefined;
  lastVerify(): VerifyReport | undefined;
  /** Why and when the mirror was fenced, once it is. */
  fenced(): FenceRecord | undefined;
  /** The exporter lost ownership: the mirror acknowledges nothing more (through its mailbox). */
  fence(why: string): void;
  /** A leg's link went down or came back (from its proxy). */
  legLost(name: string, why: string): void;
  legReachable(name: string): void;
  /** Carries out an administrator's action; rejects with ControlRefused when it cannot. */
  act(action: MirrorAction): Promise<ActionDone>;
  /** Stops the mirror (and closes its legs). */
  close(): Promise<void>;
}

/** Spawns a mirror over `devices`, judges its legs, and resolves once it serves. */
export async function spawnMirror(
  system: ActorSystem,
  devices: readonly BlockDevice[],
  options: MirrorActorOptions = {},
): Promise<Mirror> {
  let core!: MirrorCore;
  const ref = system.spawn(mirrorBehavior(devices, options, (c) => (core = c)), {
    ...(options.name === undefined ? {} : { name: options.name }),
    capacity: 65536,
    throughput: 256,
  });
  const ask = async (build: (replyTo: ActorRef<ActionReply>) => MirrorMessage, ms: number) => {
    const reply = await system.ask<MirrorMessage, ActionReply>(ref, build, ms);
    if (!reply.ok) {
      throw reply.refused ? new ControlRefused(reply.message) : new Error(reply.message);
    }
    return reply;
  };
  try {
    await ask((replyTo) => ({ op: "start", replyTo }), CONTROL_DEADLINE_MS);
  } catch (error) {
    system.stop(ref);
    await system.terminated(ref);
    throw error instanceof ControlRefused ? new StartRefused(error.message) : error;
  }
  const client = await BlockClient.connect(system, ref);
  return {
    ref,
    device: client,
    chunkSize: core.chunkSize,
    info: () => core.info(),
    legs: () => core.legs.map((l) => core.status(l)),
    inSync: () => core.inSyncCount(),
    hasLeg: (name) => core.legs.some((l) => l.name === name),
    storageId: () => core.gen.storageId,
    generations: () => core.gen.current,
    lastVerify: () => core.lastVerify,
    fenced: () => core.fenced,
    fence: (why) => void system.tell(ref, { op: "fence", why }),
    legLost: (leg, why) => void system.tell(ref, { op: "link", leg, up: false, why }),
    legReachable: (leg) => void system.tell(ref, { op: "link", leg, up: true }),
    act: async (action) => {
      const { ok: _, ...done } = await ask(
        (replyTo) => ({ op: "control", action, replyTo }),
        CONTROL_DEADLINE_MS,
      ) as { ok: true } & ActionDone;
      return done;
    },
    close: () => client.close(),
  };
}
