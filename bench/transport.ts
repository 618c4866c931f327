/**
 * Transport benchmark: per medium, round trips per second for a 4 KiB request/reply at 1 and 32 in
 * flight, and MB/s for 1 MiB payloads (echoed), beside a bare socket echo of the same sizes (plain
 * Deno.connect TCP and Unix, no framing). Bare and framed runs alternate, each after a warm-up,
 * and the table shows the median of the repeats with the framed/bare ratio.
 *
 * The echo servers (bare and framed alike) run in a Worker, so client and server each get a core
 * as they would in two processes; `--server=inline` runs them on the client's thread instead.
 *
 *   deno task bench:transport [--seconds=2] [--repeats=3] [--only=tcp,unix,quic,mem]
 *                             [--what=rt1,rt32,mb] [--server=worker|inline] [--batched]
 *
 * This one file is both the driver and, in the Worker, the echo server.
 */

import { dial, serve } from "../transport/dial.ts";
import type { DialOptions, Server } from "../transport/dial.ts";
import { MemoryNetwork, MemoryTransport } from "../transport/memory.ts";
import type { QuicTlsOptions } from "../transport/quic.ts";
import { makeTestCerts } from "../tests/support/certs.ts";
import type { Frame, Link } from "../transport/types.ts";

const KIB4 = 4096;
const MIB = 1 << 20;
const WARM_UP_MS = 300;

/** What an echo server is: a bare socket echo or a framed link echo, on a URL. */
interface EchoSpec {
  readonly kind: "bare" | "link";
  /** Links: give frames back to the link once done (Link.recycle), or keep them (no reuse). */
  readonly recycle?: boolean;
  /** tcp://127.0.0.1:0, unix:///path, quic://127.0.0.1:0, mem://name. */
  readonly url: string;
  readonly tls?: QuicTlsOptions;
}

/** A running echo server: the URL to dial and a way to stop it. */
interface EchoServer {
  readonly url: string;
  close(): Promise<void>;
}

// ---- echo servers (run in the Worker, or inline) ----

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.length;) done += await conn.write(data.subarray(done));
}

function bareEcho(url: string): EchoServer {
  const unixPath = url.startsWith("unix://") ? url.slice("unix://".length) : undefined;
  const listener = unixPath === undefined
    ? Deno.listen({ hostname: "127.0.0.1", port: 0 })
    : Deno.listen({ transport: "unix", path: unixPath });
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    for await (const conn of listener) {
      if (unixPath === undefined) (conn as Deno.TcpConn).setNoDelay(true);
      conns.add(conn);
      void (async () => {
        const buf = new Uint8Array(256 * 1024);
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            await writeAll(conn, buf.subarray(0, n));
          }
        } catch { /* client went away */ }
        conns.delete(conn);
        conn.close();
      })();
    }
  })().catch(() => {});
  const real = unixPath === undefined
    ? `tcp://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`
    : url;
  return {
    url: real,
    async close() {
      listener.close();
      await serving;
      for (const conn of conns) conn.close();
      if (unixPath !== undefined) await Deno.remove(unixPath).catch(() => {});
    },
  };
}

async function linkEcho(
  url: string,
  recycle: boolean,
  options: Partial<DialOptions>,
): Promise<EchoServer> {
  const hello = { version: 1, node: "bench-server", info: {} };
  const server: Server = await serve(url, { ...options, hello, keepAliveMs: 0 }, (link) => {
    if (!recycle) {
      link.receive((frame) => link.send({ t: "reply", id: frame.header.id }, frame.payload));
      return;
    }
    // Each payload is sent back as is, so it is given back only once written: after a drain.
    let sent: Frame[] = [];
    let draining = false;
    const giveBack = () => {
      const written = sent;
      sent = [];
      draining = false;
      for (const frame of written) link.recycle(frame);
    };
    link.receive((frame) => {
      link.send({ t: "reply", id: frame.header.id }, frame.payload);
      sent.push(frame);
      if (!draining) {
        draining = true;
        link.drain().then(giveBack, () => {});
      }
    });
  });
  return { url: server.url, close: () => server.close() };
}

function startEcho(spec: EchoSpec, options: Partial<DialOptions> = {}): Promise<EchoServer> {
  if (spec.kind === "bare") return Promise.resolve(bareEcho(spec.url));
  const recycle = spec.recycle ?? true;
  return linkEcho(
    spec.url,
    recycle,
    spec.tls === undefined ? options : { ...options, tls: spec.tls },
  );
}

/** In the Worker: start the server a message asks for, answer with its URL, stop on request. */
function runWorker(): void {
  const scope = self as unknown as {
    onmessage: ((event: MessageEvent) => void) | null;
    postMessage(message: unknown): void;
    close(): void;
  };
  let server: EchoServer | undefined;
  scope.onmessage = async (event: MessageEvent) => {
    const message = event.data as { start?: EchoSpec; stop?: true };
    try {
      if (message.start !== undefined) {
        server = await startEcho(message.start);
        scope.postMessage({ url: server.url });
      } else if (message.stop !== undefined) {
        await server?.close();
        scope.postMessage({ stopped: true });
        scope.close();
      }
    } catch (error) {
      scope.postMessage({ error: (error as Error).message });
    }
  };
}

