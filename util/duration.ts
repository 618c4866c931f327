/** Human durations ("500ms", "5s", "2m") for flags and topology files: timeouts and deadlines. */

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** Milliseconds in `text`, or an Error saying what a duration looks like. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m)$/.exec(text.trim());
  if (match === null) {
    throw new Error(`${JSON.stringify(text)} is not a duration (examples: 500ms, 5s, 2m)`);
  }
  const ms = Math.round(Number(match[1]) * UNITS[match[2]!]!);
  if (!Number.isSafeInteger(ms) || ms > 24 * 3600_000) {
    throw new Error(`${text} is too long: at most a day`);
  }
  return ms;
}

/** "1.5s"-style text for logs. */
export function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${Number((ms / 1000).toFixed(3))}s`;
}
