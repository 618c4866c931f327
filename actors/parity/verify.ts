/**
 * Online verify of a parity storage: every row's units must XOR to zero. Each chunk is read
 * from every leg under the range lock of its rows (no write is half done there), and rows that
 * do not add up are counted and reported. Nothing is repaired: a mismatch cannot tell which unit
 * is wrong (a data unit, or the parity), so the operator decides: a leg they distrust is marked
 * dirty and rebuilt from the others. Every leg must be in sync (all take part in the sum).
 */
import type { MirrorCore } from "../mirror/core.ts";
import { ControlRefused } from "../mirror/core.ts";
import type { ActionDone } from "../mirror/maintenance.ts";
import type { VerifyReport } from "../mirror/verify.ts";
import type { BufferPool } from "../../util/buffer_pool.ts";
import type { Geometry } from "./geometry.ts";
import { isZero, xorInto } from "./xor.ts";

/** Rows of chunk `c` whose units do not XOR to zero, read under the lock (undefined: a leg left). */
export async function mismatchedRows(
  core: MirrorCore,
  g: Geometry,
  pool: BufferPool,
  c: number,
): Promise<number[] | undefined> {
  const offset = c * core.chunkSize;
  const length = Math.min(core.chunkSize, g.legBytes - offset);
  const rows = { first: offset / g.unit, last: (offset + length) / g.unit - 1 };
  const range = g.rowRange(rows.first, rows.last);
  return await core.lock(range.offset, range.length, async () => {
    const legs = [...core.legs];
    if (legs.some((l) => l.state !== "in-sync")) return undefined;
    const buffers = legs.map(() => pool.get(length));
    try {
      const epochs = legs.map((l) => l.epoch);
      const read = await Promise.allSettled(
        legs.map((l, i) =>
          core.timed(l, l.device.read(offset, length, buffers[i]!.subarray(0, length)))
        ),
      );
      let lost = false;
      read.forEach((r, i) => {
        if (r.status === "rejected") {
          lost = true;
          core.fail(legs[i]!, epochs[i]!, `verify read failed: ${(r.reason as Error).message}`);
        }
      });
      if (lost) return undefined;
      const sum = new Uint8Array(length);
      for (const r of read) {
        xorInto(sum, (r as PromiseFulfilledResult<Uint8Array>).value.subarray(0, length));
      }
      const bad: number[] = [];
      for (let row = rows.first; row <= rows.last; row++) {
        const at = (row - rows.first) * g.unit;
        if (!isZero(sum.subarray(at, at + g.unit))) bad.push(row);
      }
      return bad;
    } finally {
      for (const b of buffers) pool.put(b);
    }
  });
}

export async function verifyParity(
  core: MirrorCore,
  g: Geometry,
  pool: BufferPool,
  repairFrom?: string,
): Promise<ActionDone> {
  if (repairFrom !== undefined) {
    throw new ControlRefused(
      "parity verify repairs nothing from a leg: a stripe that does not add up cannot tell which " +
        "of its units is wrong. Verify without --repair-from to see them, then mark the leg you " +
        "distrust dirty: it is rebuilt from the others",
    );
  }
  const behind = core.legs.filter((l) => l.state !== "in-sync");
  if (behind.length > 0) {
    throw new ControlRefused(
      `verify needs every leg of a parity storage in sync (each takes part in every stripe): ${
        behind.map((l) => `${l.name} is ${l.state}`).join(", ")
      }`,
    );
  }
  let compared = 0;
  let chunks = 0;
  let rows = 0;
  const examples: number[] = [];
  for (let c = 0; c < core.chunks && !core.closed; c++) {
    const bad = await mismatchedRows(core, g, pool, c);
    if (bad === undefined) {
      throw new ControlRefused("a leg left during verify: it stopped (every leg must be in sync)");
    }
    compared++;
    if (bad.length === 0) continue;
    chunks++;
    rows += bad.length;
    if (examples.length < 8) examples.push(...bad.slice(0, 8 - examples.length));
  }
  const bytes = rows * g.rowBytes;
  const report: VerifyReport = {
    at: core.clock.now(),
    legs: core.legs.map((l) => l.name),
    chunksCompared: compared,
    mismatchedChunks: chunks,
    mismatchedBytes: bytes,
    repairedBytes: {},
    unresolvedBytes: bytes,
  };
  core.lastVerify = report;
  core.logger.log(rows > 0 ? "warn" : "info", "parity verify done", {
    mismatchedStripes: rows,
    mismatchedChunks: chunks,
    ...(rows > 0 ? { stripes: examples.join(",") } : {}),
  });
  const message = rows === 0
    ? `verified ${compared} chunk(s): every stripe's parity matches its data`
    : `verify found ${rows} stripe(s) in ${chunks} chunk(s) (${bytes} bytes) whose parity does ` +
      `not match their data (stripes ${examples.join(", ")}${
        rows > examples.length ? ", ..." : ""
      }); ` +
      "nothing was repaired: mark the leg you distrust dirty to rebuild it from the others";
  return { message, verify: report };
}
