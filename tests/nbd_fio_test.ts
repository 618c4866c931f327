/**
 * fio's nbd engine against the server: random writes at iodepth 32 verified with crc32c on read
 * back, so pipelining, out-of-order replies and data placement are checked by an independent
 * client under real concurrency. Small and bounded.
 */
import assert from "node:assert/strict";
import { mustRun, skipWithout, startServer } from "./support/nbd_harness.ts";

async function fioVerify(uri: string, rw: string, bs: string): Promise<void> {
  const out = await mustRun("fio", [
    "--name=verify",
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--rw=${rw}`,
    `--bs=${bs}`,
    "--iodepth=32",
    "--size=16M",
    "--verify=crc32c",
    "--do_verify=1",
    "--verify_fatal=1",
    // No verify-state file in the working directory.
    "--verify_state_save=0",
    "--runtime=20",
    "--output-format=json",
  ], { timeoutMs: 60_000 });
  const report = JSON.parse(out.slice(out.indexOf("{")));
  const job = report.jobs[0];
  assert.equal(job.error, 0, `fio error ${job.error}`);
  assert.equal(job.write.io_bytes, 16 * 1024 * 1024, "every byte written");
  assert.equal(job.read.io_bytes, 16 * 1024 * 1024, "every byte read back and verified");
}

Deno.test({
  name: "fio nbd engine: randwrite 4k at iodepth 32 with crc32c verify (TCP and Unix)",
  ignore: skipWithout("fio"),
  async fn() {
    const s = await startServer({ size: 32 * 1024 * 1024 });
    try {
      await fioVerify(s.uri, "randwrite", "4k");
      await fioVerify(s.unixUri, "randwrite", "64k");
    } finally {
      await s.close();
    }
  },
});
