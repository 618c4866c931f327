/**
 * What an NBD client can make `dst export` hold, on a real process: a client that sends reads and
 * never takes the replies stalls (its memory stays bounded) and is dropped after the stall
 * timeout, and the memory comes back; connection and handshake caps refuse the excess while a
 * legitimate client is served once others leave, logged once per burst; the idle timeout closes
 * idle connections and leaves busy ones; stalled clients together hold no more than the
 * server-wide budget (plus a small floor each) and cannot starve another client. A verifying
 * client runs beside the attackers.
 */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { NbdServer } from "../nbd/server.ts";
import { runDst } from "./support/dst_process.ts";
import { run, skipWithout, spawnExport } from "./support/nbd_harness.ts";
import { concat, openExport, RawNbdClient } from "./support/nbd_raw_client.ts";
import { Verifier } from "./support/nbd_verifier.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const READ = 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resident memory of a process, from /proc/PID/status. */
async function rssMiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)![1]) / 1024;
}

function portOf(uri: string): number {
  return Number(/:(\d+)\//.exec(uri)![1]);
}

/** A compact READ request header. */
function readRequest(handle: number, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(28);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x25609513);
  v.setUint16(6, READ);
  v.setUint32(12, handle);
  v.setUint32(16, Math.floor(offset / 2 ** 32));
  v.setUint32(20, offset >>> 0);
  v.setUint32(24, length);
  return out;
}

/**
 * Waits until the server has dropped `client`, without reading from it (reading would end the
 * stall): valid small read requests are written now and then, and once the server has closed,
 * a write fails. Returns false when the connection is still up at the deadline.
 */
async function droppedWithin(client: RawNbdClient, ms: number, each: () => Promise<void>) {
  const deadline = Date.now() + ms;
  for (let handle = 50_000; Date.now() < deadline; handle++) {
    try {
      await client.send(readRequest(handle, 0, 4096));
    } catch {
      return true;
    }
    await each();
    await sleep(100);
  }
  return false;
}

Deno.test({
  name: "stall: 110 reads of 32 MiB never read stay bounded, are dropped, memory comes back",
  async fn() {
    const p = await spawnExport([
      "--listen",
      "tcp://127.0.0.1:0",
      "--memory",
      "4G",
      "--nbd-stall-timeout",
      "1.5",
    ]);
    let verifier: Verifier | undefined;
    let attacker: RawNbdClient | undefined;
    let stopped = false;
    try {
      const port = portOf(p.uris[0]!);
      verifier = await Verifier.connect(port);
      await verifier.roundTrip(3 * GiB, MiB);
      const before = await rssMiB(p.pid);
      let peak = before;
      const sample = async () => {
        peak = Math.max(peak, await rssMiB(p.pid));
      };

      attacker = (await openExport(port)).client;
      const requests = Array.from(
        { length: 110 },
        (_, i) => readRequest(i, i * 32 * MiB, 32 * MiB),
      );
      await attacker.send(concat(...requests)); // about 3 KB asking for 3.4 GiB
      const sentAt = Date.now();
      // While the attacker stalls, the verifier beside it is served.
      for (let i = 0; i < 5; i++) {
        await verifier.roundTrip(3 * GiB + i * 65536, 65536);
        await sample();
        await sleep(100);
      }
      const dropped = await droppedWithin(attacker, 8000, sample);
      const after = Date.now() - sentAt;
      assert.ok(
        peak - before < 64,
        `RSS grew from ${before.toFixed(1)} to ${peak.toFixed(1)} MiB for a client reading nothing`,
      );
      assert.ok(dropped, "the stalled client was not dropped within 8 s (stall timeout 1.5 s)");
      assert.ok(after >= 1200, `dropped after ${after} ms, before the 1.5 s stall timeout`);

      let now = await rssMiB(p.pid);
      for (let i = 0; i < 30 && now - before >= 24; i++) {
        await sleep(100);
        now = await rssMiB(p.pid);
      }
      assert.ok(
        now - before < 24,
        `RSS ${now.toFixed(1)} MiB after the drop, ${before.toFixed(1)} MiB before the attack`,
      );
      await verifier.roundTrip(3 * GiB + MiB, MiB);
      console.log(
        `RSS MiB: before ${before.toFixed(1)}, peak ${peak.toFixed(1)}, after ${now.toFixed(1)}`,
      );
      verifier.close();
      const { stderr } = await p.stop();
      stopped = true;
      assert.match(stderr, /nbd client dropped: it took none of its replies/);
    } finally {
      attacker?.close();
      verifier?.close();
      if (!stopped) await p.stop("SIGKILL");
    }
  },
});

