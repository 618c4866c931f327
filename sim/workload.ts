/**
 * The clients: each writes self-describing blocks (offset, writer, sequence) to blocks it owns,
 * one write at a time per block, some with FUA, flushes now and then, and reads any block;
 * every operation goes to the storage's device (what the NBD export serves) and its outcome to
 * the checker. When the exporter dies, what was in flight failed (its outcome unknown).
 */
import type { BlockDevice } from "../actors/block/contract.ts";
import { fillBlock } from "../drill/block_stamps.ts";
import type { Checker, ReadWatch } from "./checker.ts";
import type { ProcessClock } from "./scheduler.ts";
import type { Rng } from "./rng.ts";
import { BLOCK } from "./topology.ts";

/** Operations per seed at most (a bound on what one seed can cost). */
export const MAX_OPS = 5_000;

export interface WorkloadMix {
  readonly clients: number;
  /** Operations in flight per client at most. */
  readonly depth: number;
  readonly thinkMs: number;
  readonly write: number;
  readonly flush: number;
  readonly fua: number;
  /** Writes of two blocks instead of one. */
  readonly wide: number;
}

export function drawMix(rng: Rng): WorkloadMix {
  return {
    clients: rng.int(1, 3),
    depth: rng.int(1, 4),
    thinkMs: rng.pick([5, 20, 50, 100]),
    write: rng.range(0.4, 0.8),
    flush: rng.range(0, 0.1),
    fua: rng.pick([0, 0.2, 0.5, 1]),
    wide: rng.range(0, 0.3),
  };
}

interface Op {
  readonly kind: "write" | "read" | "flush";
  readonly client: number;
  done: boolean;
  /** Settles the op as failed (the exporter died under it). */
  abandon(): void;
}

export class Workload {
  running = false;
  readonly #ops = new Set<Op>();
  readonly #busy = new Set<number>();
  readonly #inFlight: number[];
  #seq = 0;
  #stopped: (() => void) | undefined;
  ops = 0;

  constructor(
    readonly mix: WorkloadMix,
    readonly rng: Rng,
    readonly checker: Checker,
    readonly clock: ProcessClock,
    /** The storage's device while its exporter is up. */
    readonly device: () => BlockDevice | undefined,
    readonly note: (line: string) => void,
  ) {
    this.#inFlight = Array.from({ length: mix.clients }, () => 0);
  }

  get inFlight(): number {
    return this.#ops.size;
  }

  start(): void {
    this.running = true;
    for (let c = 0; c < this.mix.clients; c++) void this.#client(c);
  }

  /** Stops issuing; resolves once nothing is in flight. */
  stop(): Promise<void> {
    this.running = false;
    if (this.#ops.size === 0) return Promise.resolve();
    return new Promise((resolve) => (this.#stopped = resolve));
  }

  /** The exporter died: its operations failed, their outcome unknown. */
  abandon(): void {
    for (const op of [...this.#ops]) op.abandon();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimeout(resolve, ms));
  }

  async #client(c: number): Promise<void> {
    while (this.running && this.ops < MAX_OPS) {
      await this.#sleep(this.rng.exp(this.mix.thinkMs) + 0.01);
      if (!this.running) return;
      const device = this.device();
      if (device === undefined || this.#inFlight[c]! >= this.mix.depth) continue;
      const roll = this.rng.next();
      if (roll < this.mix.flush) this.#flush(c, device);
      else if (roll < this.mix.flush + this.mix.write) this.#write(c, device);
      else this.#read(c, device);
    }
  }

  #track(op: Op, work: Promise<unknown>): void {
    this.#ops.add(op);
    this.#inFlight[op.client]!++;
    this.ops++;
    void work.finally(() => this.#end(op));
  }

  #end(op: Op): void {
    if (!this.#ops.delete(op)) return;
    this.#inFlight[op.client]!--;
    if (this.#ops.size === 0) this.#stopped?.();
  }

  /** A block this client owns and nobody writes now; pairs (2k, 2k+1) belong to one client. */
  #pick(c: number): number[] | undefined {
    const blocks = this.checker.blocks;
    for (let tries = 0; tries < 8; tries++) {
      const b = this.rng.below(blocks);
      if (Math.floor(b / 2) % this.mix.clients !== c || this.#busy.has(b)) continue;
      const pair = b + 1;
      if (
        this.rng.chance(this.mix.wide) && b % 2 === 0 && pair < blocks && !this.#busy.has(pair)
      ) return [b, pair];
      return [b];
    }
    return undefined;
  }

  #write(c: number, device: BlockDevice): void {
    const blocks = this.#pick(c);
    if (blocks === undefined) return;
    const value = ++this.#seq; // unique across clients: the stamp names the write
    const writer = c + 1;
    const fua = this.rng.chance(this.mix.fua);
    const offset = blocks[0]! * BLOCK;
    const data = new Uint8Array(blocks.length * BLOCK);
    fillBlock(data, offset, writer, value);
    for (const b of blocks) this.#busy.add(b);
    this.checker.writeStart(blocks, value, writer);
    this.note(`c${c} write ${blocks.join("+")} = ${value}${fua ? " fua" : ""}`);
    const settle = (ok: boolean, why: string) => {
      if (op.done) return;
      op.done = true;
      for (const b of blocks) this.#busy.delete(b);
      this.note(`c${c} write ${value} ${ok ? "ok" : `failed: ${why}`}`);
      this.checker.writeDone(blocks, value, ok, fua);
      this.#end(op);
    };
    const op: Op = {
      kind: "write",
      client: c,
      done: false,
      abandon: () => settle(false, "the exporter died"),
    };
    this.#track(
      op,
      device.write(offset, data, fua).then(
        () => settle(true, ""),
        (error) => settle(false, (error as Error).message),
      ),
    );
  }

  #read(c: number, device: BlockDevice): void {
    const blocks = this.checker.blocks;
    const first = this.rng.below(blocks);
    const count = first + 1 < blocks && this.rng.chance(0.3) ? 2 : 1;
    let watch: ReadWatch | undefined = this.checker.readStart(
      first * BLOCK,
      count * BLOCK,
      `c${c} read`,
      true,
    );
    this.note(`c${c} read ${first}+${count}`);
    const settle = (data: Uint8Array | undefined, why: string) => {
      if (op.done) return;
      op.done = true;
      const w = watch!;
      watch = undefined;
      this.note(`c${c} read ${first} ${data === undefined ? `failed: ${why}` : "ok"}`);
      this.checker.readEnd(w, data);
      this.#end(op);
    };
    const op: Op = {
      kind: "read",
      client: c,
      done: false,
      abandon: () => settle(undefined, "the exporter died"),
    };
    this.#track(
      op,
      device.read(first * BLOCK, count * BLOCK).then(
        (data) => settle(data, ""),
        (error) => settle(undefined, (error as Error).message),
      ),
    );
  }

  #flush(c: number, device: BlockDevice): void {
    const start = this.checker.flushStart();
    this.note(`c${c} flush`);
    const settle = (ok: boolean, why: string) => {
      if (op.done) return;
      op.done = true;
      this.note(`c${c} flush ${ok ? "ok" : `failed: ${why}`}`);
      if (ok) this.checker.flushDone(start);
      this.#end(op);
    };
    const op: Op = {
      kind: "flush",
      client: c,
      done: false,
      abandon: () => settle(false, "the exporter died"),
    };
    this.#track(
      op,
      device.flush().then(
        () => settle(true, ""),
        (error) => settle(false, (error as Error).message),
      ),
    );
  }
}
