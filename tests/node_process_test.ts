/**
 * `dst node` as a real process: remote node proxies reach it over tcp, unix and quic and move
 * self-describing data; FUA-acknowledged writes survive a SIGKILL of the node; a proxy rides out a
 * node restart on its own; wrong secrets, media of another storage, a public address without a
 * secret and bad flags are all refused with a clear message.
 */
import assert from "node:assert/strict";
import { BlockError } from "../actors/block/contract.ts";
import { checkBlock, fillBlock } from "../drill/block_stamps.ts";
import { RemoteNode, type RemoteNodeOptions } from "../actors/node/proxy.ts";
import { makeTestCerts } from "./support/certs.ts";

const mainTs = new URL("../main.ts", import.meta.url).pathname;
const MiB = 1024 * 1024;
const BLOCK = 4096;
/** Fast reconnects, so restarts in these tests cost milliseconds, not seconds. */
const QUICK: Partial<RemoteNodeOptions> = {
  backoff: { initialMs: 20, maxMs: 150 },
  connectTimeoutMs: 5000,
};

interface NodeProcess {
  readonly url: string;
  /** What the node has written to stderr so far. */
  stderr(): string;
  /** Waits until stderr matches `pattern` (or fails after `ms`). */
  waitForLog(pattern: RegExp, ms?: number): Promise<void>;
  /** Sends `signal` (if still running) and waits for the exit; never throws. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

interface Exited {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function command(args: string[], env: Record<string, string>) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", "-A", mainTs, "node", ...args],
    // An empty DST_SECRET counts as none, so the test runner's environment cannot leak one in.
    env: { DST_SECRET: "", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs `dst node ARGS` to completion (for the cases that must refuse to start). */
async function runNode(args: string[], env: Record<string, string> = {}): Promise<Exited> {
  const child = command(args, env).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  try {
    const [status, stdout, stderr] = await Promise.all([
      child.status,
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    return { code: status.code, stdout, stderr };
  } finally {
    clearTimeout(killer);
  }
}

/** Starts `dst node ARGS` and resolves once it printed its ready line (the URL). */
async function spawnNode(args: string[], env: Record<string, string> = {}): Promise<NodeProcess> {
  const child = command(args, env).spawn();
  let err = "";
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) err += chunk;
  })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  try {
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
  } finally {
    clearTimeout(killer);
  }
  // Keep draining stdout so the node never blocks on a full pipe.
  const stdoutDone = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  let exited: Deno.CommandStatus | undefined;
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    if (exited !== undefined) return exited;
    try {
      child.kill(signal);
    } catch { /* already gone */ }
    const hard = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 15_000);
    exited = await child.status;
    clearTimeout(hard);
    await Promise.all([stdoutDone, stderrDone]);
    return exited;
  };
  const url = out.split("\n")[0]!.trim();
  if (!/^(tcp|unix|quic):\/\//.test(url)) {
    const status = await stop("SIGKILL");
    throw new Error(`dst node exited ${status.code} without a ready line:\n${out}\n${err}`);
  }
  return {
    url,
    stderr: () => err,
    async waitForLog(pattern, ms = 5000) {
      const deadline = Date.now() + ms;
      while (!pattern.test(err)) {
        if (Date.now() > deadline) assert.fail(`node never logged ${pattern}; stderr:\n${err}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    stop,
  };
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "dst-node-proc-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Writes self-describing blocks of several sizes concurrently, then reads each one back. */
async function roundTrip(remote: RemoteNode, writer: number): Promise<void> {
  const sizes = [BLOCK, 64 * 1024, MiB];
  const writes: { offset: number; length: number }[] = [];
  let offset = 0;
  for (let i = 0; i < 24; i++) {
    const length = sizes[i % sizes.length]!;
    writes.push({ offset, length });
    offset += length;
  }
  await Promise.all(writes.map(({ offset, length }, seq) => {
    const buf = new Uint8Array(length);
    fillBlock(buf, offset, writer, seq);
    return remote.write(offset, buf, seq % 4 === 0);
  }));
  await remote.flush();
  const reads = await Promise.all(writes.map(({ offset, length }) => remote.read(offset, length)));
  reads.forEach((buf, seq) => {
    const { offset } = writes[seq]!;
    const got = checkBlock(buf, offset);
    if (got instanceof Error) assert.fail(`block ${seq} at ${offset}: ${got.message}`);
    assert.deepEqual(got, { writer, seq });
  });
}

Deno.test("dst node: proxies read and write over tcp, unix and quic, learning the size", async () => {
  await withTempDir(async (dir) => {
    const certs = await makeTestCerts();
    await Deno.writeTextFile(`${dir}/cert.pem`, certs.cert);
    await Deno.writeTextFile(`${dir}/key.pem`, certs.key);
    await Deno.writeTextFile(`${dir}/ca.pem`, certs.caCert);
    await Deno.writeTextFile(`${dir}/secret`, "cluster-secret\n");
    const cases = [
      { listen: "tcp://127.0.0.1:0", extra: [], env: { DST_SECRET: "cluster-secret" } },
      { listen: `unix://${dir}/node.sock`, extra: ["--secret-file", `${dir}/secret`], env: {} },
      {
        listen: "quic://127.0.0.1:0",
        extra: ["--cert", `${dir}/cert.pem`, "--key", `${dir}/key.pem`, "--ca", `${dir}/ca.pem`],
        env: { DST_SECRET: "cluster-secret" },
      },
    ];
    // The three nodes start in parallel: process start-up dominates this test.
    const nodes = await Promise.allSettled(cases.map((c) =>
      spawnNode(
        ["--listen", c.listen, "--data", "memory:", "--size", "24M", "--id", "n1", ...c.extra],
        c.env,
      )
    ));
    try {
      for (const [i, started] of nodes.entries()) {
        if (started.status === "rejected") throw started.reason;
        const node = started.value;
        const scheme = cases[i]!.listen.split(":")[0]!;
        if (scheme === "tcp" || scheme === "quic") {
          assert.match(node.url, new RegExp(`^${scheme}://127\\.0\\.0\\.1:[1-9]\\d*$`));
        } else assert.equal(node.url, cases[i]!.listen);
        const remote = await RemoteNode.connect(node.url, {
          node: `proxy-${scheme}`,
          secret: "cluster-secret",
          tls: { caCerts: [certs.caCert] },
          ...QUICK,
        });
        try {
          assert.equal(remote.info().size, 24 * MiB, `${scheme}: size from the handshake`);
          assert.equal(remote.peer, "n1");
          assert.equal(remote.info().readOnly, false);
          await roundTrip(remote, i + 1).catch((error) => {
            throw new Error(`${scheme}: ${error}\nnode stderr:\n${node.stderr()}`);
          });
        } finally {
          await remote.close();
        }
        const status = await node.stop("SIGTERM");
        assert.equal(status.code, 0, `${scheme}: graceful stop\n${node.stderr()}`);
        assert.match(node.stderr(), /shutting down/);
      }
      await assert.rejects(() => Deno.lstat(`${dir}/node.sock`), Deno.errors.NotFound);
    } finally {
      for (const n of nodes) if (n.status === "fulfilled") await n.value.stop("SIGKILL");
    }
  });
});

