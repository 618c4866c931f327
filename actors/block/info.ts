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
