/**
 * Clean failure in space, with real processes: a command that cannot run says which address or
 * path is wrong and creates nothing (busy ports for `dst node`, `dst serve --status`,
 * `dst start`; missing folders; a topology whose second leg is bad), and a failed add-leg —
 * refused before or after its media was made — leaves nothing behind, so a corrected retry
 * succeeds without a restart. Each test lists the data folder before and after.
 */
import assert from "node:assert/strict";
import { type DstProcess, runDst, spawnDst } from "./support/dst_process.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dst-cleanup-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Every path under `dir`, sorted, or null when `dir` does not exist. */
async function listing(dir: string): Promise<string[] | null> {
  const found: string[] = [];
  const walk = async (at: string, prefix: string) => {
    for await (const entry of Deno.readDir(at)) {
      found.push(`${prefix}${entry.name}`);
      if (entry.isDirectory) await walk(`${at}/${entry.name}`, `${prefix}${entry.name}/`);
    }
  };
  try {
    await walk(dir, "");
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  return found.sort();
}

/** A TCP port held by this test process, so the command under test finds it busy. */
function busyPort(): Deno.TcpListener {
  return Deno.listen({ hostname: "127.0.0.1", port: 0 });
}

const portOf = (l: Deno.TcpListener) => (l.addr as Deno.NetAddr).port;

async function serveMirror(dir: string, legs: Record<string, unknown>): Promise<DstProcess> {
  const config = `${dir}/topology.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      storage: "m",
      nodes: { m: { kind: "mirror", legs: Object.keys(legs) }, ...legs },
      export: { listen: [`unix://${dir}/nbd.sock`] },
    }),
  );
  return await spawnDst([
    "serve",
    "--config",
    config,
    "--status",
    "127.0.0.1:0",
    "--status-token-file",
    `${dir}/token`,
  ], { ready: /^(nbd|status)/, readyLines: 2 });
}

function ctl(serve: DstProcess, dir: string, args: string[]) {
  const status = serve.lines.find((l) => l.startsWith("status "))!.split(" ")[1]!;
  return runDst(["ctl", "--url", status, "--token-file", `${dir}/token`, ...args]);
}

/** The names of the mirror's legs and their states, from the status endpoint. */
async function legs(serve: DstProcess): Promise<Record<string, string>> {
  const status = serve.lines.find((l) => l.startsWith("status "))!.split(" ")[1]!;
  const { tree } = await (await fetch(`${status}api/tree`)).json();
  return Object.fromEntries(
    tree.children.map((c: { name: string; state: string }) => [c.name, c.state]),
  );
}

Deno.test("cleanup: a refused add-leg leaves nothing behind; the corrected retry succeeds", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/data`);
    const serve = await serveMirror(dir, { a: { kind: "file", path: "data/a.img", size: "16M" } });
    const small = await spawnDst([
      "node",
      "--listen",
      `unix://${dir}/small.sock`,
      "--data",
      "memory:",
      "--size",
      "8M",
    ]);
    try {
      const before = await listing(`${dir}/data`);
      const tooSmall = await ctl(serve, dir, [
        "add-leg",
        "m",
        "x2",
        JSON.stringify({ kind: "file", path: "data/x2.img", size: "1M" }),
      ]);
      assert.equal(tooSmall.code, 1, tooSmall.stderr);
      assert.deepEqual(await listing(`${dir}/data`), before, "no media left by the failed add");
      assert.match(tooSmall.stderr, /x2 .*1 MiB.*16 MiB/);
      const smallNode = await ctl(serve, dir, ["add-leg", "m", "x2", `unix://${dir}/small.sock`]);
      assert.equal(smallNode.code, 1, smallNode.stderr);
      assert.match(smallNode.stderr, /x2 holds 8 MiB; the mirror needs 16 MiB/);
      const good = await ctl(serve, dir, [
        "add-leg",
        "m",
        "x2",
        JSON.stringify({ kind: "file", path: "data/x2.img", size: "16M" }),
      ]);
      assert.equal(good.code, 0, good.stderr);
      assert.deepEqual(await listing(`${dir}/data`), ["a.img", "x2.img"]);
      assert.deepEqual(Object.keys(await legs(serve)), ["a", "x2"]);
    } finally {
      await small.stop();
      await serve.stop();
    }
  });
});

