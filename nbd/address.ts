/**
 * Listen addresses (`tcp://HOST:PORT`, `unix:///PATH`) and the NBD URIs clients use to reach an
 * export on them (`nbd://HOST:PORT/NAME`, `nbd+unix:///NAME?socket=PATH`; `nbds` with TLS).
 */

export type ListenAddress =
  | { readonly transport: "tcp"; readonly hostname: string; readonly port: number }
  | { readonly transport: "unix"; readonly path: string };

/** Parses a listen URL; throws a RangeError saying what is wrong. */
export function parseListenUrl(url: string): ListenAddress {
  if (url.startsWith("unix://")) {
    const path = decodeURIComponent(url.slice("unix://".length));
    if (!path.startsWith("/")) {
      throw new RangeError(`unix socket URL needs an absolute path (unix:///PATH), got ${url}`);
    }
    return { transport: "unix", path };
  }
  if (url.startsWith("tcp://")) {
    let parsed: URL;
    try {
      parsed = new URL(url.replace(/^tcp:/, "http:"));
    } catch {
      throw new RangeError(`bad TCP URL ${url}: expected tcp://HOST:PORT`);
    }
    // new URL drops the default port 80, so read the port from the text.
    const match = /:(\d+)\/?$/.exec(url);
    if (match === null) throw new RangeError(`TCP URL needs a port (tcp://HOST:PORT), got ${url}`);
    const port = Number(match[1]);
    if (port > 65535) throw new RangeError(`port ${port} is out of range in ${url}`);
    const hostname = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
    return { transport: "tcp", hostname, port };
  }
  throw new RangeError(`unsupported listen URL ${url}: use tcp://HOST:PORT or unix:///PATH`);
}

/**
 * The URI an NBD client (nbdinfo, qemu, nbdcopy) uses for `exportName` at `address`; with `tls`
 * the `nbds` scheme, which makes libnbd insist on TLS.
 */
export function clientUri(address: ListenAddress, exportName: string, tls = false): string {
  const name = encodeURIComponent(exportName);
  const scheme = tls ? "nbds" : "nbd";
  if (address.transport === "unix") {
    // Slashes stay readable: they are legal in a query string.
    const socket = encodeURIComponent(address.path).replaceAll("%2F", "/");
    return `${scheme}+unix:///${name}?socket=${socket}`;
  }
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
  return `${scheme}://${host}:${address.port}/${name}`;
}
