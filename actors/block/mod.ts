/** Block actors: the contract, its guard, local nodes (memory, file media) and actor hosting. */
export * from "./contract.ts";
export { guard, GuardedBlockDevice } from "./guard.ts";
export { MemoryBlockDevice } from "./memory.ts";
export { FileBlockDevice } from "./file.ts";
export { BlockClient, type BlockMessage, type BlockReply, spawnBlockActor } from "./actor.ts";