Deno.test({
  name:
    "caps: connections and handshakes over the caps are closed; a client gets in once one leaves",
  ignore: skipWithout("nbdinfo"),
  async fn() {
    const p = await spawnExport([
      "--listen",
      "tcp://127.0.0.1:0",
      "--memory",
      "16M",
      "--nbd-max-connections",
      "3",
      "--nbd-max-handshakes",
      "2",
    ]);
    const uri = p.uris[0]!;
    const port = portOf(uri);
    const open: RawNbdClient[] = [];
    let stopped = false;
    try {
      // Two clients sit in the handshake: a third is refused before any greeting.
      for (let i = 0; i < 2; i++) {
        const c = await RawNbdClient.connect(port);
        open.push(c);
        await c.mustRead(18);
      }
      for (let i = 0; i < 10; i++) {
        const refused = await RawNbdClient.connect(port);
        assert.equal(await refused.read(18), null, "a connection over the handshake cap got in");
        refused.close();
      }
      assert.notEqual((await run("nbdinfo", ["--size", uri])).code, 0);
      // The handshakers leave; a verifying client and another take transmission slots.
      for (const c of open.splice(0)) c.close();
      const verifier = await retry(() => Verifier.connect(port));
      const second = (await openExport(port)).client;
      open.push(verifier.client, second);
      const third = (await openExport(port)).client;
      open.push(third);
      // Three open: the fourth is refused, and so is nbdinfo.
      for (let i = 0; i < 10; i++) {
        const refused = await RawNbdClient.connect(port);
        assert.equal(await refused.read(18), null, "a connection over the connection cap got in");
        refused.close();
      }
      assert.notEqual((await run("nbdinfo", ["--size", uri])).code, 0);
      await verifier.roundTrip(MiB);
      // One leaves: a legitimate client is served.
      third.close();
      const size = await retry(async () => {
        const r = await run("nbdinfo", ["--size", uri]);
        if (r.code !== 0) throw new Error(r.stderr);
        return r.stdout.trim();
      });
      assert.equal(size, String(16 * MiB));
      await verifier.roundTrip(2 * MiB);
      for (const c of open.splice(0)) c.close();
      const { code, stderr } = await p.stop();
      stopped = true;
      assert.equal(code, 0, stderr);
      // Two bursts (handshake cap, then connection cap), each logged once.
      const refusals = stderr.split("\n").filter((l) => l.includes("nbd connection refused"));
      assert.equal(refusals.length, 2, stderr);
      assert.match(refusals[0]!, /in the handshake, the most allowed \(--nbd-max-handshakes\)/);
      assert.match(
        refusals[1]!,
        /connections are open, the most allowed \(--nbd-max-connections\)/,
      );
      assert.match(stderr, /nbd accepting connections again refused=11/);
    } finally {
      for (const c of open) c.close();
      if (!stopped) await p.stop("SIGKILL");
    }
  },
});

