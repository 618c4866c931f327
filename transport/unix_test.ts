/**
 * A listener on a Unix socket never takes a path away from its owner: a socket a live process
 * answers on, or a file that is not a socket, is refused with a message naming the path; only a
 * socket nobody answers on (left by a dead process) is replaced. Both listeners that bind Unix
 * sockets (the dst node transport and the NBD server) are held to it.
 */
import assert from "node:assert/strict";
import { unixTransport } from "./unix.ts";
import { NbdServer } from "../nbd/server.ts";
import { MemoryBlockDevice } from "../actors/block/memory.ts";

type Listen = (path: string) => Promise<{ close(): Promise<void> | void }>;

const listeners: [string, Listen][] = [
  ["transport", async (path) => {
    const l = await unixTransport.listen(`unix://${path}`);
    return { close: () => l.close() };
  }],
  ["nbd server", async (path) => {
    const server = new NbdServer({
      exports: [{ name: "x", device: new MemoryBlockDevice({ size: 65536 }) }],
    });
    try {
      await server.listen(`unix://${path}`);
    } catch (error) {
      await server.close();
      throw error;
    }
    return { close: () => server.close() };
  }],
];

/** Whether something answers on the socket at `path`. */
async function answers(path: string): Promise<boolean> {
  try {
    (await Deno.connect({ transport: "unix", path })).close();
    return true;
  } catch {
    return false;
  }
}

for (const [name, listen] of listeners) {
  Deno.test(`${name}: a live Unix socket is refused and keeps answering`, async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/live.sock`;
    const owner = Deno.listen({ transport: "unix", path });
    try {
      await assert.rejects(listen(path), (error: Error) => {
        assert.match(error.message, /another process is listening/);
        assert.ok(error.message.includes(path), error.message);
        return true;
      });
      assert.ok(await answers(path), "the first listener's socket is still there and answers");
    } finally {
      owner.close();
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`${name}: a file that is not a socket is refused and kept`, async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/data.img`;
    await Deno.writeTextFile(path, "precious");
    try {
      await assert.rejects(listen(path), (error: Error) => {
        assert.match(error.message, /not a socket/);
        assert.ok(error.message.includes(path), error.message);
        return true;
      });
      assert.equal(await Deno.readTextFile(path), "precious");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`${name}: a stale socket of a dead listener is replaced`, async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/stale.sock`;
    // A bound socket whose listener is gone but whose file stayed: what a SIGKILL leaves.
    const stale = Deno.listen({ transport: "unix", path });
    const copy = `${dir}/keep`;
    await Deno.link(path, copy).catch(() => {});
    stale.close();
    await Deno.rename(copy, path).catch(() => {});
    try {
      const l = await listen(path);
      assert.ok(await answers(path));
      await l.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
