/**
 * An exporter process: assembles a storage tree from the real parts as `dst serve` does
 * (storage/assemble.ts): remote node proxies for leaves and child storages (failing at once when
 * they are mirror legs), each leaf and mapping hosted as an actor behind the guard, linears,
 * mirrors told when a leg's link drops or comes back; a child storage also serves its tree as a
 * node. Every mirror leg sits behind a tap, so the checker sees what each leg returns. It starts
 * from its legs' media after a crash, and a start that fails is a crash too.
 */
import { BlockClient, spawnBlockActor } from "../actors/block/actor.ts";
import type {
  BlockDevice,
  BlockInfo,
  Extent,
  MediaDevice,
  ZeroOptions,
} from "../actors/block/contract.ts";
import { guard } from "../actors/block/guard.ts";
import { LinearMapping } from "../actors/linear/linear.ts";
import { type Mirror, type MirrorAction, spawnMirror } from "../actors/mirror/mod.ts";
import { spawnParity } from "../actors/parity/mod.ts";
import type { LegStatus } from "../actors/mirror/status.ts";
import { RemoteNode, type RemoteState } from "../actors/node/proxy.ts";
import { type NodeServer, serveNode } from "../actors/node/server.ts";
import { ActorSystem } from "../actors/runtime/system.ts";
import type { Logger } from "../util/log.ts";
import type { SimHost } from "./host.ts";
import type { ProcessState } from "./node.ts";
import type { SimProcess } from "./process.ts";
import type { ExporterTuning } from "./profiles.ts";
import type { LeafSpec, MirrorSpec, Spec } from "./topology.ts";

/** What the simulation watches in an exporter. */
export interface ExporterObserver {
  /** A mirror leg moved (from the mirror's own report). */
  legMoved(mirror: string, status: LegStatus): void;
  /** A read of a mirror leg begins; the returned function judges what it returned. */
  legRead(
    mirror: string,
    leg: string,
    offset: number,
    length: number,
  ): ((data: Uint8Array | undefined) => void) | undefined;
  /** The exporter went down: its mirrors' view of their legs is gone. */
  down(mirrors: readonly string[]): void;
}

/** A running mirror, with its legs' devices as the mirror reaches them (untapped). */
export interface RunningMirror {
  readonly mirror: Mirror;
  readonly spec: MirrorSpec;
  readonly legs: Map<string, BlockDevice>;
}

interface Built {
  readonly device: BlockDevice;
  readonly media?: MediaDevice;
}

export class Exporter {
  state: ProcessState = "down";
  incarnation = 0;
  /** The storage as a block device (what the NBD export serves), while up. */
  device: BlockDevice | undefined;
  readonly mirrors = new Map<string, RunningMirror>();
  #proc: SimProcess | undefined;
  #system: ActorSystem | undefined;
  #server: NodeServer | undefined;
  /** Remote children tell their mirror when their link drops or comes back. */
  #hooks = new Map<string, (state: RemoteState) => void>();
  /** Changes its mirrors sent their legs and that did not settle yet (this incarnation's). */
  #changing = { n: 0 };

  constructor(
    readonly host: SimHost,
    /** The process's name: "root", or the storage's id. */
    readonly id: string,
    readonly spec: Spec,
    /** Serve the storage as a node (a child storage of another exporter). */
    readonly serves: boolean,
    readonly tuning: ExporterTuning,
    readonly observer: ExporterObserver,
  ) {}

  get alive(): boolean {
    return this.#proc?.alive ?? false;
  }

