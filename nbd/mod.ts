/** The NBD edge of dst: a server that exports any BlockDevice to NBD clients. */
export { clientUri, type ListenAddress, parseListenUrl } from "./address.ts";
export { blockSizes, type NbdExport, transmissionFlags } from "./export.ts";
export { type BoundListener, NbdServer, type NbdServerOptions } from "./server.ts";
