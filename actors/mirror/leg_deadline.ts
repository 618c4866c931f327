/**
 * A deadline on one leg operation: a leg that does not answer in time is treated as failed
 * (the caller fails it), so one stuck leg never stalls the mirror. Nor does a leg that left the
 * mirror's sets meanwhile (its link dropped, another request failed it): the wait ends then.
 */
import { BlockError } from "../block/contract.ts";
import type { Clock } from "../../util/clock.ts";

/** Ends waits on a leg when it leaves (in_flight.ts `InFlight`). */
export interface Leaving {
  onLeave(end: (error: BlockError) => void): () => void;
}

/**
 * Rejects with ETIMEDOUT when `op` has not settled within `timeoutMs`, and with the leaving
 * error as soon as the leg leaves (`leaving`), whichever comes first.
 */
export function withDeadline<T>(
  clock: Clock,
  timeoutMs: number,
  legName: string,
  op: Promise<T>,
  leaving?: Leaving,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const forget = leaving?.onLeave((error) => {
      timer.cancel();
      reject(error);
    });
    const timer = clock.setTimeout(() => {
      forget?.();
      reject(new BlockError("ETIMEDOUT", `${legName} did not answer in time`));
    }, timeoutMs);
    op.then(
      (value) => {
        timer.cancel();
        forget?.();
        resolve(value);
      },
      (error) => {
        timer.cancel();
        forget?.();
        reject(error);
      },
    );
  });
}
