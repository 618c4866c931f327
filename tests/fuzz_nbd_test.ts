/**
 * Fuzzes the NBD server with a fixed seed: thousands of handshakes, option haggles and request
 * streams, clean ones checked against what the protocol demands and garbled ones only required
 * to be survived, while a verifying client beside them writes and reads back self-describing
 * data. Afterwards every connection is gone and every byte of budget is back. Then a shorter run
 * against a real `dst export` process, which must still serve and exit cleanly.
 */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { NbdServer } from "../nbd/server.ts";
import { MemoryLogger } from "../util/log.ts";
import { spawnExport } from "./support/nbd_harness.ts";
import { caseSeed } from "./support/fuzz_gen.ts";
import { type FuzzTarget, nbdCase } from "./support/fuzz_nbd.ts";
import { describeCase, exchange, judge } from "./support/fuzz_nbd_check.ts";
import { Verifier } from "./support/nbd_verifier.ts";

/** Fixed, so CI runs the same cases every time; DST_FUZZ_SEED explores others by hand. */
const SEED = Number(Deno.env.get("DST_FUZZ_SEED") ?? 0x5eed0011);
const MiB = 1024 * 1024;

/**
 * Runs cases `0..count-1` with `parallel` at a time; the verifier round-trips every 50 cases.
 * Returns the failures, described for replay.
 */
async function fuzz(
  port: number,
  target: FuzzTarget,
  scope: "any" | "handshake",
  count: number,
  parallel: number,
  verify: (round: number) => Promise<void>,
): Promise<string[]> {
  const failures: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count && failures.length < 5) {
      const index = next++;
      const c = nbdCase(caseSeed(SEED, index), index, target, scope);
      try {
        judge(c, await exchange(port, c), target.size);
      } catch (error) {
        failures.push(describeCase(SEED, c, error));
      }
      if (index % 50 === 0) await verify(index / 50);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return failures;
}

/** Closes `server`, giving up after `ms`: one whose requests never settle cannot close. */
async function closedWithin(server: NbdServer, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const closed = await Promise.race([
    server.close().then(() => true),
    new Promise<false>((r) => timer = setTimeout(() => r(false), ms)),
  ]);
  clearTimeout(timer);
  return closed;
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(condition(), what);
}

Deno.test("fuzz nbd: 3000 seeded cases against a server; a verifying client is served throughout", async () => {
  const size = 4 * MiB + 1;
  const fuzzed = new MemoryBlockDevice({ size });
  const verified = new MemoryBlockDevice({ size: 16 * MiB });
  const log = new MemoryLogger();
  const server = new NbdServer({
    exports: [{ name: "fuzz", device: fuzzed }, { name: "verify", device: verified }],
    log,
    // Small budgets, so fuzzed requests wait on them and give them back all the time.
    maxInFlight: 8,
    maxInFlightBytes: 2 * MiB,
    maxServerInFlightBytes: 6 * MiB,
  });
  const bound = await server.listen("tcp://127.0.0.1:0");
  const port = bound.address.transport === "tcp" ? bound.address.port : 0;
  const verifier = await Verifier.connect(port, 7, "verify");
  try {
    const target = { size, fence: size, maxBlock: 32 * MiB, names: ["fuzz"] };
    const failures = await fuzz(port, target, "any", 3000, 8, async (round) => {
      await verifier.roundTrip((round % 200) * 65536, 65536);
    });
    assert.deepEqual(failures, [], failures.join("\n"));
    await verifier.roundTrip(15 * MiB, MiB);
    verifier.close();
    await until(() => server.stats.connections === 0, "connections left open after the run");
    const stats = server.stats;
    assert.equal(stats.handshaking, 0, "handshake slots leaked");
    assert.equal(stats.inFlight, 0, "request slots leaked");
    assert.equal(stats.inFlightBytes, 0, "budget bytes leaked");
    assert.ok(stats.poolIdleBytes <= 64 * MiB, `the pool keeps ${stats.poolIdleBytes} bytes`);
    const bad = log.entries.filter((e) => e.level === "error" || e.message.includes("unexpected"));
    assert.deepEqual(bad, []);
    assert.ok(await closedWithin(server, 5000), "server.close() hung: requests never settled");
  } finally {
    verifier.close();
    await closedWithin(server, 5000);
    await fuzzed.close();
    await verified.close();
  }
});

Deno.test("fuzz nbd: 400 seeded cases against dst export; it keeps serving and exits 0", async () => {
  const size = 8 * MiB;
  const p = await spawnExport(["--listen", "tcp://127.0.0.1:0", "--memory", "8M"]);
  let stopped = false;
  let verifier: Verifier | undefined;
  try {
    const port = Number(/:(\d+)\//.exec(p.uris[0]!)![1]);
    verifier = await Verifier.connect(port);
    const v = verifier;
    // Fuzzed writes stay below 4 MiB; the verifier owns the top half.
    const target = { size, fence: 4 * MiB, maxBlock: 32 * MiB, names: ["dst"] };
    const failures = await fuzz(port, target, "handshake", 400, 4, async (round) => {
      await v.roundTrip(4 * MiB + (round % 60) * 65536, 65536);
    });
    assert.deepEqual(failures, [], failures.join("\n"));
    await verifier.roundTrip(7 * MiB, MiB);
    verifier.close();
    const { code, stderr } = await p.stop();
    stopped = true;
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, / error |unexpected/);
  } finally {
    verifier?.close();
    if (!stopped) await p.stop("SIGKILL");
  }
});
