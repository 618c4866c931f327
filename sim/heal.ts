/**
 * The end of a seed: every fault is undone and every process brought back, then the storage
 * must converge within a bound of simulated time (liveness): every leg of every mirror in sync,
 * no resync running, no write to a leg in flight. Then the final checks: every block reads as
 * the model says, the legs of each mirror hold the same bytes (of each parity: every stripe
 * adds up, so every unit rebuilt from the others is what its leg holds), and after a final
 * flush, a power loss of every node and the
 * recovery, every block still reads as its last acknowledged write.
 */
import { checkBlock, isZero } from "../drill/block_stamps.ts";
import { xorInto } from "../actors/parity/xor.ts";
import type { FaultInjector } from "./faults.ts";
import { CALM } from "./network.ts";
import { BLOCK } from "./topology.ts";
import type { World } from "./world.ts";

/** Simulated time the storage gets to converge after the faults stop. */
export const CONVERGE_MS = 300_000;

/** True when every process of the tree is up and every mirror's legs are in sync, at rest. */
export function converged(w: World): boolean {
  if (w.treeLeaves().some((l) => l.state !== "up")) return false;
  if (w.treeExporters().some((e) => e.state !== "up" || !e.atRest)) return false;
  for (const { running } of w.runningMirrors()) {
    for (const leg of running.mirror.legs()) {
      if (leg.state !== "in-sync" || leg.resync !== undefined) return false;
    }
  }
  return true;
}

/** What is not converged, for the report. */
function lagging(w: World): string {
  const out: string[] = [];
  for (const l of w.treeLeaves()) if (l.state !== "up") out.push(`${l.id} ${l.state}`);
  for (const e of w.treeExporters()) if (e.state !== "up") out.push(`exporter ${e.id} ${e.state}`);
  for (const e of w.treeExporters()) {
    if (e.state === "up" && !e.atRest) out.push(`exporter ${e.id}: writes to legs in flight`);
  }
  for (const { id, running } of w.runningMirrors()) {
    for (const leg of running.mirror.legs()) {
      if (leg.state !== "in-sync" || leg.resync !== undefined) {
        out.push(`${id}/${leg.name} ${leg.state}${leg.reason ? ` (${leg.reason})` : ""}`);
      }
    }
  }
  return out.join("; ");
}

/** Undoes every fault and brings every process back; resolves once converged (or failed). */
export async function heal(w: World, faults: FaultInjector): Promise<boolean> {
  faults.stop();
  w.healing = true;
  w.trace.event("HEAL");
  // The clients stop: the storage converges by itself (resync under load is the fault phase's).
  await w.settle(w.workload.stop(), 120_000, "the workload's last operations");
  w.network.setRates(CALM);
  w.network.healAll();
  for (const leaf of faults.hung) leaf.disk.release();
  faults.hung.clear();
  for (const leaf of w.treeLeaves()) if (leaf.state === "down") w.restartLeaf(leaf, 0);
  for (const e of w.treeExporters()) if (e.state === "down") w.restartExporter(e, 0);
  const deadline = w.sim.now() + CONVERGE_MS;
  // Legs the operator left suspended are resumed (as an operator ends maintenance).
  let resumeAt = 0;
  const ok = await w.driver.run(deadline, () => {
    if (w.failed) return true;
    if (w.sim.now() >= resumeAt) {
      resumeAt = w.sim.now() + 1000;
      for (const { exporter, id, running } of w.runningMirrors()) {
        for (const leg of running.mirror.legs()) {
          if (leg.state === "suspended") {
            void exporter.act(id, { action: "resume", leg: leg.name }).catch(() => {});
          }
        }
      }
    }
    return converged(w);
  });
  if (w.failed) return false;
  if (!ok) {
    w.fail(`no convergence within ${CONVERGE_MS / 1000} s after the faults stopped: ${lagging(w)}`);
    return false;
  }
  w.trace.event("converged");
  return true;
}

/** Reads every block through the storage and judges it. */
async function readAll(w: World, what: string): Promise<void> {
  const device = w.device();
  if (device === undefined) {
    w.fail(`${what}: the storage is not up`);
    return;
  }
  const reads = [];
  for (let b = 0; b < w.checker.blocks; b++) {
    const watch = w.checker.readStart(b * BLOCK, BLOCK, `${what} of block ${b}`, true);
    reads.push(
      device.read(b * BLOCK, BLOCK).then(
        (data) => w.checker.readEnd(watch, data),
        (error) => {
          w.checker.readEnd(watch, undefined);
          w.fail(`${what} of block ${b} failed: ${(error as Error).message}`);
        },
      ),
    );
  }
  await w.settle(Promise.all(reads), 60_000, what);
}

