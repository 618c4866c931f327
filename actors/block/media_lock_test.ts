/**
 * One writer per media: file media open in one place (this process or another) cannot be opened
 * again until it is closed or its holder dies, and the refusal names the holder. Holders run as
 * real processes, with FFI (flock) and without it (a lock file), and each sees the other.
 */
import assert from "node:assert/strict";
import { FileBlockDevice } from "./file.ts";
import { MediaError } from "./media.ts";

const fileTs = new URL("./file.ts", import.meta.url).href;
const MiB = 1024 * 1024;

/** A child process that opens `path` and waits; resolves once it holds the media. */
async function holder(path: string, ffi: boolean) {
  const script = `${path}.holder.ts`;
  await Deno.writeTextFile(
    script,
    `import { FileBlockDevice } from "${fileTs}";
await FileBlockDevice.open({ path: ${JSON.stringify(path)} });
console.log("held");
setInterval(() => {}, 1000);`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...(ffi ? ["--allow-all"] : ["--allow-read", "--allow-write"]), script],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await reader.read();
  assert.equal(value?.trim(), "held", "the holder opened the media");
  reader.releaseLock();
  return {
    pid: child.pid,
    async kill() {
      child.kill("SIGKILL");
      await child.status;
      await child.stdout.cancel().catch(() => {});
    },
  };
}

async function busy(path: string, pattern: RegExp): Promise<void> {
  await assert.rejects(FileBlockDevice.open({ path }), (error: unknown) => {
    assert.ok(error instanceof MediaError, String(error));
    assert.equal(error.code, "busy");
    assert.ok(error.message.includes(path), error.message);
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("media lock: a second open in this process is refused until the first closes", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/a.img`;
  try {
    const first = await FileBlockDevice.create({ path, size: MiB });
    await first.write(0, new Uint8Array(4096).fill(7), true);
    await busy(path, /this process/);
    await assert.rejects(FileBlockDevice.create({ path, size: MiB, overwrite: true }), /in use/);
    assert.equal((await first.read(0, 4096))[0], 7, "the first opener still serves its data");
    await first.close();
    const again = await FileBlockDevice.open({ path });
    assert.equal((await again.read(0, 4096))[0], 7);
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const ffi of [true, false]) {
  Deno.test(`media lock: another process holding the media (${ffi ? "flock" : "lock file"}) is named; its death frees it`, async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/b.img`;
    try {
      await (await FileBlockDevice.create({ path, size: MiB })).close();
      const other = await holder(path, ffi);
      try {
        await busy(path, new RegExp(`pid ${other.pid}`));
      } finally {
        await other.kill();
      }
      const mine = await FileBlockDevice.open({ path });
      await mine.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