Deno.test("cleanup: an add-leg the mirror refuses after its media was made removes that media", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/data`);
    const nodeArgs = ["node", "--listen", `unix://${dir}/n.sock`, "--data", `${dir}/n.img`];
    let node = await spawnDst([...nodeArgs, "--size", "16M"]);
    const serve = await serveMirror(dir, { a: { kind: "remote", url: `unix://${dir}/n.sock` } });
    try {
      // With its only leg gone the mirror has no in-sync leg to copy a new one from.
      await node.stop("SIGKILL");
      const spec = JSON.stringify({ kind: "file", path: "data/x2.img", size: "16M" });
      const refused = await ctl(serve, dir, ["add-leg", "m", "x2", spec]);
      assert.equal(refused.code, 1, refused.stderr);
      assert.deepEqual(await listing(`${dir}/data`), [], "the media it made is gone");
      assert.match(refused.stderr, /no leg is in sync/);
      node = await spawnDst(nodeArgs);
      for (let i = 0; i < 100 && (await legs(serve)).a !== "in-sync"; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal((await legs(serve)).a, "in-sync", "the node came back");
      const retried = await ctl(serve, dir, ["add-leg", "m", "x2", spec]);
      assert.equal(retried.code, 0, retried.stderr);
      assert.deepEqual(await listing(`${dir}/data`), ["x2.img"]);
    } finally {
      await serve.stop();
      await node.stop();
    }
  });
});

Deno.test("cleanup: dst node on a busy port names the address and makes no media", async () => {
  await withDir(async (dir) => {
    const busy = busyPort();
    try {
      const url = `tcp://127.0.0.1:${portOf(busy)}`;
      const r = await runDst(["node", "--listen", url, "--data", `${dir}/a.img`, "--size", "16M"]);
      assert.equal(r.code, 1);
      assert.deepEqual(await listing(dir), []);
      assert.match(r.stderr, new RegExp(`cannot listen on ${url}: address already in use`));
    } finally {
      busy.close();
    }
  });
});

Deno.test("cleanup: dst serve with a busy --status port names it and starts nothing", async () => {
  await withDir(async (dir) => {
    const busy = busyPort();
    try {
      const config = `${dir}/t.json`;
      await Deno.writeTextFile(
        config,
        JSON.stringify({
          storage: "m",
          nodes: {
            m: { kind: "mirror", legs: ["a", "b"] },
            a: { kind: "file", path: "a.img", size: "16M" },
            b: { kind: "file", path: "b.img", size: "16M" },
          },
          export: { listen: [`unix://${dir}/nbd.sock`] },
        }),
      );
      const r = await runDst([
        "serve",
        "--config",
        config,
        "--status",
        `127.0.0.1:${portOf(busy)}`,
      ]);
      assert.equal(r.code, 1);
      assert.deepEqual(await listing(dir), ["t.json"], "no media, no NBD socket");
      assert.match(
        r.stderr,
        new RegExp(`--status: cannot listen on tcp://127.0.0.1:${portOf(busy)}: address already`),
      );
    } finally {
      busy.close();
    }
  });
});

Deno.test("cleanup: dst start on a busy port names it before making its data folder", async () => {
  await withDir(async (dir) => {
    const busy = busyPort();
    try {
      const r = await runDst([
        "start",
        "--data",
        `${dir}/data`,
        "--nbd",
        `tcp://127.0.0.1:${portOf(busy)}`,
        "--status",
        "127.0.0.1:0",
      ]);
      assert.equal(r.code, 1);
      assert.equal(await listing(`${dir}/data`), null, "no data folder, no node processes");
      assert.match(
        r.stderr,
        new RegExp(`--nbd: cannot listen on tcp://127.0.0.1:${portOf(busy)}: address already`),
      );
    } finally {
      busy.close();
    }
  });
});

Deno.test("cleanup: a missing folder is named, and a bad second leg makes no media for the first", async () => {
  await withDir(async (dir) => {
    const config = `${dir}/t.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        storage: "m",
        nodes: {
          m: { kind: "mirror", legs: ["a", "b"] },
          a: { kind: "file", path: "a.img", size: "16M" },
          b: { kind: "file", path: "gone/b.img", size: "16M" },
        },
        export: { listen: [`unix://${dir}/nbd.sock`] },
      }),
    );
    const serve = await runDst(["serve", "--config", config]);
    assert.equal(serve.code, 1);
    assert.deepEqual(await listing(dir), ["t.json"], "no media for the good first leg");
    assert.match(serve.stderr, new RegExp(`nodes.b.path: .*folder ${dir}/gone does not exist`));
    const node = await runDst([
      "node",
      "--listen",
      `unix://${dir}/gone/n.sock`,
      "--data",
      `${dir}/gone/n.img`,
      "--size",
      "1M",
    ]);
    assert.equal(node.code, 1);
    assert.match(node.stderr, new RegExp(`cannot listen on unix://${dir}/gone/n.sock: folder`));
    assert.match(node.stderr, new RegExp(`cannot create ${dir}/gone/n.img: folder ${dir}/gone`));
    const exp = await runDst([
      "export",
      "--listen",
      `unix://${dir}/e.sock`,
      "--file",
      `${dir}/gone/e.img`,
      "--size",
      "1M",
    ]);
    assert.equal(exp.code, 1);
    assert.match(exp.stderr, new RegExp(`cannot create ${dir}/gone/e.img: folder ${dir}/gone`));
    assert.deepEqual(await listing(dir), ["t.json"]);
  });
});
