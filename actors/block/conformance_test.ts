/**
 * Runs the block conformance suite against every local block device: memory, file (both I/O
 * modes), the guard over each, and the guard over a device that can do nothing but read, write
 * and flush — which proves the guard's emulations meet the same contract.
 */
import { runBlockConformance } from "../../tests/support/block_conformance.ts";
import { type BlockDevice, BlockError, type BlockInfo, type Extent } from "./contract.ts";
import { FileBlockDevice } from "./file.ts";
import { guard } from "./guard.ts";
import { MemoryBlockDevice } from "./memory.ts";
import type { IoMode } from "./raw_file.ts";

const SIZE = 16 * 1024 * 1024;

/** Read, write and flush only: everything else must come from the guard. */
class BareDevice implements BlockDevice {
  readonly #inner: MemoryBlockDevice;
  readonly #info: BlockInfo;
  constructor(readOnly: boolean) {
    this.#inner = new MemoryBlockDevice({ size: SIZE, readOnly });
    this.#info = {
      ...this.#inner.info(),
      maxBlock: 256 * 1024,
      canFua: false,
      canTrim: false,
      canZero: false,
      canFastZero: false,
      canExtents: false,
      canCache: false,
    };
  }
  info(): BlockInfo {
    return this.#info;
  }
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.#inner.read(offset, length, into);
  }
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    if (fua) return Promise.reject(new BlockError("ENOTSUP", "no FUA here"));
    return this.#inner.write(offset, data, false);
  }
  flush(): Promise<void> {
    return this.#inner.flush();
  }
  trim(): Promise<void> {
    return Promise.reject(new BlockError("ENOTSUP", "no trim here"));
  }
  zero(): Promise<void> {
    return Promise.reject(new BlockError("ENOTSUP", "no zero here"));
  }
  extents(): Promise<Extent[]> {
    return Promise.reject(new BlockError("ENOTSUP", "no extents here"));
  }
  cache(): Promise<void> {
    return Promise.reject(new BlockError("ENOTSUP", "no cache here"));
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}

function fileFactory(io: IoMode, wrap: (d: BlockDevice) => BlockDevice) {
  return async ({ readOnly }: { readOnly: boolean }) => {
    const dir = await Deno.makeTempDir({ prefix: "dst-block-" });
    const path = `${dir}/node.img`;
    let device = await FileBlockDevice.create({ path, size: SIZE, io });
    const storageId = device.meta.storageId;
    if (readOnly) {
      await device.close();
      device = await FileBlockDevice.open({ path, readOnly: true, io });
    }
    return {
      device: wrap(device),
      reopen: async () => {
        await device.close();
        return wrap(await FileBlockDevice.open({ path, expectStorageId: storageId, io }));
      },
      dispose: () => Deno.remove(dir, { recursive: true }),
    };
  };
}

const asIs = (d: BlockDevice) => d;

runBlockConformance(
  "memory",
  ({ readOnly }) => Promise.resolve(new MemoryBlockDevice({ size: SIZE, readOnly })),
);
runBlockConformance(
  "guard(memory)",
  ({ readOnly }) => Promise.resolve(guard(new MemoryBlockDevice({ size: SIZE, readOnly }))),
);
runBlockConformance(
  "guard(bare)",
  ({ readOnly }) => Promise.resolve(guard(new BareDevice(readOnly))),
);
runBlockConformance("file(sync)", fileFactory("sync", asIs));
runBlockConformance("file(threaded)", fileFactory("threaded", asIs));
runBlockConformance("guard(file)", fileFactory("sync", guard));