Deno.test({
  name: "dst node: a request sent together with the handshake is served (quic, secret)",
  async fn() {
    await withTempDir(async (dir) => {
      const certs = await makeTestCerts();
      await Deno.writeTextFile(`${dir}/cert.pem`, certs.cert);
      await Deno.writeTextFile(`${dir}/key.pem`, certs.key);
      const node = await spawnNode([
        "--listen",
        "quic://127.0.0.1:0",
        "--data",
        "memory:",
        "--size",
        "4M",
        "--cert",
        `${dir}/cert.pem`,
        "--key",
        `${dir}/key.pem`,
      ], { DST_SECRET: "s" });
      try {
        const remote = await RemoteNode.connect(node.url, {
          node: "eager",
          secret: "s",
          tls: { caCerts: [certs.caCert] },
          requestTimeoutMs: 3000,
        });
        try {
          await remote.write(0, new Uint8Array(BLOCK), false);
          assert.doesNotMatch(node.stderr(), /receive handler threw/);
        } finally {
          await remote.close();
        }
      } finally {
        await node.stop("SIGKILL");
      }
    });
  },
});

Deno.test("dst node: read-only nodes refuse writes with EPERM and still serve reads", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/ro.img`;
    const args = ["--listen", `unix://${dir}/ro.sock`, "--data", path];
    // First a writable node puts data on the media, then a read-only one serves it.
    const writable = await spawnNode([...args, "--size", "8M"]);
    try {
      const remote = await RemoteNode.connect(writable.url, { node: "p", ...QUICK });
      const buf = new Uint8Array(BLOCK);
      fillBlock(buf, 0, 7, 1);
      await remote.write(0, buf, true);
      await remote.close();
    } finally {
      assert.equal((await writable.stop()).code, 0);
    }
    const node = await spawnNode([...args, "--read-only"]);
    try {
      const remote = await RemoteNode.connect(node.url, { node: "p", ...QUICK });
      try {
        assert.equal(remote.info().readOnly, true);
        await assert.rejects(
          () => remote.write(0, new Uint8Array(BLOCK), false),
          (e: unknown) => e instanceof BlockError && e.code === "EPERM",
        );
        assert.deepEqual(checkBlock(await remote.read(0, BLOCK), 0), { writer: 7, seq: 1 });
      } finally {
        await remote.close();
      }
    } finally {
      assert.equal((await node.stop()).code, 0);
    }
  });
});

