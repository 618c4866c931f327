/**
 * How the mirror tells a client's mistake from a leg's failure, and the error a client hears
 * when no leg can serve: a request error from every leg is the client's; anything else fails
 * the leg.
 */
import { BlockError, type BlockErrorCode } from "../block/contract.ts";
import type { Leg } from "./leg.ts";

/** Errors that describe the request, not the leg: when every leg says so, the client hears it. */
const requestErrors: ReadonlySet<BlockErrorCode> = new Set([
  "EINVAL",
  "EPERM",
  "ENOSPC",
  "EOVERFLOW",
  "ENOTSUP",
]);

export function isRequestError(error: unknown): boolean {
  return error instanceof BlockError && requestErrors.has(error.code);
}

/** The error for `what` when no leg serves: a split brain's refusal, or the last leg error. */
export function noLegsError(
  legs: readonly Leg[],
  inSync: number,
  what: string,
  cause: unknown,
): BlockError {
  const split = legs.find((l) => l.state === "split-brain");
  if (split !== undefined && inSync === 0) {
    return new BlockError("EIO", `${what}: refused: ${split.reason ?? "split brain"}`);
  }
  const why = cause === undefined ? "" : ` (last error: ${describe(cause)})`;
  return new BlockError("EIO", `${what}: no in-sync leg left${why}`);
}

export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
