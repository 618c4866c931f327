/** The transport layer's public pieces: links, dial/serve, the four media and the frame codec. */

export type {
  Duplex,
  Frame,
  Header,
  Hello,
  Link,
  LinkClosed,
  Listener,
  Transport,
} from "./types.ts";
export { CONTROL_TYPES, FramedLink, LinkRefused, LinkSendError, openLink } from "./link.ts";
export type { LinkOptions, Role } from "./link.ts";
export { LINK_PROTOCOL_VERSION } from "./handshake.ts";
export { dial, serve, transportFor } from "./dial.ts";
export type { DialOptions, ServeOptions, Server } from "./dial.ts";
export {
  decodeHeader,
  DEFAULT_MAX_PAYLOAD_BYTES,
  encodeFrame,
  FrameError,
  FrameReader,
  MAX_HEADER_BYTES,
} from "./frame.ts";
export { TcpTransport, tcpTransport } from "./tcp.ts";
export { UnixTransport, unixTransport } from "./unix.ts";
export { QUIC_ALPN, QuicTransport } from "./quic.ts";
export type { QuicTlsOptions } from "./quic.ts";
export {
  ConnectionResetError,
  defaultMemoryNetwork,
  MemoryNetwork,
  MemoryTransport,
  noFaults,
} from "./memory.ts";
export type { Faults, MemoryNetworkOptions } from "./memory.ts";
