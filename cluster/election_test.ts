/**
 * The election against a real etcd (started here on loopback): one candidate is active, the
 * others stand by and are listed; epochs from etcd only grow, across leaders too, and can be
 * raised past a node's only by the elected one; when the active one leaves or its lease is
 * revoked behind its back, a standby is elected and the old term is lost.
 */
import assert from "node:assert/strict";
import { Etcd3 } from "etcd3";
import { skipWithout } from "../tests/support/nbd_harness.ts";
import { parseClusterUrl } from "./address.ts";
import { Election } from "./election.ts";
import { startEtcd } from "./etcd_server.ts";

const candidate = (id: string) => ({ id: id.repeat(32).slice(0, 32), label: `serve-${id}` });

Deno.test("cluster address: etcd://HOST:PORT lists, every mistake named", () => {
  assert.deepEqual(parseClusterUrl("etcd://127.0.0.1:2379,[::1]:2380,etcd.local:1"), [
    "http://127.0.0.1:2379",
    "http://[::1]:2380",
    "http://etcd.local:1",
  ]);
  assert.throws(() => parseClusterUrl("http://x:1"), /expected etcd:\/\/HOST:PORT/);
  assert.throws(() => parseClusterUrl("etcd://x"), /"x" is not HOST:PORT/);
  assert.throws(() => parseClusterUrl("etcd://x:70000"), /"x:70000" is not HOST:PORT/);
});

Deno.test({
  name: "election: one active, standbys wait; epochs grow across leaders; a lost lease ends a term",
  ignore: skipWithout("etcd"),
  fn: async () => {
    const etcd = await startEtcd();
    const options = {
      hosts: etcd.hosts,
      key: `t${crypto.randomUUID().slice(0, 8)}`,
      ttlSeconds: 2,
    };
    const a = await Election.join(options, candidate("a"));
    const b = await Election.join(options, candidate("b"));
    const c = await Election.join(options, candidate("c"));
    const admin = new Etcd3({ hosts: [...etcd.hosts] });
    try {
      const termA = await a.campaign();
      let bElected = false;
      const termB = b.campaign().then((t) => (bElected = true, t));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(bElected, false, "b stands by while a is active");
      const view = await a.view();
      assert.equal(view.active?.label, "serve-a");
      assert.deepEqual(view.standbys.map((s) => s.label), ["serve-b"]);
      assert.equal(await termA.nextEpoch(0), 1);
      assert.equal(await termA.nextEpoch(5), 6, "raised past a node's epoch");
      await termA.publish({ nbd: ["nbd://x"] });
      assert.deepEqual((await b.view()).active?.nbd, ["nbd://x"]);

      await a.leave();
      assert.match(await termA.lost, /left the election/);
      const tb = await termB;
      assert.ok(tb.revision > termA.revision);
      assert.equal(await tb.nextEpoch(0), 7, "a later leader holds a higher epoch");

      // b's lease is revoked behind its back (what expiry does to a hung exporter).
      const termC = c.campaign();
      await admin.leaseClient.leaseRevoke({ ID: await b.leaseId });
      const why = await Promise.race([
        tb.lost,
        new Promise<string>((r) => setTimeout(() => r("not lost"), 10_000)),
      ]);
      assert.notEqual(why, "not lost");
      const tc = await termC;
      assert.equal(await tc.nextEpoch(0), 8);
      await assert.rejects(tb.nextEpoch(0), /no longer the elected one/);
    } finally {
      admin.close();
      await Promise.all([a.leave(), b.leave(), c.leave()]);
      await etcd.stop();
    }
  },
});