Deno.test("dst node: every FUA-acknowledged write survives a SIGKILL of the node", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/crash.img`;
    const listen = `unix://${dir}/crash.sock`;
    let node = await spawnNode(["--listen", listen, "--data", path, "--size", "64M"]);
    let storageId: string | undefined;
    const acked: [number, number][] = [];
    try {
      const remote = await RemoteNode.connect(node.url, { node: "writer", ...QUICK });
      storageId = remote.storageId;
      assert.match(storageId ?? "", /^[0-9a-f]{32}$/);
      const blocks = remote.info().size / BLOCK;
      let next = 0;
      let killed = false;
      // 16 writers, each FUA block to a fresh offset; the node dies after 300 acknowledgements
      // with more still in flight.
      const worker = async () => {
        while (next < blocks) {
          const seq = next++;
          const offset = seq * BLOCK;
          const buf = new Uint8Array(BLOCK);
          fillBlock(buf, offset, 1, seq);
          try {
            await remote.write(offset, buf, true);
          } catch {
            return; // the proxy was closed after the kill
          }
          acked.push([offset, seq]);
          if (!killed && acked.length >= 300) {
            killed = true;
            const status = await node.stop("SIGKILL");
            assert.equal(status.signal, "SIGKILL");
            await remote.close(); // fails what was in flight: those were never acknowledged
          }
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      assert.ok(killed && acked.length >= 300, `acked ${acked.length}`);
      assert.ok(acked.length < blocks, "the node was killed mid-stream");
    } finally {
      await node.stop("SIGKILL");
    }
    // The media reopens (its metadata valid) for the same storage, and holds every acked block.
    node = await spawnNode(["--listen", listen, "--data", path, "--storage-id", storageId!]);
    try {
      const reader = await RemoteNode.connect(node.url, {
        node: "reader",
        expectStorageId: storageId!,
        ...QUICK,
      });
      try {
        const reads = await Promise.all(acked.map(([offset]) => reader.read(offset, BLOCK)));
        reads.forEach((buf, i) => {
          const [offset, seq] = acked[i]!;
          const got = checkBlock(buf, offset);
          if (got instanceof Error) assert.fail(`acknowledged seq ${seq} lost: ${got.message}`);
          assert.deepEqual(got, { writer: 1, seq });
        });
      } finally {
        await reader.close();
      }
    } finally {
      assert.equal((await node.stop()).code, 0, node.stderr());
    }
  });
});

Deno.test("dst node: a proxy reconnects by itself across a node restart; data intact", async () => {
  await withTempDir(async (dir) => {
    const args = ["--listen", `unix://${dir}/r.sock`, "--data", `${dir}/r.img`, "--size", "16M"];
    let node = await spawnNode(args);
    const states: string[] = [];
    const remote = await RemoteNode.connect(node.url, {
      node: "survivor",
      ...QUICK,
      onState: (s) => states.push(s),
    });
    try {
      const write = (index: number, seq: number) => {
        const buf = new Uint8Array(BLOCK);
        fillBlock(buf, index * BLOCK, 3, seq);
        return remote.write(index * BLOCK, buf, true);
      };
      await Promise.all(Array.from({ length: 32 }, (_, i) => write(i, i)));
      await node.stop("SIGKILL");

      // Issued while the node is down: it must wait, not fail, and complete after the restart.
      let settled = false;
      const late = write(100, 100).finally(() => (settled = true));
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(settled, false, "the write waited for the node");
      assert.equal(remote.state, "connecting");

      node = await spawnNode(args.slice(0, 4)); // same media, no --size: it is opened
      await late;
      assert.equal(remote.state, "connected");
      assert.ok(remote.stats.reconnects >= 1);
      assert.deepEqual(states.slice(0, 2), ["connecting", "connected"]);
      for (const index of [...Array.from({ length: 32 }, (_, i) => i), 100]) {
        const got = checkBlock(await remote.read(index * BLOCK, BLOCK), index * BLOCK);
        if (got instanceof Error) assert.fail(`block ${index}: ${got.message}`);
        assert.deepEqual(got, { writer: 3, seq: index });
      }
    } finally {
      await remote.close();
      await node.stop("SIGKILL");
    }
  });
});

