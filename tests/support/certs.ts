/**
 * Test TLS material made with openssl: a throwaway CA and a leaf certificate it signed (the leaf is
 * not the CA) for IP:127.0.0.1 and DNS:localhost, so QUIC tests verify a real chain.
 */

export interface TestCerts {
  /** The CA certificate a dialer trusts (PEM). */
  readonly caCert: string;
  /** The server's leaf certificate (PEM). */
  readonly cert: string;
  /** The leaf's private key (PEM, PKCS#8). */
  readonly key: string;
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

/** Generates a CA and a leaf in a temp dir, reads them, and removes the dir. */
export async function makeTestCerts(): Promise<TestCerts> {
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
    return { caCert: caCert!, cert: cert!, key: key! };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