  /** Assembles and serves; false when it could not (the process is then dead). */
  async start(): Promise<boolean> {
    if (this.state !== "down") return false;
    const proc = this.host.process(this.id);
    this.#proc = proc;
    this.state = "starting";
    this.incarnation++;
    this.#changing = { n: 0 };
    this.#hooks = new Map();
    this.mirrors.clear();
    const logger = this.#watchful(proc);
    this.#system = new ActorSystem({
      node: this.id,
      clock: proc.clock,
      random: proc.random,
      log: logger,
      yieldToHost: this.host.driver.yielder(proc.clock),
    });
    try {
      const root = await this.#build(this.spec, undefined, proc, logger);
      if (!proc.alive) return false;
      if (this.serves) {
        this.#server = await serveNode(`mem://${this.id}`, root.device, {
          node: this.id,
          secret: this.host.secret,
          transports: [proc.transport],
          clock: proc.clock,
          logger,
          keepAliveMs: this.tuning.keepAliveMs,
          deadAfterMs: this.tuning.deadAfterMs,
        });
      }
      if (!proc.alive) return false;
      this.device = root.device;
      this.state = "up";
      this.host.trace.event(`${this.id} up`);
      return true;
    } catch (error) {
      if (proc.alive) {
        this.host.trace.event(`${this.id} start failed: ${(error as Error).message}`);
        this.crash();
      }
      return false;
    }
  }

  /** The process dies: everything it held is gone; its legs keep their media. */
  crash(): void {
    const mirrors = [...this.mirrors.keys()];
    this.#proc?.kill();
    this.#proc = undefined;
    this.#system = undefined;
    this.#server = undefined;
    this.device = undefined;
    this.mirrors.clear();
    this.state = "down";
    this.observer.down(mirrors);
  }

  /** An administrator's action on one of its mirrors; resolves with what the mirror said. */
  async act(mirrorId: string, action: MirrorAction): Promise<string> {
    const m = this.mirrors.get(mirrorId);
    if (m === undefined) throw new Error(`${mirrorId} is not running`);
    const done = await m.mirror.act(action);
    if (action.action === "remove-leg") {
      m.spec.legs = m.spec.legs.filter((l) => l.id !== action.leg);
      m.legs.delete(action.leg);
      this.#hooks.delete(action.leg);
    }
    return done.message;
  }

  /** Adds a leaf as a new leg of a running mirror (a full resync follows). */
  async addLeg(mirrorId: string, leaf: LeafSpec): Promise<string> {
    const m = this.mirrors.get(mirrorId);
    const proc = this.#proc;
    if (m === undefined || proc === undefined) throw new Error(`${mirrorId} is not running`);
    const built = await this.#remote(leaf, "mirror", proc, proc.logger);
    const tapped = this.#tap(m.spec.id, leaf.id, built.device);
    try {
      const done = await m.mirror.act({
        action: "add-leg",
        leg: leaf.id,
        device: tapped,
        media: built.media,
      });
      m.spec.legs.push(leaf);
      m.legs.set(leaf.id, built.device);
      this.#hooks.set(leaf.id, linkHook(m.mirror, leaf.id));
      return done.message;
    } catch (error) {
      await built.device.close().catch(() => {});
      throw error;
    }
  }

  /** Logs into the trace; a crashed actor or a broken invariant fails the seed. */
  #watchful(proc: SimProcess): Logger {
    return {
      log: (level, message, fields) => {
        proc.logger.log(level, message, fields);
        if (!proc.alive) return;
        if (message === "actor crashed" || message.startsWith("mirror stopped")) {
          this.host.fail(`${this.id}: ${message}: ${JSON.stringify(fields ?? {})}`);
        }
      },
    };
  }

  async #build(
    spec: Spec,
    parent: Spec["kind"] | undefined,
    proc: SimProcess,
    logger: Logger,
  ): Promise<Built> {
    const system = this.#system!;
    switch (spec.kind) {
      case "leaf":
      case "storage":
        return await this.#remote(spec, parent, proc, logger);
      case "linear": {
        const children: BlockDevice[] = [];
        for (const c of spec.children) {
          children.push((await this.#build(c, "linear", proc, logger)).device);
        }
        const ref = spawnBlockActor(system, guard(new LinearMapping(children)), {
          name: `storage.${spec.id}`,
        });
        return { device: await BlockClient.connect(system, ref) };
      }
      case "mirror": {
        const legs: Built[] = [];
        for (const l of spec.legs) legs.push(await this.#build(l, "mirror", proc, logger));
        const t = spec.tuning;
        const options = {
          name: `storage.${spec.id}`,
          names: spec.legs.map((l) => l.id),
          logger,
          media: legs.map((b) => b.media),
          legTimeoutMs: t.legTimeoutMs,
          chunkSize: t.chunkSize,
          probeMs: t.probeMs,
          activityIdleMs: t.activityIdleMs,
          pace: { parallel: t.parallel },
          onLegState: (status: LegStatus) => {
            if (proc.alive) this.observer.legMoved(spec.id, status);
          },
        };
        // A parity leg's bytes are not the storage's: its reads are judged through the
        // client's (reconstructed or not), not one by one.
        const mirror = spec.parity !== undefined
          ? await spawnParity(system, legs.map((b) => b.device), { ...options, unit: spec.parity })
          : await spawnMirror(
            system,
            legs.map((b, i) => this.#tap(spec.id, spec.legs[i]!.id, b.device)),
            { ...options, readPolicy: t.readPolicy },
          );
        if (!proc.alive) return { device: mirror.device };
        this.mirrors.set(spec.id, {
          mirror,
          spec,
          legs: new Map(spec.legs.map((l, i) => [l.id, legs[i]!.device])),
        });
        for (const l of spec.legs) {
          if (l.kind === "leaf" || l.kind === "storage") {
            this.#hooks.set(l.id, linkHook(mirror, l.id));
          }
        }
        return { device: mirror.device };
      }
    }
  }

  /** A proxy to a node (a leaf or a child storage), hosted as an actor as assembly does. */
  async #remote(
    spec: Spec,
    parent: Spec["kind"] | undefined,
    proc: SimProcess,
    logger: Logger,
  ): Promise<Built> {
    const t = this.tuning;
    const remote = await RemoteNode.connect(`mem://${spec.id}`, {
      node: this.id,
      secret: this.host.secret,
      transports: [proc.transport],
      clock: proc.clock,
      random: proc.random,
      logger,
      requestTimeoutMs: t.requestTimeoutMs,
      connectTimeoutMs: t.connectTimeoutMs,
      keepAliveMs: t.keepAliveMs,
      deadAfterMs: t.deadAfterMs,
      backoff: { initialMs: 50, maxMs: t.backoffMaxMs },
      // A mirror leg whose link drops fails at once (storage/assemble.ts's default), unless
      // the seed holds its requests across a lost link as a leaf's own `ioTimeout` does.
      ...(parent === "mirror" ? { ioTimeoutMs: t.legIoTimeoutMs } : {}),
      onState: (state) => {
        if (proc.alive) this.#hooks.get(spec.id)?.(state);
      },
    });
    const ref = spawnBlockActor(this.#system!, guard(remote), { name: `storage.${spec.id}` });
    return { device: await BlockClient.connect(this.#system!, ref), media: remote };
  }

  /**
   * Whether its mirrors are at rest: no change sent to a leg is unsettled (one still in
   * flight may yet land on, or fail, an in-sync leg).
   */
  get atRest(): boolean {
    return this.#changing.n === 0;
  }

  #tap(mirror: string, leg: string, device: BlockDevice): BlockDevice {
    return new LegTap(
      device,
      (offset, length) => this.observer.legRead(mirror, leg, offset, length),
      this.#changing,
    );
  }
}

/** Tells a mirror when its leg's link drops or comes back (as storage/assemble.ts does). */
function linkHook(mirror: Mirror, leg: string): (state: RemoteState) => void {
  return (state) => {
    if (state === "connected") mirror.legReachable(leg);
    else if (state === "connecting") mirror.legLost(leg, "link to the node lost");
  };
}

/** A mirror leg as the mirror sees it, with every read shown to the checker. */
class LegTap implements BlockDevice {
  constructor(
    readonly inner: BlockDevice,
    readonly onRead: (
      offset: number,
      length: number,
    ) => ((data: Uint8Array | undefined) => void) | undefined,
    readonly changing: { n: number },
  ) {}

  #change(op: Promise<void>): Promise<void> {
    const changing = this.changing;
    changing.n++;
    return op.finally(() => changing.n--);
  }

  info(): BlockInfo {
    return this.inner.info();
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const judge = this.onRead(offset, length);
    try {
      const data = await this.inner.read(offset, length, into);
      judge?.(data);
      return data;
    } catch (error) {
      judge?.(undefined);
      throw error;
    }
  }

  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    return this.#change(this.inner.write(offset, data, fua));
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.#change(this.inner.trim(offset, length, fua));
  }

  zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    return this.#change(this.inner.zero(offset, length, options));
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    return this.inner.extents(offset, length);
  }

  cache(offset: number, length: number): Promise<void> {
    return this.inner.cache(offset, length);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
