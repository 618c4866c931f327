/**
 * dst: distributed block storage. The library behind the `dst` command: the actor runtime,
 * block actors (nodes, remote proxies, mappings), transports, the NBD edge and storage assembly.
 *
 * @example
 * ```ts
 * import { ActorSystem, LinearMapping, MemoryBlockDevice, spawnMirror } from "./mod.ts";
 *
 * const system = new ActorSystem({ node: "example" });
 * const mirror = await spawnMirror(system, [
 *   new MemoryBlockDevice({ size: 1 << 20 }),
 *   new MemoryBlockDevice({ size: 1 << 20 }),
 * ]);
 * const storage = new LinearMapping([mirror.device, new MemoryBlockDevice({ size: 1 << 20 })]);
 * await storage.write(0, new Uint8Array(4096).fill(7), true);
 * console.assert((await storage.read(0, 4096))[0] === 7);
 * await storage.close();
 * await system.shutdown();
 * ```
 * @module
 */
export * from "./actors/runtime/mod.ts";
export * from "./actors/block/mod.ts";
export { LinearMapping } from "./actors/linear/linear.ts";
export {
  type LegStatus,
  type Mirror,
  type MirrorActorOptions,
  spawnMirror,
} from "./actors/mirror/mod.ts";
export { RemoteNode, type RemoteNodeOptions } from "./actors/node/proxy.ts";
export { type NodeServer, serveNode } from "./actors/node/server.ts";
export * from "./transport/mod.ts";
export * from "./nbd/mod.ts";
export { assemble, type Storage } from "./storage/assemble.ts";
export { loadTopology, parseTopology, type Topology, TopologyError } from "./storage/topology.ts";
export { statusApp } from "./status/app.ts";
