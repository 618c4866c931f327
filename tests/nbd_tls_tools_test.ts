/**
 * `dst export --tls` against real TLS clients: libnbd's nbdinfo and nbdcopy with `nbds://` URIs
 * and qemu-img with a `tls-creds-x509` object, over TCP and a Unix socket, with a CA the test
 * makes. `require` refuses a plain client with a clear error, a client trusting another CA fails,
 * `on` serves plain and TLS clients, `--tls-ca` demands a client certificate that CA signed, and
 * bad TLS flags or files are reported before anything starts.
 */
import assert from "node:assert/strict";
import { makeTestCerts, type TestCerts, writeClientCertDir } from "./support/certs.ts";
import { runDst, spawnDst } from "./support/dst_process.ts";
import { mustRun, randomBytes, run, skipWithout, spawnExport } from "./support/nbd_harness.ts";

async function files(dir: string, certs: TestCerts): Promise<Record<string, string>> {
  const out = { cert: `${dir}/server-cert.pem`, key: `${dir}/server-key.pem`, ca: `${dir}/ca.pem` };
  await Deno.writeTextFile(out.cert, certs.cert);
  await Deno.writeTextFile(out.key, certs.key, { mode: 0o600 });
  await Deno.writeTextFile(out.ca, certs.caCert);
  return out;
}

/** `uri` with libnbd's certificate folder in its query. */
function withCerts(uri: string, dir: string): string {
  return uri + (uri.includes("?") ? "&" : "?") + `tls-certificates=${dir}`;
}

Deno.test({
  name: "dst export --tls require: nbdinfo, nbdcopy and qemu-img over TLS; plain and wrong CA fail",
  ignore: skipWithout("nbdinfo", "nbdcopy", "qemu-img", "openssl"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dst-tls-" });
    const certs = await makeTestCerts();
    const f = await files(dir, certs);
    const trusted = await writeClientCertDir(`${dir}/client`, certs);
    const stranger = await writeClientCertDir(`${dir}/stranger`, await makeTestCerts());
    const p = await spawnExport([
      "--listen",
      "tcp://127.0.0.1:0",
      "--listen",
      `unix://${dir}/nbd.sock`,
      "--memory",
      "8M",
      "--tls",
      "require",
      "--tls-cert",
      f.cert!,
      "--tls-key",
      f.key!,
    ], 2); // deno-fmt-ignore
    try {
      const [tcp, unix] = p.uris;
      assert.match(tcp!, /^nbds:\/\/127\.0\.0\.1:\d+\/dst$/, "the printed URI asks for TLS");
      assert.match(unix!, /^nbds\+unix:\/\/\/dst\?socket=/);
      const info = JSON.parse(await mustRun("nbdinfo", ["--json", withCerts(tcp!, trusted)]));
      assert.equal(info.exports[0]["export-size"], 8 * 2 ** 20);
      assert.equal(info.TLS, true, JSON.stringify(info));

      // Data through TLS both ways, over the Unix socket too.
      const image = `${dir}/in.img`;
      const back = `${dir}/out.img`;
      const data = randomBytes(2 * 2 ** 20);
      await Deno.writeFile(image, data);
      await mustRun("nbdcopy", [image, withCerts(unix!, trusted)]);
      await mustRun("nbdcopy", [withCerts(tcp!, trusted), back]);
      assert.deepEqual((await Deno.readFile(back)).subarray(0, data.length), data);

      // qemu's own TLS client (gnutls), with its certificate folder.
      const port = new URL(tcp!.replace(/^nbds:/, "http:")).port;
      const qemu = JSON.parse(
        await mustRun("qemu-img", [
          "info", "--output=json",
          "--object", `tls-creds-x509,id=tls0,dir=${trusted},endpoint=client`,
          "--image-opts",
          `driver=nbd,host=127.0.0.1,port=${port},export=dst,tls-creds=tls0`,
        ]),
      ); // deno-fmt-ignore
      assert.equal(qemu["virtual-size"], 8 * 2 ** 20);

      // A plain client is refused (libnbd reports NBD_REP_ERR_TLS_REQD as "not supported"
      // unless debugging, where it shows our message); the server's log says why.
      const plain = await run("nbdinfo", [tcp!.replace(/^nbds:/, "nbd:")], {
        env: { LIBNBD_DEBUG: "1" },
      });
      assert.notEqual(plain.code, 0);
      assert.match(plain.stderr, /server error message: TLS is required/, plain.stderr);
      // A client that trusts another CA fails the handshake.
      const wrong = await run("nbdinfo", [withCerts(tcp!, stranger)]);
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.stderr, /certificate|handshake|verif/i, wrong.stderr);
      // The server keeps serving after both.
      await mustRun("nbdinfo", [withCerts(tcp!, trusted)]);
    } finally {
      const { stderr } = await p.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      assert.match(stderr, /tls="require"/, "the listen line says TLS is required");
      assert.match(stderr, /nbd client refused: TLS is required .*nbds:\/\//);
    }
  },
});

