/**
 * Transport benchmark: per medium, round trips per second for a 4 KiB request/reply at 1 and 32 in
 * flight, and MB/s for 1 MiB payloads (echoed), beside a bare socket echo of the same sizes (plain
 * Deno.connect TCP and Unix, no framing) measured in the same run. Prints a table with ratios.
 *
 *   deno task bench:transport [--seconds=1.5] [--only=tcp,unix]
 */

import { dial, serve } from "../transport/dial.ts";
import type { DialOptions, Server } from "../transport/dial.ts";
import { MemoryNetwork, MemoryTransport } from "../transport/memory.ts";
import { makeTestCerts } from "../transport/testing/certs.ts";
import type { Link } from "../transport/types.ts";

const args = new Map(
  Deno.args.filter((a) => a.startsWith("--")).map((a) => {
    const [k, v = ""] = a.slice(2).split("=");
    return [k!, v] as const;
  }),
);
const seconds = Number(args.get("seconds") ?? "1.5");
const only = args.get("only")?.split(",");
const KIB4 = 4096;
const MIB = 1 << 20;

interface Row {
  name: string;
  rt1: number;
  rt32: number;
  mbps: number;
}

/** The three measurements of one request/reply driver. */
interface Driver {
  /** Completes `depth` outstanding echoes of `size` bytes for about `ms`; returns echoes. */
  run(size: number, depth: number, ms: number): Promise<{ echoes: number; ms: number }>;
  close(): Promise<void>;
}

/** Something to measure: opens drivers (one connection each) and stops its server. */
interface Endpoint {
  connect(): Promise<Driver>;
  close(): Promise<void>;
}

async function measure(name: string, endpoint: Endpoint): Promise<Row> {
  const ms = seconds * 1000;
  const one = async (size: number, depth: number) => {
    const d = await endpoint.connect();
    try {
      await d.run(size, depth, 100); // warm up
      const { echoes, ms: took } = await d.run(size, depth, ms);
      return echoes / (took / 1000);
    } finally {
      await d.close();
    }
  };
  const rt1 = await one(KIB4, 1);
  const rt32 = await one(KIB4, 32);
  const mbps = (await one(MIB, 4)) * MIB / 1e6;
  await endpoint.close();
  const row = { name, rt1, rt32, mbps };
  console.error(
    `  ${name}: ${rt1.toFixed(0)} rt/s, ${rt32.toFixed(0)} rt/s @32, ${mbps.toFixed(0)} MB/s`,
  );
  return row;
}

// ---- framed links ----

async function linkEndpoint(url: string, options: Partial<DialOptions>): Promise<Endpoint> {
  const hello = { version: 1, node: "bench-server", info: {} };
  const server: Server = await serve(url, { ...options, hello, keepAliveMs: 0 }, (link) => {
    link.receive((frame) => link.send({ t: "reply", id: frame.header.id }, frame.payload));
  });
  return { connect, close: () => server.close() };
  async function connect(): Promise<Driver> {
    const link: Link = await dial(server.url, {
      ...options,
      hello: { version: 1, node: "bench-client", info: {} },
      keepAliveMs: 0,
    });
    let onReply: () => void = () => {};
    link.receive(() => onReply());
    return {
      run(size, depth, ms) {
        const payload = new Uint8Array(size).fill(7);
        let id = 0;
        let echoes = 0;
        let inFlight = 0;
        const start = performance.now();
        const end = start + ms;
        return new Promise((resolve) => {
          onReply = () => {
            echoes++;
            inFlight--;
            if (performance.now() < end) {
              link.send({ t: "req", id: id++ }, payload);
              inFlight++;
            } else if (inFlight === 0) {
              resolve({ echoes, ms: performance.now() - start });
            }
          };
          for (let i = 0; i < depth; i++, inFlight++) link.send({ t: "req", id: id++ }, payload);
        });
      },
      async close() {
        link.close("bench over");
        await link.closed;
      },
    };
  }
}

// ---- bare socket echo, no framing ----

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.length;) done += await conn.write(data.subarray(done));
}

/**
 * A bare echo. `batched` false is the plain client (one write per request); true coalesces all
 * new requests into one write, the most a client could get from the socket with no framing.
 */
