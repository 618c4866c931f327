/**
 * A throwaway etcd for tests and drills: Debian's `etcd` on loopback (or inside a network
 * namespace) with a temporary data folder and free ports, ready once it reports healthy, and
 * stopped (folder removed) by `stop`.
 */

export interface EtcdServer {
  /** The address `dst serve --cluster` takes: etcd://HOST:PORT. */
  readonly url: string;
  /** Client endpoints for the etcd3 client. */
  readonly hosts: readonly string[];
  /** Stops etcd and removes its data folder. */
  stop(): Promise<void>;
}

export interface EtcdOptions {
  /** The address to listen on (default 127.0.0.1). */
  readonly host?: string;
  /** Client and peer ports (default: free ones on this machine). */
  readonly ports?: readonly [number, number];
  /** Run inside this network namespace (`ip netns exec`). */
  readonly ns?: string;
  /** How long to wait for etcd to be healthy (default 20 s). */
  readonly readyMs?: number;
}

/** Why etcd cannot run here (the binary is missing), or undefined. */
export function etcdMissing(): string | undefined {
  const found = Deno.env.get("PATH")?.split(":").some((dir) => {
    try {
      return Deno.statSync(`${dir}/etcd`).isFile;
    } catch {
      return false;
    }
  });
  return found ? undefined : "etcd is not installed (Debian package etcd-server)";
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function healthy(client: string, ns: string | undefined): Promise<boolean> {
  try {
    if (ns !== undefined) {
      const out = await new Deno.Command("ip", {
        args: ["netns", "exec", ns, "curl", "-s", "-m", "1", `${client}/health`],
        stdout: "piped",
        stderr: "null",
      }).output();
      return new TextDecoder().decode(out.stdout).includes('"health":"true"');
    }
    const res = await fetch(`${client}/health`, { signal: AbortSignal.timeout(1000) });
    return (await res.text()).includes('"health":"true"');
  } catch {
    return false;
  }
}

export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdServer> {
  const host = options.host ?? "127.0.0.1";
  const [clientPort, peerPort] = options.ports ?? [freePort(), freePort()];
  const dir = await Deno.makeTempDir({ prefix: "dst-etcd-" });
  // Listening on every address (in a namespace of its own), it is advertised and probed on
  // that namespace's loopback.
  const near = host === "0.0.0.0" ? "127.0.0.1" : host;
  const client = `http://${near}:${clientPort}`;
  const peer = `http://${near}:${peerPort}`;
  const args = [
    "--name=dst",
    `--data-dir=${dir}/data`,
    `--listen-client-urls=http://${host}:${clientPort}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=http://${host}:${peerPort}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=dst=${peer}`,
    "--logger=zap",
    "--log-level=error",
  ];
  const [cmd, ...rest] = options.ns === undefined
    ? ["etcd", ...args]
    : ["ip", "netns", "exec", options.ns, "etcd", ...args];
  const child = new Deno.Command(cmd!, {
    args: rest,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let exited = false;
  void child.status.then(() => (exited = true));
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    const killer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 5000);
    await child.status;
    clearTimeout(killer);
    await stderr.catch(() => "");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const end = Date.now() + (options.readyMs ?? 20_000);
  while (!(await healthy(client, options.ns))) {
    if (exited || Date.now() > end) {
      await stop();
      throw new Error(
        `etcd did not become healthy on ${client}${exited ? " (it exited)" : ""}: ${
          (await stderr.catch(() => "")).slice(-1500)
        }`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url: `etcd://${near}:${clientPort}`, hosts: [client], stop };
}
