/**
 * The flags that bound what NBD clients can make a dst process hold, shared by `dst export` and
 * `dst serve` so both spell, check and explain them the same way.
 */
import { MAX_TIMEOUT_MS, NBD_DEFAULTS, type NbdLimits } from "../nbd/limits.ts";
import { UsageError } from "./command.ts";

/** For parseFlags: spread into a command's options. */
export const nbdLimitFlags = {
  "nbd-max-connections": { type: "string" },
  "nbd-max-handshakes": { type: "string" },
  "nbd-idle-timeout": { type: "string" },
  "nbd-stall-timeout": { type: "string" },
} as const;

type NbdFlagValues = { [K in keyof typeof nbdLimitFlags]?: string | undefined };

/** Help lines for the flags, with their defaults, descriptions starting at `column`. */
export function nbdLimitHelp(column: number): string {
  const pad = " ".repeat(column);
  const entries: [string, string[]][] = [
    ["--nbd-max-connections N", [
      `most NBD connections at once; more are closed at once (default ${NBD_DEFAULTS.maxConnections})`,
    ]],
    ["--nbd-max-handshakes N", [
      `most NBD clients still in the handshake (default ${NBD_DEFAULTS.maxHandshakes})`,
    ]],
    ["--nbd-idle-timeout SECONDS", [
      "close an NBD connection idle this long: nothing sent, nothing in flight",
      "(default 0: never)",
    ]],
    ["--nbd-stall-timeout SECONDS", [
      "drop an NBD client that takes none of its replies this long; until then",
      `nothing more is read from it (default ${NBD_DEFAULTS.stallTimeoutMs / 1000})`,
    ]],
  ];
  return entries.map(([flag, lines]) =>
    [`  ${flag}`, ...lines.map((line) => pad + line)].join("\n")
  ).join("\n");
}

/** The limits the flags ask for (unset ones stay at their defaults); a UsageError names a bad one. */
export function nbdLimitsFrom(values: NbdFlagValues): Partial<NbdLimits> {
  const out: { -readonly [K in keyof NbdLimits]?: number } = {};
  const connections = values["nbd-max-connections"];
  if (connections !== undefined) {
    out.maxConnections = count("--nbd-max-connections", connections, 1_000_000);
  }
  const handshakes = values["nbd-max-handshakes"];
  if (handshakes !== undefined) {
    out.maxHandshakes = count("--nbd-max-handshakes", handshakes, 1_000_000);
  }
  const maxConnections = out.maxConnections ?? NBD_DEFAULTS.maxConnections;
  const maxHandshakes = out.maxHandshakes ?? Math.min(NBD_DEFAULTS.maxHandshakes, maxConnections);
  if (maxHandshakes > maxConnections) {
    throw new UsageError(
      `--nbd-max-handshakes ${maxHandshakes} is more than --nbd-max-connections ` +
        `${maxConnections}: a handshake is a connection too`,
    );
  }
  out.maxHandshakes = maxHandshakes;
  const idle = values["nbd-idle-timeout"];
  if (idle !== undefined) out.idleTimeoutMs = milliseconds("--nbd-idle-timeout", idle, true);
  const stall = values["nbd-stall-timeout"];
  if (stall !== undefined) out.stallTimeoutMs = milliseconds("--nbd-stall-timeout", stall, false);
  return out;
}

function count(flag: string, text: string, max: number): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new UsageError(`${flag} ${JSON.stringify(text)}: give a whole number from 1 to ${max}`);
  }
  return value;
}

const UNIT_MS: Record<string, number> = { "": 1000, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "30", "1.5", "500ms", "2m" as milliseconds; 0 only where it means "off". */
function milliseconds(flag: string, text: string, zeroIsOff: boolean): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text.trim());
  const ms = match === null ? NaN : Math.round(Number(match[1]) * UNIT_MS[match[2] ?? ""]!);
  const tooShort = ms === 0 && (!zeroIsOff || Number(match?.[1]) > 0);
  if (!Number.isFinite(ms) || ms > MAX_TIMEOUT_MS || tooShort) {
    throw new UsageError(
      `${flag} ${JSON.stringify(text)}: give seconds (30, 1.5) or a time with a unit ` +
        `(500ms, 2m), at most a day${zeroIsOff ? "; 0 turns it off" : ", more than 0"}`,
    );
  }
  return ms;
}
