/**
 * Test TLS material made with openssl: a throwaway CA and a leaf certificate it signed (the leaf is
 * not the CA) for IP:127.0.0.1 and DNS:localhost, so QUIC and NBD TLS tests verify a real chain;
 * on request also a client certificate the CA signed, and the certificate folder libnbd and qemu
 * read (ca-cert.pem, client-cert.pem, client-key.pem).
 */

export interface TestCerts {
  /** The CA certificate a dialer trusts (PEM). */
  readonly caCert: string;
  /** The server's leaf certificate (PEM). */
  readonly cert: string;
  /** The leaf's private key (PEM, PKCS#8). */
  readonly key: string;
  /** A client certificate the CA signed, and its key (with `{ client: true }`). */
  readonly clientCert?: string;
  readonly clientKey?: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(
      `openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)} (is openssl installed?)`,
    );
  }
}

/** Generates a CA and a leaf (and a client certificate) in a temp dir, reads them, removes it. */
export async function makeTestCerts(options: { client?: boolean } = {}): Promise<TestCerts> {
  const dir = await Deno.makeTempDir({ prefix: "dst-certs-" });
  try {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    await openssl([
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=dst test CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ], dir); // deno-fmt-ignore
    await openssl(
      ["req", ...ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"],
      dir,
    );
    await Deno.writeTextFile(
      `${dir}/leaf.ext`,
      [
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        "extendedKeyUsage=serverAuth",
      ].join("\n") + "\n",
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "leaf.pem",
      "-days",
      "2",
      "-extfile",
      "leaf.ext",
    ], dir); // deno-fmt-ignore
    const [caCert, cert, key] = await Promise.all(
      ["ca.pem", "leaf.pem", "leaf.key"].map((name) => Deno.readTextFile(`${dir}/${name}`)),
    );
    if (!options.client) return { caCert: caCert!, cert: cert!, key: key! };
    await openssl(
      ["req", ...ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=dst test client"],
      dir,
    );
    await Deno.writeTextFile(
      `${dir}/client.ext`,
      "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
        "extendedKeyUsage=clientAuth\n",
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      "client.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "client.pem",
      "-days",
      "2",
      "-extfile",
      "client.ext",
    ], dir); // deno-fmt-ignore
    const [clientCert, clientKey] = await Promise.all(
      ["client.pem", "client.key"].map((name) => Deno.readTextFile(`${dir}/${name}`)),
    );
    return {
      caCert: caCert!,
      cert: cert!,
      key: key!,
      clientCert: clientCert!,
      clientKey: clientKey!,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Writes the folder libnbd (`tls-certificates=DIR`) and qemu (`tls-creds-x509,dir=DIR`) read as
 * a client: the CA to trust, and the client certificate when there is one. Returns `dir`.
 */
export async function writeClientCertDir(dir: string, certs: TestCerts): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/ca-cert.pem`, certs.caCert);
  if (certs.clientCert !== undefined && certs.clientKey !== undefined) {
    await Deno.writeTextFile(`${dir}/client-cert.pem`, certs.clientCert);
    await Deno.writeTextFile(`${dir}/client-key.pem`, certs.clientKey, { mode: 0o600 });
  }
  return dir;
}
