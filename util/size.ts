/** Human sizes ("4096", "64M", "1G", "512KiB") for flags and topology files. */

const UNITS: Record<string, number> = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** Bytes in `text`, or an Error saying what a size looks like. */
export function parseSize(text: string): number {
  const match = /^(\d+)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (match === null) {
    throw new Error(`${JSON.stringify(text)} is not a size (examples: 4096, 64M, 1G)`);
  }
  const value = Number(match[1]) * UNITS[match[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new Error(`${text} must be a positive size below 8 PiB`);
  }
  return value;
}

/** "1.5 GiB"-style text for logs and status. */
export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}
