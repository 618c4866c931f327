/**
 * The drill's client: rounds of a real NBD client (nbdcopy) writing self-describing blocks over
 * [0, n) of the device with a new sequence number each round and flushing, each followed by
 * nbdcopy reading the whole device back and checking every block against what was acknowledged.
 * A round that fails leaves its blocks "maybe written" (either sequence may read back); a round
 * that succeeded makes its sequence the only acceptable one. Each round is a new NBD connection,
 * so a restarted export is met by the next round attaching anew; with `followUri`, a round whose
 * export is no longer the one to use (another exporter took over) is abandoned at once and the
 * next attaches to the new one, as a client that reconnects to whichever exporter is active.
 */
import { checkBlock, fillBlock } from "./block_stamps.ts";

export const BLOCK = 4096;
const WRITER = 7;
const ROUND_TIMEOUT_MS = 60_000;

export interface RoundEvent {
  readonly kind: "write" | "verify";
  readonly seq: number;
  readonly bytes: number;
  readonly ms: number;
  /** Set when the client failed (I/O error, could not connect, timed out). */
  readonly error?: string;
  /** Set when the data read back breaks the model (a lost or misplaced write). */
  readonly lost?: string;
}

/** What every block may hold: the acknowledged sequence, or one of failed rounds covering it. */
export class BlockModel {
  readonly acked: Int32Array;
  readonly #failed = new Map<number, number>();

  constructor(readonly size: number) {
    this.acked = new Int32Array(size / BLOCK).fill(-1);
  }

  acknowledge(seq: number, bytes: number): void {
    this.acked.fill(seq, 0, bytes / BLOCK);
  }

  maybe(seq: number, bytes: number): void {
    this.#failed.set(seq, bytes);
  }

  /** Why the block at `index` may not hold `seq` (undefined when it may). */
  problem(index: number, seq: number | undefined): string | undefined {
    const acked = this.acked[index]!;
    if (seq === acked) return undefined;
    if (seq !== undefined && seq > acked) {
      const bytes = this.#failed.get(seq);
      if (bytes !== undefined && index * BLOCK < bytes) return undefined;
    }
    const holds = seq === undefined ? "no data" : `seq ${seq}`;
    return `block at ${index * BLOCK} holds ${holds}, acknowledged seq ${acked}`;
  }
}

async function nbdcopy(
  args: string[],
  stdout: "piped" | "null",
  abandon?: () => string | undefined,
): Promise<{
  ok: boolean;
  out: Uint8Array;
  err: string;
}> {
  const child = new Deno.Command("nbdcopy", { args, stdin: "null", stdout, stderr: "piped" })
    .spawn();
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
  };
  const timer = setTimeout(kill, ROUND_TIMEOUT_MS);
  let abandoned: string | undefined;
  const watch = abandon === undefined ? undefined : setInterval(() => {
    abandoned ??= abandon();
    if (abandoned !== undefined) kill();
  }, 100);
  const result = await child.output();
  clearTimeout(timer);
  clearInterval(watch);
  return {
    ok: result.success && abandoned === undefined,
    out: stdout === "piped" ? result.stdout : new Uint8Array(),
    err: abandoned ??
      (new TextDecoder().decode(result.stderr).trim().split("\n").slice(-2).join(" ") ||
        `exit ${result.code}`),
  };
}

export class Workload {
  readonly model: BlockModel;
  readonly #image: string;
  #seq = 0;
  #running = false;
  #loop: Promise<void> | undefined;
  #waiters: { at: number; resolve: () => void }[] = [];
  writeRounds = 0;
  bytesWritten = 0;
  bytesVerified = 0;
  /** Blocks read back that broke the model (acknowledged writes lost or misplaced). */
  lostBlocks = 0;
  /** Abandon a round whose export is no longer `uri()` (set for drills with failover). */
  followUri = false;

  constructor(
    readonly uri: () => string | undefined,
    readonly size: number,
    readonly roundBytes: readonly number[],
    dir: string,
    readonly onRound: (event: RoundEvent) => void,
  ) {
    this.model = new BlockModel(size);
    this.#image = `${dir}/round.img`;
  }

