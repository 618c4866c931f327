/**
 * The administrator's actions on a serving mirror: suspend and resume a leg, declare one clean
 * or dirty, add or remove a leg, verify. Each is an event through the mirror's one transition
 * function (or, for add and remove, a change of the leg list made by the core); an action that
 * cannot be done is refused with what to do instead, never half done.
 */
import type { BlockDevice, MediaDevice } from "../block/contract.ts";
import { ChunkBits } from "./chunk_bits.ts";
import { ControlRefused, type MirrorCore } from "./core.ts";
import { describe } from "./errors.ts";
import { unfit } from "./judge.ts";
import type { LegEvent } from "./leg_machine.ts";
import { verify, type VerifyReport } from "./verify.ts";

export type MirrorAction =
  | { readonly action: "suspend"; readonly leg: string }
  | { readonly action: "resume"; readonly leg: string }
  | { readonly action: "clean"; readonly leg: string; readonly force: boolean }
  | { readonly action: "dirty"; readonly leg: string }
  | {
    readonly action: "add-leg";
    readonly leg: string;
    readonly device: BlockDevice;
    readonly media: MediaDevice | undefined;
  }
  | { readonly action: "remove-leg"; readonly leg: string }
  | { readonly action: "verify"; readonly repairFrom?: string };

export interface ActionDone {
  readonly message: string;
  readonly verify?: VerifyReport;
}

/** Carries out `action`; rejects with ControlRefused when it cannot be done. */
export async function act(core: MirrorCore, action: MirrorAction): Promise<ActionDone> {
  switch (action.action) {
    case "suspend":
      return event(core, action.leg, { t: "suspend" }, "suspended", "already suspended");
    case "resume":
      return event(core, action.leg, { t: "resume" }, "resumed: judging it", "not suspended");
    case "dirty":
      return event(core, action.leg, { t: "dirty" }, "marked dirty: full resync", "");
    case "clean":
      // With the whole device locked no write is in flight: a write that began while the leg
      // was out cannot record a miss on it after it is in sync.
      core.leg(action.leg);
      return await core.lock(0, core.size, () =>
        Promise.resolve(
          event(
            core,
            action.leg,
            { t: "clean", force: action.force },
            "marked clean",
            "already in sync",
          ),
        ));
    case "add-leg":
      if (core.layout.fixedLegs !== undefined) throw new ControlRefused(core.layout.fixedLegs);
      return await addLeg(core, action.leg, action.device, action.media);
    case "remove-leg": {
      const leg = core.leg(action.leg);
      if (core.layout.fixedLegs !== undefined) throw new ControlRefused(core.layout.fixedLegs);
      if (core.down?.leg === leg && core.inSyncCount() === 0) {
        throw new ControlRefused(
          `${action.leg}: it was the last leg in sync when the mirror went down and is the only ` +
            "one known to hold every acknowledged write; bring it back (it is taken back by " +
            "itself) before removing it",
        );
      }
      const done = event(core, action.leg, { t: "remove" }, "removed", "");
      core.legs.splice(core.legs.findIndex((l) => l.name === action.leg), 1);
      if (core.bitmap.recompute() && core.persist) void core.bitmap.store().catch(() => {});
      return done;
    }
    case "verify": {
      if (core.layout.verify !== undefined) {
        return await core.layout.verify(core, action.repairFrom);
      }
      const report = await verify(core, action.repairFrom);
      return { message: verifyMessage(report), verify: report };
    }
  }
}

function event(
  core: MirrorCore,
  name: string,
  e: LegEvent,
  done: string,
  already: string,
): ActionDone {
  const leg = core.leg(name);
  const outcome = core.dispatch(leg, e);
  if (outcome.kind === "refuse") throw new ControlRefused(`${name}: ${outcome.why}`);
  return {
    message: outcome.kind === "ignore" ? `${name} is ${already || leg.state}` : `${name} ${done}`,
  };
}

/** Adds a leg while serving: its media is forgotten and it is resynced in full before it is read. */
async function addLeg(
  core: MirrorCore,
  name: string,
  device: BlockDevice,
  media: MediaDevice | undefined,
): Promise<ActionDone> {
  if (core.legs.some((l) => l.name === name)) {
    throw new ControlRefused(`the mirror already has a leg named "${name}"`);
  }
  if (core.inSyncCount() === 0) {
    throw new ControlRefused("no leg is in sync to copy the new leg from");
  }
  const known = media === undefined ? undefined : await media.media().catch((error) => {
    throw new ControlRefused(`${name}: its media cannot be read: ${describe(error)}`);
  });
  const problem = unfit(core.legNeeds(), device.info(), core.chunks, known);
  if (problem !== undefined) {
    throw new ControlRefused(`${name} cannot join this mirror: ${problem}`);
  }
  if (core.legs.some((l) => l.name === name)) {
    throw new ControlRefused(`the mirror already has a leg named "${name}"`);
  }
  const leg = core.newLeg(name, device, media);
  leg.known = known;
  leg.need = ChunkBits.full(core.chunks);
  core.bitmap.setAll(leg.need);
  core.legs.push(leg);
  const outcome = core.dispatch(leg, { t: "dirty" });
  if (outcome.kind !== "move") {
    core.legs.pop();
    throw new ControlRefused(
      `${name} cannot join: ${outcome.kind === "refuse" ? outcome.why : "no move"}`,
    );
  }
  return { message: `${name} added: full resync` };
}

function verifyMessage(r: VerifyReport): string {
  if (r.mismatchedChunks === 0) return `verified ${r.chunksCompared} chunk(s): the legs agree`;
  const repaired = Object.entries(r.repairedBytes).map(([leg, b]) => `${leg} ${b} bytes`);
  return `verify found ${r.mismatchedChunks} chunk(s) (${r.mismatchedBytes} bytes) differing` +
    (repaired.length > 0 ? `; repairing ${repaired.join(", ")}` : "") +
    (r.unresolvedBytes > 0
      ? `; ${r.unresolvedBytes} bytes with no majority were not repaired: name the leg to trust ` +
        "with --repair-from LEG"
      : "");
}