Deno.test({
  name:
    "dst export --tls on --tls-ca: plain clients work, TLS clients need a certificate the CA signed",
  ignore: skipWithout("nbdinfo", "openssl"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dst-tls-" });
    const certs = await makeTestCerts({ client: true });
    const f = await files(dir, certs);
    const withCert = await writeClientCertDir(`${dir}/with`, certs);
    const withoutCert = await writeClientCertDir(`${dir}/without`, {
      caCert: certs.caCert,
      cert: certs.cert,
      key: certs.key,
    });
    const p = await spawnExport([
      "--listen",
      "tcp://127.0.0.1:0",
      "--memory",
      "4M",
      "--tls",
      "on",
      "--tls-cert",
      f.cert!,
      "--tls-key",
      f.key!,
      "--tls-ca",
      f.ca!,
    ]); // deno-fmt-ignore
    let stderr = "";
    try {
      const uri = p.uris[0]!;
      assert.match(uri, /^nbd:\/\//, "plain clients are welcome: the plain URI is printed");
      await mustRun("nbdinfo", [uri]);
      const secure = uri.replace(/^nbd:/, "nbds:");
      const info = JSON.parse(await mustRun("nbdinfo", ["--json", withCerts(secure, withCert)]));
      assert.equal(info.TLS, true);
      const refused = await run("nbdinfo", [withCerts(secure, withoutCert)]);
      assert.notEqual(refused.code, 0, "no client certificate, no TLS session");
      assert.match(refused.stderr, /handshake|certificate|TLS|tls/, refused.stderr);
      // A client certificate another CA signed is no better.
      const strangerCerts = await makeTestCerts({ client: true });
      const stranger = await writeClientCertDir(`${dir}/stranger`, {
        ...strangerCerts,
        caCert: certs.caCert,
      });
      const forged = await run("nbdinfo", [withCerts(secure, stranger)]);
      assert.notEqual(forged.code, 0, "a certificate of another CA is refused");
      // And the server still serves the client with the right certificate.
      await mustRun("nbdinfo", [withCerts(secure, withCert)]);
    } finally {
      ({ stderr } = await p.stop());
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
    assert.match(stderr, /clientCertificates="required"/);
    assert.match(stderr, /nbd TLS handshake failed/, "refused handshakes are logged");
  },
});

Deno.test({
  name: "dst export --tls: bad flags exit 2, bad files exit 1 naming the file, nothing starts",
  ignore: skipWithout("openssl"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dst-tls-" });
    const certs = await makeTestCerts();
    const other = await makeTestCerts();
    const f = await files(dir, certs);
    await Deno.writeTextFile(`${dir}/other-key.pem`, other.key);
    const base = ["export", "--listen", "tcp://127.0.0.1:0", "--memory", "1M"];
    const cases: [string[], number, RegExp][] = [
      [["--tls", "require"], 2, /--tls require needs --tls-cert PATH and --tls-key PATH/],
      [["--tls", "maybe", "--tls-cert", f.cert!, "--tls-key", f.key!], 2, /use on, require/],
      [["--tls-cert", f.cert!, "--tls-key", f.key!], 2, /go with --tls on or --tls require/],
      [
        ["--tls", "on", "--tls-cert", `${dir}/nope.pem`, "--tls-key", f.key!],
        1,
        /cannot read the TLS certificate .*nope\.pem: no such file/,
      ],
      [
        ["--tls", "on", "--tls-cert", f.cert!, "--tls-key", `${dir}/other-key.pem`],
        1,
        /other-key\.pem is not the key of the certificate in .*server-cert\.pem/,
      ],
      [
        ["--tls", "on", "--tls-cert", f.key!, "--tls-key", f.key!],
        1,
        /server-key\.pem: no PEM certificate in it/,
      ],
    ]; // deno-fmt-ignore
    try {
      for (const [args, code, message] of cases) {
        const r = await runDst([...base, ...args]);
        assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, message);
        assert.equal(r.stdout, "", "nothing was served");
      }
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "dst serve: the topology's export.tls (paths relative to the file) serves nbds clients",
  ignore: skipWithout("nbdinfo", "openssl"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dst-tls-" });
    const certs = await makeTestCerts();
    await files(dir, certs);
    const trusted = await writeClientCertDir(`${dir}/client`, certs);
    await Deno.writeTextFile(
      `${dir}/topology.json`,
      JSON.stringify({
        storage: "m",
        nodes: { m: { kind: "memory", size: "4M" } },
        export: {
          listen: ["tcp://127.0.0.1:0"],
          tls: { mode: "require", cert: "server-cert.pem", key: "server-key.pem" },
        },
      }),
    );
    const p = await spawnDst(["serve", "--config", `${dir}/topology.json`], { ready: /^nbd/ });
    try {
      const uri = p.lines.find((l) => l.startsWith("nbd"))!;
      assert.match(uri, /^nbds:\/\//);
      const info = JSON.parse(await mustRun("nbdinfo", ["--json", withCerts(uri, trusted)]));
      assert.equal(info.TLS, true);
      assert.notEqual((await run("nbdinfo", [uri.replace(/^nbds:/, "nbd:")])).code, 0);
    } finally {
      await p.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
