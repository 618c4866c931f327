/**
 * One writer per media and per address, with real processes: a second `dst node` on media a
 * running node serves, a second `dst export` on a live Unix socket, and a command whose TCP port
 * is taken each fail with a message naming what is busy, create nothing, and leave the first
 * process serving (checked by reading its data back).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { RemoteNode } from "../actors/node/proxy.ts";
import { spawnDst } from "./support/dst_process.ts";
import { skipWithout } from "./support/nbd_harness.ts";

const MiB = 1024 * 1024;

const mainTs = new URL("../main.ts", import.meta.url).pathname;

/** Runs `dst ARGS`, which must refuse to start: killed after 20 s if it serves instead. */
async function runDst(args: string[]): Promise<{ code: number; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", "--allow-all", mainTs, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const out = await child.output();
  clearTimeout(killer);
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

async function sha(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}

Deno.test("a second dst node on busy media is refused, naming the holder; the first serves on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dst-excl-" });
  const media = `${dir}/leg.img`;
  const first = await spawnDst([
    "node",
    "--listen",
    `unix://${dir}/a.sock`,
    "--data",
    media,
    "--size",
    String(4 * MiB),
  ]);
  try {
    const remote = await RemoteNode.connect(first.lines[0]!, { node: "test" });
    await remote.write(0, new Uint8Array(4096).fill(0x5a), true);
    const before = await sha(media);
    const second = await runDst([
      "node",
      "--listen",
      `unix://${dir}/other.sock`,
      "--data",
      media,
    ]);
    assert.notEqual(second.code, 0);
    assert.ok(second.stderr.includes(media), second.stderr);
    assert.match(second.stderr, new RegExp(`in use: pid ${first.pid} \\(dst node`));
    assert.equal(await sha(media), before, "the refused node changed nothing on the media");
    assert.equal(await Deno.lstat(`${dir}/other.sock`).catch(() => undefined), undefined);
    assert.equal((await remote.read(0, 4096))[4095], 0x5a, "the first node still serves");
    await remote.close();
  } finally {
    await first.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "a second dst export on a live Unix socket is refused; the first keeps its socket",
  ignore: skipWithout("nbdcopy"),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "dst-excl-" });
    const socket = `${dir}/nbd.sock`;
    const uri = `nbd+unix:///dst?socket=${socket}`;
    const first = await spawnDst(["export", "--listen", `unix://${socket}`, "--memory", "1M"]);
    try {
      const image = `${dir}/pattern.img`;
      await Deno.writeFile(image, new Uint8Array(MiB).fill(0x3c));
      const copy = await new Deno.Command("nbdcopy", { args: [image, uri] }).output();
      assert.equal(copy.code, 0);
      const second = await runDst(["export", "--listen", `unix://${socket}`, "--memory", "1M"]);
      assert.notEqual(second.code, 0);
      assert.ok(second.stderr.includes(socket), second.stderr);
      assert.match(
        second.stderr,
        /another process listens on that socket|another process is listening/,
      );
      assert.ok((await Deno.lstat(socket)).isSocket, "the socket file is still there");
      const back = await new Deno.Command("nbdcopy", { args: [uri, "-"], stdout: "piped" })
        .output();
      assert.equal(back.code, 0, "the first export still answers");
      assert.ok(back.stdout.every((b) => b === 0x3c), "and still serves its data");
    } finally {
      await first.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("a TCP port in use is reported with its address before any media is made", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dst-excl-" });
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address = `tcp://127.0.0.1:${(held.addr as Deno.NetAddr).port}`;
  try {
    for (
      const args of [
        ["node", "--listen", address, "--data", `${dir}/n.img`, "--size", "1M"],
        ["export", "--listen", address, "--file", `${dir}/e.img`, "--size", "1M"],
      ]
    ) {
      const out = await runDst(args);
      assert.notEqual(out.code, 0, args.join(" "));
      assert.ok(out.stderr.includes(address), out.stderr);
      assert.match(out.stderr, /address already in use/);
    }
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no media was created");
  } finally {
    held.close();
    await Deno.remove(dir, { recursive: true });
  }
});
