/**
 * Judging a mirror leg that comes back: what it holds (its media: age, generations, its own
 * bitmap) against what the mirror serves, by the decision table of generations.ts. Reading is
 * I/O; deciding is synchronous, so the core decides and dispatches in one turn on the state as
 * it is then (nothing can change between the decision and the transition).
 */
import type { BlockInfo, MediaState } from "../block/contract.ts";
import { shortfall } from "../block/info.ts";
import type { Logger } from "../../util/log.ts";
import { ChunkBits, rechunk } from "./chunk_bits.ts";
import { describe } from "./errors.ts";
import type { GenerationStamps } from "./generation_stamps.ts";
import { bitmapChunkOf, decide, isInconsistent, isMember } from "./generations.ts";
import type { Leg } from "./leg.ts";
import type { Verdict } from "./leg_machine.ts";
import { bitmapBytesFor } from "./write_intent_bitmap.ts";

/** The last in-sync leg left, and the mirror went down: which leg, at which generations. */
export interface DownRecord {
  readonly leg: Leg;
  /** The current generations its media may carry (the mirror's, and the last confirmed one). */
  readonly currents: ReadonlySet<string>;
}

/** What judging needs of the mirror. */
export interface JudgeHost {
  info(): BlockInfo;
  /** What every leg must offer (layout.ts). */
  legNeeds(): BlockInfo;
  readonly chunks: number;
  readonly chunkSize: number;
  readonly bits: ChunkBits;
  readonly gen: GenerationStamps;
  readonly logger: Logger;
  readonly down: DownRecord | undefined;
  inSyncCount(): number;
  timed<T>(leg: Leg, op: Promise<T>): Promise<T>;
}

/** What was read off a returning leg. */
export type JudgeFacts =
  | { readonly kind: "media"; readonly state: MediaState; readonly own: ChunkBits | undefined }
  /** A leg without media answered a probe read. */
  | { readonly kind: "answers" }
  | { readonly kind: "unreachable"; readonly why: string };

/** Why `leg` cannot serve a mirror promising `info`, or undefined when it can. */
export function unfit(
  info: BlockInfo,
  leg: BlockInfo,
  chunks: number,
  known: MediaState | undefined,
): string | undefined {
  const short = shortfall(leg, info);
  if (short !== undefined) return short;
  const needed = bitmapBytesFor(chunks);
  if (known !== undefined && known.bitmapBytes < needed) {
    return `its media keeps ${known.bitmapBytes} bytes of write-intent bitmap and this mirror ` +
      `needs ${needed} (${chunks} chunks): use a larger chunkSize, or recreate the media with ` +
      `this dst (its bitmap region fits any chunk size)`;
  }
  return undefined;
}

/** Reads what judging `leg` needs: its media state and own bitmap, or a probe read. */
export async function readFacts(host: JudgeHost, leg: Leg): Promise<JudgeFacts> {
  try {
    if (leg.media === undefined) {
      await host.timed(leg, leg.device.read(0, Math.min(4096, host.info().size)));
      return { kind: "answers" };
    }
    const state = await host.timed(leg, leg.media.media());
    const own = await loadBits(host, leg, state);
    // A rotation started while the mirror was down stamps no leg; let it end first, so the
    // generations the verdict compares with are the ones the serving legs will carry.
    if (host.down?.leg === leg) {
      for (let p = host.gen.pending; p !== undefined; p = host.gen.pending) {
        await p.catch(() => {});
      }
    }
    return { kind: "media", state, own };
  } catch (error) {
    return { kind: "unreachable", why: `unreachable: ${describe(error)}` };
  }
}

/**
 * The leg's stored bitmap, in this mirror's chunks (undefined when it keeps none; every chunk
 * when it cannot be read).
 */
