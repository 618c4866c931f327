/**
 * A leaf node process: the real file media (`FileBlockDevice`) on a simulated disk, served by
 * the real node server over the simulated network, as `dst node` does. It crashes (its disk
 * loses what was not synced), restarts from its media, or gets new, empty media.
 */
import type { MediaDevice, MediaState } from "../actors/block/contract.ts";
import { FileBlockDevice } from "../actors/block/file.ts";
import { guard } from "../actors/block/guard.ts";
import { MediaError } from "../actors/block/media.ts";
import { type NodeServer, serveNode } from "../actors/node/server.ts";
import { SimDisk } from "./disk.ts";
import type { SimHost } from "./host.ts";
import type { SimProcess } from "./process.ts";
import type { LeafSpec } from "./topology.ts";
import { drawDiskProfile } from "./profiles.ts";

export type ProcessState = "down" | "starting" | "up";

export class LeafNode {
  readonly disk: SimDisk;
  state: ProcessState = "down";
  /** Restarts and crashes so far. */
  incarnation = 0;
  #proc: SimProcess | undefined;
  #server: NodeServer | undefined;
  /** Set once a format finished: its media must open from then on. */
  #formatted = false;

  constructor(readonly host: SimHost, readonly spec: LeafSpec) {
    const rng = host.rng(`disk:${spec.id}`);
    this.disk = new SimDisk(spec.id, drawDiskProfile(rng), rng, 1024 * 1024);
  }

  get id(): string {
    return this.spec.id;
  }

  get url(): string {
    return `mem://${this.spec.id}`;
  }

  /** Opens (or formats) the media and serves it; a failure to open formatted media is a bug. */
  async start(): Promise<void> {
    if (this.state !== "down") return;
    const proc = this.host.process(this.id);
    this.#proc = proc;
    this.state = "starting";
    this.incarnation++;
    const raw = this.disk.open(proc.clock);
    let device: FileBlockDevice;
    try {
      device = await FileBlockDevice.open({ path: raw.path, raw });
    } catch (error) {
      if (!proc.alive) return;
      if (this.#formatted || !(error instanceof MediaError)) {
        this.host.fail(`${this.id}: its media no longer opens: ${(error as Error).message}`);
        proc.kill();
        this.state = "down";
        return;
      }
      // Never formatted to the end (new media, or a crash during the format): format it.
      try {
        device = await FileBlockDevice.create({
          path: raw.path,
          raw: this.disk.open(proc.clock), // the failed open closed its handle
          size: this.spec.size,
          random: proc.random,
          overwrite: true,
        });
      } catch (e) {
        if (proc.alive) this.host.fail(`${this.id}: formatting failed: ${(e as Error).message}`);
        return;
      }
      if (!proc.alive) return;
      this.#formatted = true;
    }
    if (!proc.alive) return;
    try {
      this.#server = await serveNode(this.url, guard(device), {
        node: this.id,
        storageId: device.meta.storageId,
        media: traced(device, (state) => {
          if (!proc.alive) return;
          this.host.stamped(this.id, state);
          this.host.trace.event(
            `${this.id} media now ${JSON.stringify({ ...state, outdated: state.outdated.length })}`,
          );
        }),
        secret: this.host.secret,
        transports: [proc.transport],
        clock: proc.clock,
        logger: proc.logger,
      });
    } catch (error) {
      if (proc.alive) this.host.fail(`${this.id}: cannot serve: ${(error as Error).message}`);
      return;
    }
    if (proc.alive) this.state = "up";
  }

  /** The process (and its machine) dies: unsynced writes may be lost, a header may tear. */
  crash(): void {
    this.#proc?.kill();
    this.#proc = undefined;
    this.#server = undefined;
    this.disk.crash();
    this.state = "down";
  }

  /** The process dies and its media is replaced by new, empty media. */
  replace(): void {
    this.#proc?.kill();
    this.#proc = undefined;
    this.#server = undefined;
    this.disk.replace();
    this.#formatted = false;
    this.state = "down";
  }
}

/** The node's media operations, with every metadata change written into the trace. */
function traced(media: MediaDevice, note: (state: MediaState) => void): MediaDevice {
  return {
    media: () => media.media(),
    updateMedia: async (patch) => {
      const state = await media.updateMedia(patch);
      note(state);
      return state;
    },
    readBitmap: () => media.readBitmap(),
    storeBitmap: (at, bytes) => media.storeBitmap(at, bytes),
    digest: (offset, length, chunk) => media.digest(offset, length, chunk),
  };
}