/** Every mirror's legs hold the same bytes (each read whole through the mirror's own path). */
async function compareLegs(w: World, what: string): Promise<void> {
  for (const { id, running } of w.runningMirrors()) {
    // A parity leg holds its share of the rows: K of them make the storage.
    const parity = running.spec.parity;
    const size = running.mirror.info().size /
      (parity === undefined ? 1 : running.spec.legs.length - 1);
    const inSync = new Set(
      running.mirror.legs().filter((l) => l.state === "in-sync").map((l) => l.name),
    );
    const legs = [...running.legs].filter(([name]) => inSync.has(name));
    const contents = await w.settle(
      Promise.all(legs.map(([, device]) => device.read(0, size))),
      60_000,
      `${what}: reading the legs of ${id}`,
    ).catch((error) => {
      w.fail(`${what}: reading the legs of ${id} failed: ${(error as Error).message}`);
      return undefined;
    });
    if (contents === undefined) return;
    if (running.spec.parity !== undefined) {
      parityAddsUp(w, what, id, running.spec.parity, running.spec.legs.length, contents);
      continue;
    }
    const [first, ...rest] = contents;
    rest.forEach((data, i) => {
      for (let at = 0; at < size; at += BLOCK) {
        const a = first!.subarray(at, at + BLOCK);
        const b = data.subarray(at, at + BLOCK);
        if (!a.every((x, j) => x === b[j])) {
          const base = w.model.bases().get(id) ?? 0;
          w.fail(
            `${what}: legs ${legs[0]![0]} and ${legs[i + 1]![0]} of ${id} differ at ${at} ` +
              `(${describeBlock(a, base + at)} against ${describeBlock(b, base + at)}; ` +
              "the mirror calls both in sync)",
          );
          return;
        }
      }
    });
  }
}

/** Every stripe of a parity's legs XORs to zero (read whole: each leg's first bytes). */
function parityAddsUp(
  w: World,
  what: string,
  id: string,
  unit: number,
  n: number,
  contents: readonly Uint8Array[],
): void {
  if (n !== contents.length) {
    w.fail(`${what}: ${id} is converged with ${contents.length} of ${n} legs in sync`);
    return;
  }
  const legBytes = Math.floor(Math.min(...contents.map((c) => c.length)) / unit) * unit;
  const sum = new Uint8Array(legBytes);
  for (const c of contents) xorInto(sum, c.subarray(0, legBytes));
  for (let at = 0; at < legBytes; at += unit) {
    if (!isZero(sum.subarray(at, at + unit))) {
      w.fail(`${what}: stripe ${at / unit} of parity ${id} does not add up (all legs in sync)`);
      return;
    }
  }
}

/** The final checks, on a converged storage. */
export async function finalChecks(w: World, faults: FaultInjector): Promise<void> {
  await readAll(w, "final read");
  await compareLegs(w, "after convergence");
  if (w.failed) return;
  // Everything acknowledged is flushed; then every node loses power at once. (A mirror whose
  // legs keep no media cannot take any back after that: gaps.ts, exposed only with --gaps.)
  if (!w.gaps && w.guard.anyMedialess()) {
    w.trace.event("no power loss: a mirror's legs keep no media");
    return;
  }
  // Every leg of a parity lost at once is a double fault (gaps.ts: parity-double-fault).
  if (!w.gaps && w.guard.anyParity()) {
    w.trace.event("no power loss: a parity storage does not come back from losing every leg");
    return;
  }
  const device = w.device();
  if (device === undefined) return;
  const start = w.checker.flushStart();
  await w.settle(device.flush(), 60_000, "final flush").then(
    () => w.checker.flushDone(start),
    (error) => w.fail(`final flush failed: ${(error as Error).message}`),
  );
  if (w.failed) return;
  w.trace.event("POWER LOSS of every node");
  for (const leaf of w.treeLeaves()) w.crashLeaf(leaf, false);
  for (const leaf of w.treeLeaves()) w.restartLeaf(leaf, 100);
  if (!(await heal(w, faults))) return;
  await readAll(w, "read after power loss");
  await compareLegs(w, "after power loss");
}

/** Which write a block holds, as its stamps say. */
function describeBlock(data: Uint8Array, offset: number): string {
  if (isZero(data)) return "zeros";
  const stamp = checkBlock(data, offset);
  return stamp instanceof Error ? stamp.message : `write ${stamp.seq}`;
}