  start(): void {
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Resolves once `count` more write rounds have completed (successfully or not). */
  rounds(count: number): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiters.push({ at: this.writeRounds + count, resolve });
    return promise;
  }

  async #run(): Promise<void> {
    let i = 0;
    while (this.#running) {
      // The first round stamps the whole device, so every block is checked from then on.
      const bytes = this.writeRounds === 0
        ? this.size
        : Math.min(this.roundBytes[i++ % this.roundBytes.length]!, this.size);
      const wrote = await this.write(bytes);
      this.writeRounds++;
      for (const w of this.#waiters.filter((w) => w.at <= this.writeRounds)) w.resolve();
      this.#waiters = this.#waiters.filter((w) => w.at > this.writeRounds);
      if (!this.#running) break;
      // A client error means the export is not there: retry shortly rather than spin.
      if (!wrote || !(await this.verify())) await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** One write round: [0, bytes) stamped with a new sequence, flushed. */
  async write(bytes: number): Promise<boolean> {
    const seq = ++this.#seq;
    const image = new Uint8Array(bytes);
    for (let at = 0; at < bytes; at += BLOCK) {
      fillBlock(image.subarray(at, at + BLOCK), at, WRITER, seq);
    }
    await Deno.writeFile(this.#image, image);
    const uri = this.uri();
    const started = performance.now();
    const result = uri === undefined
      ? { ok: false, err: "no export running" }
      : await nbdcopy(["--flush", "--connections=1", this.#image, uri], "null", this.#moved(uri));
    const ms = Math.round(performance.now() - started);
    if (result.ok) {
      this.model.acknowledge(seq, bytes);
      this.bytesWritten += bytes;
      this.onRound({ kind: "write", seq, bytes, ms });
    } else {
      this.model.maybe(seq, bytes);
      this.onRound({ kind: "write", seq, bytes, ms, error: result.err });
    }
    return result.ok;
  }

  /** Reads the whole device and checks every block against the model. */
  async verify(): Promise<boolean> {
    const uri = this.uri();
    const started = performance.now();
    const result = uri === undefined
      ? { ok: false, out: new Uint8Array(), err: "no export running" }
      : await nbdcopy(["--connections=1", uri, "-"], "piped", this.#moved(uri));
    const ms = Math.round(performance.now() - started);
    const seq = this.#seq;
    if (!result.ok || result.out.length !== this.size) {
      const error = result.ok ? `read ${result.out.length} of ${this.size} bytes` : result.err;
      this.onRound({ kind: "verify", seq, bytes: this.size, ms, error });
      return false;
    }
    const lost: string[] = [];
    for (let at = 0, index = 0; at < this.size; at += BLOCK, index++) {
      const stamp = checkBlock(result.out.subarray(at, at + BLOCK), at);
      const problem = stamp instanceof Error
        ? (this.model.acked[index] === -1 && stamp.message.includes("zeros")
          ? undefined
          : `block at ${at}: ${stamp.message}`)
        : stamp.writer !== WRITER
        ? `block at ${at}: foreign writer ${stamp.writer}`
        : this.model.problem(index, stamp.seq);
      if (problem !== undefined) lost.push(problem);
    }
    this.bytesVerified += this.size;
    this.lostBlocks += lost.length;
    this.onRound({
      kind: "verify",
      seq,
      bytes: this.size,
      ms,
      ...(lost.length === 0
        ? {}
        : { lost: `${lost.length} bad blocks, first: ${lost.slice(0, 3).join("; ")}` }),
    });
    return lost.length === 0;
  }

  /** With `followUri`: says why a round on `uri` is abandoned, once another is to be used. */
  #moved(uri: string): (() => string | undefined) | undefined {
    if (!this.followUri) return undefined;
    return () => {
      const now = this.uri();
      return now === uri ? undefined : `abandoned: the active exporter is now ${now ?? "none"}`;
    };
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
    for (const w of this.#waiters.splice(0)) w.resolve();
    await Deno.remove(this.#image).catch(() => {});
  }
}