export async function loadBits(
  host: Pick<JudgeHost, "info" | "chunks" | "chunkSize" | "logger" | "timed">,
  leg: Leg,
  state: MediaState,
): Promise<ChunkBits | undefined> {
  if (leg.media === undefined || !isMember(state, undefined)) return undefined;
  try {
    const raw = await host.timed(leg, leg.media.readBitmap());
    const stored = bitmapChunkOf(state.flags) ?? host.chunkSize;
    const bits = new ChunkBits(Math.ceil(host.info().size / stored), raw);
    return stored === host.chunkSize
      ? new ChunkBits(host.chunks, bits.bytes)
      : rechunk(bits, stored, host.chunkSize, host.chunks);
  } catch (error) {
    // What it marks is not known: every chunk may differ (never none, which loses the chunks
    // only this leg's bitmap marked, the writes the others missed).
    host.logger.log("warn", "cannot read a leg's bitmap: taking every chunk as marked", {
      leg: leg.name,
      error: describe(error),
    });
    return ChunkBits.full(host.chunks);
  }
}

/**
 * The verdict on a returning leg, from what was read off it and the mirror as it is now.
 * Synchronous: the caller dispatches it in the same turn.
 */
export function decideVerdict(host: JudgeHost, leg: Leg, facts: JudgeFacts): Verdict {
  if (facts.kind === "unreachable") return { kind: "out", why: facts.why };
  const problem = unfit(
    host.legNeeds(),
    leg.device.info(),
    host.chunks,
    facts.kind === "media" ? facts.state : undefined,
  );
  if (problem !== undefined) return { kind: "out", why: `refused: ${problem}` };
  // Without media nothing tells what the leg holds: copy everything.
  if (facts.kind === "answers") {
    return { kind: "resync", need: ChunkBits.full(host.chunks), adopt: false };
  }
  const { state, own } = facts;
  const down = host.down;
  if (down?.leg === leg && host.inSyncCount() === 0) {
    if (
      down.currents.has(state.generations.current) && !isInconsistent(state) &&
      isMember(state, host.gen.storageId)
    ) {
      return { kind: "readmit" };
    }
    host.logger.log("warn", "the last in-sync leg answers with other media: not taken back", {
      leg: leg.name,
      generation: state.generations.current,
    });
  }
  if (host.gen.current === undefined) {
    // No reference generations and no leg serving: a split brain is unresolved.
    if (host.inSyncCount() === 0) {
      return { kind: "out", why: "waiting: no leg serves to judge it against" };
    }
    // Legs serve but keep no media (linears, storages): nothing tells what it holds.
    return { kind: "resync", need: ChunkBits.full(host.chunks), adopt: true };
  }
  if (leg.adopt || !isMember(state, host.gen.storageId)) {
    host.logger.log("warn", "leg's media lacks the storage's age: resyncing it in full", {
      leg: leg.name,
      storageId: state.storageId ?? null,
    });
    return { kind: "resync", need: ChunkBits.full(host.chunks), adopt: true };
  }
  const d = decide(host.gen.current, state.generations);
  // A resync target (its media say inconsistent) holds a copy under construction: a rotation
  // stamped on it and not on the serving legs (their stamp hung) makes it look newer, yet
  // every acknowledged write is on the serving legs. It is copied in full, not refused.
  if (d.kind === "newer" && isInconsistent(state)) {
    return { kind: "resync", need: ChunkBits.full(host.chunks), adopt: false };
  }
  if (d.kind === "newer" || d.kind === "split-brain" || d.kind === "unrelated") {
    return { kind: "refuse", why: d.why };
  }
  if (d.kind === "full") {
    return { kind: "resync", need: ChunkBits.full(host.chunks), adopt: false };
  }
  // Same or an ancestor: what it missed while out, what its own bitmap marks (a resync of it
  // that was cut short), and what the serving legs' bitmap marks (writes cut short).
  const need = leg.need?.copy() ?? host.bits.copy();
  if (own !== undefined) need.or(own);
  return { kind: "resync", need, adopt: false };
}
