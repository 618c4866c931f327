/**
 * The flags that bound what peers can make a dst node server hold (links, pending handshakes,
 * requests and bytes per link, the write stall timeout): one definition for `dst node` and
 * the node listener of `dst serve`.
 */
import { NODE_LIMITS, type NodeServerOptions } from "../actors/node/server.ts";
import { UsageError } from "./command.ts";
import { parseSize } from "./export.ts";

/** Help lines of the limit flags, shared with the node listener of `dst serve`. */
export const LIMITS_HELP =
  `  --max-links N       proxy links held at once; a proven proxy beyond is refused
                      (default ${NODE_LIMITS.maxLinks})
  --max-pending-handshakes N
                      connections not yet authenticated; beyond it the oldest is dropped
                      (default ${NODE_LIMITS.maxPendingHandshakes})
  --max-in-flight N   requests served at once per link; more wait unread
                      (default ${NODE_LIMITS.maxInFlight})
  --max-link-bytes SIZE
                      bytes one link may make the node hold (requests being served, replies
                      not yet written); past it the link is not read (default 32M)
  --stall-timeout-ms MS
                      drop a link whose replies have not moved for this long (a peer that
                      stopped reading) (default ${NODE_LIMITS.writeStallMs})`;

/** The limit flags for `parseFlags`. */
export const LIMIT_FLAGS = {
  "max-links": { type: "string" },
  "max-pending-handshakes": { type: "string" },
  "max-in-flight": { type: "string" },
  "max-link-bytes": { type: "string" },
  "stall-timeout-ms": { type: "string" },
} as const;

export type NodeLimits = Pick<
  NodeServerOptions,
  "maxLinks" | "maxPendingHandshakes" | "maxInFlight" | "maxLinkBytes" | "writeStallMs"
>;

function count(text: string | undefined, flag: string, max: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new UsageError(`${flag} must be a whole number from 1 to ${max}, got "${text}"`);
  }
  return value;
}

/** The limits the flags set (unset ones keep the node server's defaults). */
export function parseLimits(values: Partial<Record<keyof typeof LIMIT_FLAGS, string>>): NodeLimits {
  const links = count(values["max-links"], "--max-links", 100_000);
  const pending = count(values["max-pending-handshakes"], "--max-pending-handshakes", 100_000);
  const inFlight = count(values["max-in-flight"], "--max-in-flight", 65_536);
  const bytes = values["max-link-bytes"] === undefined
    ? undefined
    : parseSize(values["max-link-bytes"], "--max-link-bytes");
  const stall = count(values["stall-timeout-ms"], "--stall-timeout-ms", 3_600_000);
  return {
    ...(links === undefined ? {} : { maxLinks: links }),
    ...(pending === undefined ? {} : { maxPendingHandshakes: pending }),
    ...(inFlight === undefined ? {} : { maxInFlight: inFlight }),
    ...(bytes === undefined ? {} : { maxLinkBytes: bytes }),
    ...(stall === undefined ? {} : { writeStallMs: stall }),
  };
}