/** Starts an echo server in a fresh Worker. */
async function startEchoWorker(spec: EchoSpec): Promise<EchoServer> {
  const worker = new Worker(import.meta.url, { type: "module", name: "transport-bench-echo" });
  const ask = (message: unknown) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      worker.onmessage = (event) => {
        const answer = event.data as Record<string, unknown>;
        if (typeof answer.error === "string") reject(new Error(answer.error));
        else resolve(answer);
      };
      worker.postMessage(message);
    });
  try {
    const { url } = await ask({ start: spec });
    return {
      url: url as string,
      async close() {
        await ask({ stop: true }).catch(() => {});
        worker.terminate();
      },
    };
  } catch (error) {
    worker.terminate();
    throw error;
  }
}

// ---- clients ----

/** One connection that runs echoes. */
interface Driver {
  /** Keeps `depth` echoes of `size` bytes outstanding for about `ms`; returns echoes done. */
  run(size: number, depth: number, ms: number): Promise<{ echoes: number; ms: number }>;
  close(): Promise<void>;
}

async function linkDriver(
  url: string,
  recycle: boolean,
  options: Partial<DialOptions>,
): Promise<Driver> {
  const link: Link = await dial(url, {
    ...options,
    hello: { version: 1, node: "bench-client", info: {} },
    keepAliveMs: 0,
  });
  let onReply: () => void = () => {};
  link.receive((frame) => {
    if (recycle) link.recycle(frame);
    onReply();
  });
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
          // Reading the clock per reply is cheap next to a round trip; check it every 8th.
          if ((echoes & 7) !== 0 || performance.now() < end) {
            link.send({ t: "req", id: id++ }, payload);
            inFlight++;
          } else if (inFlight === 0) {
            resolve({ echoes, ms: performance.now() - start });
          } else {
            onReply = () => {
              echoes++;
              if (--inFlight === 0) resolve({ echoes, ms: performance.now() - start });
            };
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

/**
 * A bare echo client: one write per request (`batched` coalesces all new requests into one
 * write, the most a client could get from the socket with no framing).
 */
async function bareDriver(url: string, batched: boolean): Promise<Driver> {
  const unix = url.startsWith("unix://");
  const conn = unix
    ? await Deno.connect({ transport: "unix", path: url.slice("unix://".length) })
    : await Deno.connect({ hostname: "127.0.0.1", port: Number(url.split(":").at(-1)) });
  if (!unix) (conn as Deno.TcpConn).setNoDelay(true);
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

// ---- measuring ----

interface Scenario {
  readonly key: "rt1" | "rt32" | "mb";
  readonly label: string;
  readonly size: number;
  readonly depth: number;
}

const SCENARIOS: readonly Scenario[] = [
  { key: "rt1", label: "4KiB@1 rt/s", size: KIB4, depth: 1 },
  { key: "rt32", label: "4KiB@32 rt/s", size: KIB4, depth: 32 },
  { key: "mb", label: "1MiB MB/s", size: MIB, depth: 4 },
];

/** A contestant: how to start its server and how to connect a driver to it. */
interface Contestant {
  readonly name: string;
  readonly spec: EchoSpec;
  readonly connect: (url: string) => Promise<Driver>;
  /** Runs its server on the client's thread whatever --server says (mem cannot cross). */
  readonly inline?: boolean;
  readonly serverOptions?: Partial<DialOptions>;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};

function main(): Promise<void> {
  const args = new Map(
    Deno.args.filter((a) => a.startsWith("--")).map((a) => {
      const [k, v = ""] = a.slice(2).split("=");
      return [k!, v] as const;
    }),
  );
  const seconds = Number(args.get("seconds") ?? "2");
  const repeats = Math.max(1, Number(args.get("repeats") ?? "3"));
  const only = args.get("only")?.split(",") ?? ["tcp", "unix", "quic", "mem"];
  const what = args.get("what")?.split(",") ?? SCENARIOS.map((s) => s.key);
  const inWorker = (args.get("server") ?? "worker") !== "inline";
  const withBatched = args.has("batched");
  const scenarios = SCENARIOS.filter((s) => what.includes(s.key));
  return run({ seconds, repeats, only, scenarios, inWorker, withBatched });
}

async function run(config: {
  seconds: number;
  repeats: number;
  only: string[];
  scenarios: readonly Scenario[];
  inWorker: boolean;
  withBatched: boolean;
}): Promise<void> {
  const { seconds, repeats, only, scenarios, inWorker, withBatched } = config;
  const unixPath = (name: string) => `/tmp/dst-bench-${Deno.pid}-${name}.sock`;
  /** Groups measured together, alternating: the first of each group is the reference. */
  const groups: Contestant[][] = [];
  for (const medium of ["tcp", "unix"]) {
    if (!only.includes(medium)) continue;
    const url = medium === "tcp" ? "tcp://127.0.0.1:0" : `unix://${unixPath("bare")}`;
    const group: Contestant[] = [
      { name: `bare ${medium}`, spec: { kind: "bare", url }, connect: (u) => bareDriver(u, false) },
    ];
    if (withBatched) {
      const url2 = medium === "tcp" ? url : `unix://${unixPath("bare2")}`;
      group.push({
        name: `bare ${medium}+`,
        spec: { kind: "bare", url: url2 },
        connect: (u) => bareDriver(u, true),
      });
    }
    const linkUrl = (name: string) => medium === "tcp" ? url : `unix://${unixPath(name)}`;
    group.push({
      name: `${medium} link`,
      spec: { kind: "link", url: linkUrl("link"), recycle: true },
      connect: (u) => linkDriver(u, true, {}),
    }, {
      name: `${medium} keep`,
      spec: { kind: "link", url: linkUrl("keep"), recycle: false },
      connect: (u) => linkDriver(u, false, {}),
    });
    groups.push(group);
  }
  if (only.includes("quic")) {
    const certs = await makeTestCerts();
    const tls = { cert: certs.cert, key: certs.key, caCerts: [certs.caCert] };
    groups.push([{
      name: "quic link",
      spec: { kind: "link", url: "quic://127.0.0.1:0", tls },
      connect: (u) => linkDriver(u, true, { tls }),
    }]);
  }
  if (only.includes("mem")) {
    const transports = [new MemoryTransport(new MemoryNetwork())];
    groups.push([{
      name: "mem link",
      spec: { kind: "link", url: "mem://bench" },
      connect: (u) => linkDriver(u, true, { transports }),
      inline: true,
      serverOptions: { transports },
    }]);
  }

  console.error(
    `transport bench: ${seconds} s per run after ${WARM_UP_MS} ms warm-up, median of ${repeats}, ` +
      `servers ${inWorker ? "in a Worker" : "inline"}`,
  );
  const results = new Map<string, Map<string, number>>();
  for (const group of groups) {
    for (const contestant of group) results.set(contestant.name, new Map());
    const servers = await Promise.all(
      group.map((c) =>
        inWorker && c.inline !== true ? startEchoWorker(c.spec) : startEcho(c.spec, c.serverOptions)
      ),
    );
    try {
      for (const scenario of scenarios) {
        const samples = group.map(() => [] as number[]);
        for (let r = 0; r < repeats; r++) {
          for (const [i, contestant] of group.entries()) {
            const driver = await contestant.connect(servers[i]!.url);
            try {
              await driver.run(scenario.size, scenario.depth, WARM_UP_MS);
              const { echoes, ms } = await driver.run(
                scenario.size,
                scenario.depth,
                seconds * 1000,
              );
              const perSecond = echoes / (ms / 1000);
              samples[i]!.push(scenario.key === "mb" ? perSecond * scenario.size / 1e6 : perSecond);
            } finally {
              await driver.close();
            }
          }
        }
        for (const [i, contestant] of group.entries()) {
          const value = median(samples[i]!);
          results.get(contestant.name)!.set(scenario.key, value);
          console.error(
            `  ${contestant.name} ${scenario.label}: ${value.toFixed(0)} ` +
              `(runs ${samples[i]!.map((v) => v.toFixed(0)).join(", ")})`,
          );
        }
      }
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  }

  const bareTcp = results.get("bare tcp");
  const referenceOf = (name: string) =>
    name.startsWith("unix")
      ? results.get("bare unix")
      : name.startsWith("bare")
      ? undefined
      : bareTcp;
  const widths = [11, ...scenarios.flatMap(() => [13, 8])];
  const line = (cells: string[]) =>
    cells.map((s, i) => (i === 0 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!))).join(" ");
  console.log(line(["medium", ...scenarios.flatMap((s) => [s.label, "vs bare"])]));
  for (const [name, values] of results) {
    const reference = referenceOf(name);
    console.log(line([
      name,
      ...scenarios.flatMap((s) => {
        const value = values.get(s.key)!;
        const ref = reference?.get(s.key);
        return [value.toFixed(0), ref === undefined ? "" : `${(100 * value / ref).toFixed(0)}%`];
      }),
    ]));
  }
  console.log(
    `median of ${repeats} alternating runs of ${seconds} s; servers ${
      inWorker ? "in a Worker (client and server on their own threads)" : "on the client's thread"
    }.\nbare = plain socket echo, one write per request${
      withBatched ? "; bare+ = every new request coalesced into one write" : ""
    }. quic and mem are compared with bare tcp.\n` +
      "link = both ends give frames back (Link.recycle) so buffers are reused; keep = receivers\n" +
      "keep every frame (fresh receive memory per frame, as a receiver that never recycles).",
  );
}

if ("WorkerGlobalScope" in globalThis) runWorker();
else await main();
