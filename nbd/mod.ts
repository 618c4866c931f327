/** The NBD edge of dst: a server that exports any BlockDevice to NBD clients. */
export { clientUri, type ListenAddress, parseListenUrl } from "./address.ts";
export { blockSizes, type NbdExport, transmissionFlags } from "./export.ts";
export { NBD_DEFAULTS, type NbdLimits } from "./limits.ts";
export {
  type BoundListener,
  NbdServer,
  type NbdServerOptions,
  type NbdServerStats,
} from "./server.ts";
export {
  loadNbdTls,
  NbdTls,
  type NbdTlsMaterial,
  TLS_MODES,
  TlsConfigError,
  type TlsMode,
} from "./tls.ts";