Deno.test("dst node: a proxy with the wrong secret is refused, and the node says so", async () => {
  {
    const node = await spawnNode(
      ["--listen", "tcp://127.0.0.1:0", "--data", "memory:", "--size", "4M"],
      { DST_SECRET: "the-right-one" },
    );
    try {
      assert.doesNotMatch(node.stderr(), /no cluster secret/);
      await assert.rejects(
        () =>
          RemoteNode.connect(node.url, {
            node: "intruder",
            secret: "a-wrong-one",
            connectTimeoutMs: 600,
            backoff: { initialMs: 50, maxMs: 100 },
          }),
        /cannot reach node/,
      );
      await node.waitForLog(/link refused.*wrong secret/);
      await assert.rejects(
        () => RemoteNode.connect(node.url, { node: "anonymous", connectTimeoutMs: 300 }),
        /cannot reach node/,
      );
      const friend = await RemoteNode.connect(node.url, {
        node: "friend",
        secret: "the-right-one",
      });
      assert.equal(friend.info().size, 4 * MiB);
      await friend.close();
    } finally {
      assert.equal((await node.stop()).code, 0);
    }
  }
});

Deno.test("dst node: media of another storage is refused, by the node and by the proxy", async () => {
  await withTempDir(async (dir) => {
    const mine = "11111111111111111111111111111111";
    const other = "22222222222222222222222222222222";
    const path = `${dir}/s.img`;
    const args = ["--listen", `unix://${dir}/s.sock`, "--data", path];
    const node = await spawnNode([...args, "--size", "4M", "--storage-id", mine]);
    try {
      const ok = await RemoteNode.connect(node.url, { node: "p", expectStorageId: mine });
      assert.equal(ok.storageId, mine);
      await ok.close();
      await assert.rejects(
        () => RemoteNode.connect(node.url, { node: "p", expectStorageId: other }),
        /holds storage 1{32}, expected 2{32}: refusing media of another storage/,
      );
    } finally {
      assert.equal((await node.stop()).code, 0);
    }
    const refused = await runNode([...args, "--storage-id", other]);
    assert.notEqual(refused.code, 0);
    assert.equal(refused.stdout, "", "no ready line");
    assert.match(refused.stderr, /media belongs to storage 1{32}, not 2{32}/);
  });
});

Deno.test("dst node: without a secret it refuses a non-loopback address at start", async () => {
  const r = await runNode(["--listen", "tcp://0.0.0.0:0", "--data", "memory:", "--size", "1M"]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "", "no ready line");
  assert.match(r.stderr, /no cluster secret: refusing to listen on tcp:\/\/0\.0\.0\.0:0/);
});

Deno.test("dst node: bad flags exit 2 with what was wrong and where the options are", async () => {
  const cases: [string[], RegExp][] = [
    [["--data", "memory:", "--size", "1M"], /--listen URL is required/],
    [["--listen", "tcp://127.0.0.1:0"], /--data PATH is required/],
    [["--listen", "tcp://127.0.0.1:0", "--data", "memory:"], /memory: needs --size/],
    [["--listen", "http://x:1", "--data", "memory:", "--size", "1M"], /expected tcp:\/\/HOST/],
    [["--listen", "tcp://127.0.0.1:0", "--data", "memory:", "--size", "lots"], /not a size/],
    [
      ["--listen", "tcp://127.0.0.1:0", "--data", "memory:", "--size", "1M", "--nope"],
      /unknown option --nope/,
    ],
    [["--listen", "quic://127.0.0.1:0", "--data", "memory:", "--size", "1M"], /needs --cert/],
    [
      ["--listen", "tcp://127.0.0.1:0", "--data", "memory:", "--size", "1M", "--storage-id", "x"],
      /32 lowercase hex digits/,
    ],
    [["--listen", "tcp://127.0.0.1:0", "--data", "/nonexistent/dst/a.img"], /give --size SIZE/],
  ];
  const results = await Promise.all(cases.map(([args]) => runNode(args)));
  results.forEach((r, i) => {
    const [args, message] = cases[i]!;
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.match(r.stderr, /Run `dst node --help` for its options/);
    assert.doesNotMatch(r.stderr, /Usage:/, "the error is not buried under the help");
  });
});
