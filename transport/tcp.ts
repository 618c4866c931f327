/** TCP transport: `tcp://HOST:PORT` over Deno.connect/Deno.listen, with Nagle off. */

import { SocketDuplex, SocketListener } from "./socket.ts";
import type { Duplex, Listener, Transport } from "./types.ts";
import { formatHostPort, parseHostPort } from "./url.ts";

function describe(conn: Deno.Conn): string {
  const addr = conn.remoteAddr as Deno.NetAddr;
  return formatHostPort("tcp", addr.hostname, addr.port);
}

class TcpListener extends SocketListener {
  override wrap(conn: Deno.Conn): Duplex {
    (conn as Deno.TcpConn).setNoDelay(true);
    return super.wrap(conn);
  }
}

export class TcpTransport implements Transport {
  readonly scheme = "tcp";

  async connect(url: string, signal?: AbortSignal): Promise<Duplex> {
    const { hostname, port } = parseHostPort(url, "tcp");
    const conn = await Deno.connect(
      signal === undefined ? { hostname, port } : { hostname, port, signal },
    );
    conn.setNoDelay(true);
    return new SocketDuplex(conn, formatHostPort("tcp", hostname, port));
  }

  listen(url: string): Promise<Listener> {
    const { hostname, port } = parseHostPort(url, "tcp");
    const listener = Deno.listen({ hostname, port, transport: "tcp" });
    const real = formatHostPort("tcp", hostname, listener.addr.port);
    return Promise.resolve(new TcpListener(listener, real, describe));
  }
}

/** The shared TCP transport (it holds no state). */
export const tcpTransport: TcpTransport = new TcpTransport();