function bareEndpoint(listener: Deno.Listener, batched: boolean): Endpoint {
  const serving = (async () => {
    for await (const conn of listener) {
      void (async () => {
        const buf = new Uint8Array(256 * 1024);
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            await writeAll(conn, buf.subarray(0, n));
          }
        } catch { /* client went away */ }
        conn.close();
      })();
    }
  })();
  const addr = listener.addr;
  return {
    async close() {
      listener.close();
      await serving.catch(() => {});
    },
    connect,
  };
  async function connect(): Promise<Driver> {
    const conn = addr.transport === "unix"
      ? await Deno.connect({ transport: "unix", path: (addr as Deno.UnixAddr).path })
      : await Deno.connect({ hostname: "127.0.0.1", port: (addr as Deno.NetAddr).port });
    if (addr.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
    return {
      async run(size, depth, ms) {
        const out = new Uint8Array(size * depth).fill(7);
        const into = new Uint8Array(256 * 1024);
        const message = out.subarray(0, size);
        const send = (count: number, after: Promise<void>) => {
          if (batched) return after.then(() => writeAll(conn, out.subarray(0, count * size)));
          for (let i = 0; i < count; i++) after = after.then(() => writeAll(conn, message));
          return after;
        };
        let writing = send(depth, Promise.resolve()); // the first `depth` requests
        let sent = depth;
        let received = 0;
        let completed = 0;
        const start = performance.now();
        const end = start + ms;
        while (completed < sent) {
          const n = await conn.read(into);
          if (n === null) throw new Error("bare echo server closed");
          received += n;
          const newly = Math.floor(received / size) - completed;
          completed += newly;
          if (newly > 0 && performance.now() < end) {
            writing = send(newly, writing);
            sent += newly;
          }
        }
        await writing;
        return { echoes: completed, ms: performance.now() - start };
      },
      close() {
        conn.close();
        return Promise.resolve();
      },
    };
  }
}

// ---- main ----

const want = (name: string) => only === undefined || only.includes(name);
const unixPath = (name: string) => `/tmp/dst-bench-${Deno.pid}-${name}.sock`;
const tcpListener = () => Deno.listen({ hostname: "127.0.0.1", port: 0 });
const unixListener = (name: string) => Deno.listen({ transport: "unix", path: unixPath(name) });

console.error(`transport bench: ${seconds} s per measurement`);
const bare = new Map<string, Row>();
const batched: Row[] = [];
const rows: Row[] = [];
if (want("tcp")) {
  bare.set("tcp", await measure("bare tcp", bareEndpoint(tcpListener(), false)));
  batched.push(await measure("bare tcp+", bareEndpoint(tcpListener(), true)));
  rows.push(await measure("tcp", await linkEndpoint("tcp://127.0.0.1:0", {})));
}
if (want("unix")) {
  bare.set("unix", await measure("bare unix", bareEndpoint(unixListener("bare"), false)));
  batched.push(await measure("bare unix+", bareEndpoint(unixListener("bare2"), true)));
  rows.push(await measure("unix", await linkEndpoint(`unix://${unixPath("link")}`, {})));
}
if (want("quic")) {
  const certs = await makeTestCerts();
  const tls = { cert: certs.cert, key: certs.key, caCerts: [certs.caCert] };
  rows.push(await measure("quic", await linkEndpoint("quic://127.0.0.1:0", { tls })));
}
if (want("mem")) {
  const transports = [new MemoryTransport(new MemoryNetwork())];
  rows.push(await measure("mem", await linkEndpoint("mem://bench", { transports })));
}

const ratio = (a: number, b: number | undefined) =>
  b === undefined ? "" : `${(100 * a / b).toFixed(0)}%`;
const cells = (row: Row, ref: Row | undefined) => [
  row.name,
  row.rt1.toFixed(0),
  ratio(row.rt1, ref?.rt1),
  row.rt32.toFixed(0),
  ratio(row.rt32, ref?.rt32),
  row.mbps.toFixed(0),
  ratio(row.mbps, ref?.mbps),
];
const widths = [11, 12, 8, 13, 8, 10, 8];
const line = (c: string[]) =>
  c.map((s, i) => (i === 0 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!))).join(" ");
console.log(
  line(["medium", "4KiB@1 rt/s", "vs bare", "4KiB@32 rt/s", "vs bare", "1MiB MB/s", "vs bare"]),
);
for (const row of [...bare.values(), ...batched]) console.log(line(cells(row, undefined)));
for (const row of rows) console.log(line(cells(row, bare.get(row.name) ?? bare.get("tcp"))));
console.log(
  "bare = plain socket echo, one write per request; bare+ = the same with every new request\n" +
    "coalesced into one write (an upper bound). quic and mem are compared with bare tcp.\n" +
    "Client and server run in this one process, as they do for the bare echo.",
);
