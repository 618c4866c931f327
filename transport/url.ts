/** Parsing of transport URLs (`tcp://HOST:PORT`, `unix:///PATH`, ...), with errors a user can act on. */

/** Host and port of `SCHEME://HOST:PORT`; IPv6 hosts come without brackets. */
export function parseHostPort(url: string, scheme: string): { hostname: string; port: number } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`invalid ${scheme} URL "${url}": expected ${scheme}://HOST:PORT`);
  }
  if (parsed.protocol !== `${scheme}:`) {
    throw new Error(`invalid ${scheme} URL "${url}": expected ${scheme}://HOST:PORT`);
  }
  const port = Number(parsed.port);
  if (parsed.hostname === "" || parsed.port === "" || !Number.isInteger(port) || port > 65535) {
    throw new Error(
      `invalid ${scheme} URL "${url}": expected ${scheme}://HOST:PORT (port 0-65535)`,
    );
  }
  const hostname = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  return { hostname, port };
}

/** `SCHEME://HOST:PORT`, bracketing IPv6 hosts. */
export function formatHostPort(scheme: string, hostname: string, port: number): string {
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return `${scheme}://${host}:${port}`;
}

/** The part after `SCHEME://` (a path for unix, a name for mem). */
export function afterScheme(url: string, scheme: string): string {
  const prefix = `${scheme}://`;
  if (!url.startsWith(prefix) || url.length === prefix.length) {
    throw new Error(
      `invalid ${scheme} URL "${url}": expected ${prefix}${scheme === "unix" ? "/PATH" : "NAME"}`,
    );
  }
  return url.slice(prefix.length);
}

/** The scheme of a URL, without the colon. */
export function schemeOf(url: string): string {
  const at = url.indexOf("://");
  if (at <= 0) throw new Error(`invalid transport URL "${url}": expected SCHEME://ADDRESS`);
  return url.slice(0, at);
}
