/**
 * How a mapping's sizes and capabilities follow from its children's: a mapping can promise only
 * what every child can do, and must respect the coarsest block size among them.
 */
import type { BlockInfo } from "./contract.ts";

/** Combines children's infos; `size` is left to the mapping (sum, minimum, ...). */
export function combineInfo(children: readonly BlockInfo[]): Omit<BlockInfo, "size"> {
  const all = (pick: (i: BlockInfo) => boolean) => children.every(pick);
  return {
    minBlock: Math.max(...children.map((c) => c.minBlock)),
    preferredBlock: Math.max(...children.map((c) => c.preferredBlock)),
    maxBlock: Math.min(...children.map((c) => c.maxBlock)),
    readOnly: children.some((c) => c.readOnly),
    canFlush: all((c) => c.canFlush),
    canFua: all((c) => c.canFua),
    canTrim: all((c) => c.canTrim),
    canZero: all((c) => c.canZero),
    canFastZero: all((c) => c.canFastZero),
    canExtents: all((c) => c.canExtents),
    canCache: all((c) => c.canCache),
    canMultiConn: all((c) => c.canMultiConn),
  };
}

/**
 * Why a device with `actual` cannot stand in for one that promised `needed` (smaller, a
 * capability missing, block sizes that do not cover), or undefined when it can.
 */
export function shortfall(actual: BlockInfo, needed: BlockInfo): string | undefined {
  if (actual.size < needed.size) return `it holds ${actual.size} bytes; ${needed.size} are needed`;
  const lacks = (
    [
      ["canFlush", "flush"],
      ["canFua", "FUA"],
      ["canTrim", "trim"],
      ["canZero", "zero"],
      ["canFastZero", "fast zero"],
    ] as const
  ).filter(([key]) => needed[key] && !actual[key]).map(([, what]) => what);
  if (lacks.length > 0) return `it lacks ${lacks.join(", ")}, which was already promised`;
  if (actual.readOnly && !needed.readOnly) return "it is read-only";
  if (actual.maxBlock < needed.maxBlock || actual.minBlock > needed.minBlock) {
    return `its block sizes (${actual.minBlock}..${actual.maxBlock}) do not cover ` +
      `${needed.minBlock}..${needed.maxBlock}`;
  }
  return undefined;
}
