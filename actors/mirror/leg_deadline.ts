/**
 * A deadline on one leg operation: a leg that does not answer in time is treated as failed
 * (the caller fails it), so one stuck leg never stalls the mirror.
 */
import { BlockError } from "../block/contract.ts";
import type { Clock } from "../../util/clock.ts";

/** Rejects with ETIMEDOUT when `op` has not settled within `timeoutMs`. */
export function withDeadline<T>(
  clock: Clock,
  timeoutMs: number,
  legName: string,
  op: Promise<T>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = clock.setTimeout(
      () => reject(new BlockError("ETIMEDOUT", `${legName} did not answer in time`)),
      timeoutMs,
    );
    op.then(
      (value) => {
        timer.cancel();
        resolve(value);
      },
      (error) => {
        timer.cancel();
        reject(error);
      },
    );
  });
}