Deno.test({
  name: "idle timeout: an idle connection is closed, a busy one beside it is not",
  async fn() {
    const p = await spawnExport([
      "--listen",
      "tcp://127.0.0.1:0",
      "--memory",
      "16M",
      "--nbd-idle-timeout",
      "0.8",
    ]);
    const port = portOf(p.uris[0]!);
    const idle = (await openExport(port)).client;
    const busy = await Verifier.connect(port);
    let stopped = false;
    try {
      // Busy: a round trip every 200 ms for twice the idle timeout and more.
      for (let i = 0; i < 10; i++) {
        await busy.roundTrip(i * 65536, 65536);
        await sleep(200);
      }
      assert.ok(await idle.closedWithin(1000), "the idle connection was not closed");
      await busy.roundTrip(MiB);
      busy.close();
      const { stderr } = await p.stop();
      stopped = true;
      assert.match(stderr, /nbd client closed: idle for the idle timeout/);
    } finally {
      idle.close();
      busy.close();
      if (!stopped) await p.stop("SIGKILL");
    }
  },
});

Deno.test("server-wide budget: stalled clients hold at most it plus a floor each; others are served", async () => {
  const device = new MemoryBlockDevice({ size: 64 * MiB });
  const server = new NbdServer({
    exports: [{ name: "dst", device }],
    maxInFlightBytes: 4 * MiB,
    maxServerInFlightBytes: 8 * MiB,
  });
  const bound = await server.listen("tcp://127.0.0.1:0");
  const port = bound.address.transport === "tcp" ? bound.address.port : 0;
  const attackers: RawNbdClient[] = [];
  let verifier: Verifier | undefined;
  try {
    // Four clients ask for 8 MiB each and read nothing: 32 MiB wanted, 8 MiB to share.
    for (let a = 0; a < 4; a++) {
      const client = (await openExport(port)).client;
      attackers.push(client);
      const requests = Array.from({ length: 8 }, (_, i) => readRequest(i, i * MiB, MiB));
      await client.send(concat(...requests));
    }
    await sleep(300);
    const held = server.stats.inFlightBytes;
    assert.ok(held <= 8 * MiB + 4 * MiB, `stalled clients hold ${held / MiB} MiB`);
    assert.ok(held >= 8 * MiB, `only ${held / MiB} MiB held: the attack did not fill the budget`);
    // The budget is spent, yet a fifth client is served within its own floor.
    verifier = await Verifier.connect(port);
    for (let i = 0; i < 5; i++) await verifier.roundTrip(32 * MiB + i * 65536, 65536, 3000);
  } finally {
    verifier?.close();
    for (const a of attackers) a.close();
    await server.close();
    await device.close();
  }
  assert.equal(server.stats.inFlightBytes, 0, "the budget came back when the clients left");
});

Deno.test("NBD limit flags: bad values exit 2 naming the flag and what it takes", async () => {
  const base = ["export", "--listen", "tcp://127.0.0.1:0", "--memory", "1M"];
  const cases: [string[], RegExp][] = [
    [["--nbd-max-connections", "0"], /--nbd-max-connections "0": give a whole number from 1/],
    [["--nbd-max-connections", "12x"], /--nbd-max-connections "12x"/],
    [["--nbd-max-handshakes=-1"], /--nbd-max-handshakes "-1": give a whole number/],
    [
      ["--nbd-max-connections", "4", "--nbd-max-handshakes", "5"],
      /--nbd-max-handshakes 5 is more than --nbd-max-connections 4/,
    ],
    [["--nbd-idle-timeout", "soon"], /--nbd-idle-timeout "soon": give seconds/],
    [["--nbd-idle-timeout", "2d"], /--nbd-idle-timeout "2d"/],
    [["--nbd-stall-timeout", "0"], /--nbd-stall-timeout "0": .*more than 0/],
    [["--nbd-stall-timeout", "25h"], /at most a day/],
  ];
  for (const [flags, message] of cases) {
    const r = await runDst([...base, ...flags]);
    assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  const serve = await runDst(["serve", "--config", "x.json", "--nbd-idle-timeout=-3"]);
  assert.equal(serve.code, 2, serve.stderr);
  assert.match(serve.stderr, /--nbd-idle-timeout "-3"/);
});

/** Retries `fn` for up to 3 s: the server notices a client leaving when its socket says so. */
async function retry<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 3000;
  while (true) {
    try {
      return await fn();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(50);
    }
  }
}
