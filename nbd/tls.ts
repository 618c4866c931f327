/**
 * NBD over TLS, as nbdkit (`--tls`) and qemu-nbd (`--tls-creds`) offer it: the server's
 * certificate and key, optionally a CA that client certificates must chain to, and the mode.
 * `on` is the protocol document's SELECTIVETLS with no TLS-only export (a client may upgrade with
 * NBD_OPT_STARTTLS, plain clients still work); `require` is FORCEDTLS (every option but STARTTLS
 * and ABORT is refused with NBD_REP_ERR_TLS_REQD until the client upgraded). The material is
 * checked when it is loaded, so a wrong file is reported at start, naming the file.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import tls from "node:tls";

export type TlsMode = "on" | "require";
export const TLS_MODES: readonly TlsMode[] = ["on", "require"];

/** TLS material as PEM text, and where each came from (for error messages). */
export interface NbdTlsMaterial {
  readonly mode: TlsMode;
  /** The server's certificate chain (PEM; the leaf first). */
  readonly cert: string;
  /** The certificate's private key (PEM). */
  readonly key: string;
  /** CA certificates (PEM): when given, clients must present a certificate one of them signed. */
  readonly ca?: string;
  /** Where each part was read from, for errors; default "--tls-cert" and so on. */
  readonly from?: { readonly cert?: string; readonly key?: string; readonly ca?: string };
}

/** Files to read the material from. */
export interface NbdTlsFiles {
  readonly mode: TlsMode;
  readonly cert: string;
  readonly key: string;
  readonly ca?: string;
}

/** Bad TLS material: the message names the file (or flag) and what to do. */
export class TlsConfigError extends Error {
  override name = "TlsConfigError";
}

/** What a server needs to upgrade connections: checked material, ready to use. */
export class NbdTls {
  readonly mode: TlsMode;
  /** Client certificates are asked for and must chain to the configured CA. */
  readonly verifyClient: boolean;
  readonly context: tls.SecureContext;
  /** With a CA: why a client's certificate is refused, or null when it chains to the CA. */
  readonly checkClient?: (
    leaf: X509Certificate | undefined,
    intermediates: readonly X509Certificate[],
  ) => string | null;
  /** The leaf's subject and expiry, for the start-up log. */
  readonly subject: string;
  readonly validTo: Date;

  constructor(material: NbdTlsMaterial, now = new Date()) {
    if (!TLS_MODES.includes(material.mode)) {
      throw new TlsConfigError(`TLS mode ${JSON.stringify(material.mode)}: use "on" or "require"`);
    }
    const from = {
      cert: material.from?.cert ?? "--tls-cert",
      key: material.from?.key ?? "--tls-key",
      ca: material.from?.ca ?? "--tls-ca",
    };
    const chain = pemBlocks(material.cert, "CERTIFICATE");
    if (chain.length === 0) {
      throw new TlsConfigError(`${from.cert}: no PEM certificate in it (BEGIN CERTIFICATE)`);
    }
    const leaf = certificate(chain[0]!, from.cert);
    let key;
    try {
      key = createPrivateKey(material.key);
    } catch (error) {
      throw new TlsConfigError(
        `${from.key}: not a PEM private key (${(error as Error).message}); give the key of ` +
          `the certificate in ${from.cert}`,
      );
    }
    if (!leaf.checkPrivateKey(key)) {
      throw new TlsConfigError(
        `${from.key} is not the key of the certificate in ${from.cert} (${leaf.subject}): ` +
          "give the matching pair",
      );
    }
    if (leaf.validToDate.getTime() <= now.getTime()) {
      throw new TlsConfigError(
        `${from.cert}: the certificate (${leaf.subject}) expired on ${leaf.validTo}; renew it`,
      );
    }
    if (leaf.validFromDate.getTime() > now.getTime()) {
      throw new TlsConfigError(
        `${from.cert}: the certificate (${leaf.subject}) is not valid before ${leaf.validFrom}`,
      );
    }
    let ca: string[] | undefined;
    if (material.ca !== undefined) {
      ca = pemBlocks(material.ca, "CERTIFICATE");
      if (ca.length === 0) {
        throw new TlsConfigError(`${from.ca}: no PEM certificate in it (BEGIN CERTIFICATE)`);
      }
      const authorities = ca.map((pem) => certificate(pem, from.ca));
      this.checkClient = (leaf, intermediates) =>
        clientRefusal(leaf, intermediates, authorities, from.ca);
    }
    this.mode = material.mode;
    this.verifyClient = ca !== undefined;
    this.subject = leaf.subject;
    this.validTo = leaf.validToDate;
    this.context = tls.createSecureContext({
      cert: chain.join("\n"),
      key: material.key,
      ...(ca === undefined ? {} : { ca }),
      // The protocol document: TLS 1.2 at least, no older versions by default.
      minVersion: "TLSv1.2",
    });
  }
}

/** Reads and checks the files; a missing or unreadable file is named with what to do. */
export async function loadNbdTls(files: NbdTlsFiles): Promise<NbdTls> {
  const read = async (path: string, what: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      const why = error instanceof Deno.errors.NotFound
        ? "no such file"
        : error instanceof Deno.errors.PermissionDenied
        ? "permission denied"
        : (error as Error).message;
      throw new TlsConfigError(`cannot read ${what} ${path}: ${why}`);
    }
  };
  const [cert, key, ca] = await Promise.all([
    read(files.cert, "the TLS certificate"),
    read(files.key, "the TLS key"),
    files.ca === undefined ? undefined : read(files.ca, "the TLS CA"),
  ]);
  return new NbdTls({
    mode: files.mode,
    cert,
    key,
    ...(ca === undefined ? {} : { ca }),
    from: { cert: files.cert, key: files.key, ...(files.ca === undefined ? {} : { ca: files.ca }) },
  });
}

/** Longest chain from a client's certificate to a configured CA. */
const MAX_CHAIN = 8;

/**
 * Why a client certificate is refused: it must be valid now and signed by one of `authorities`,
 * directly or through intermediates the client sent that are CAs themselves. Null: accepted.
 */
export function clientRefusal(
  leaf: X509Certificate | undefined,
  intermediates: readonly X509Certificate[],
  authorities: readonly X509Certificate[],
  from = "--tls-ca",
  now = Date.now(),
): string | null {
  if (leaf === undefined) return "the client sent no certificate";
  let cert = leaf;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    if (cert.validFromDate.getTime() > now || cert.validToDate.getTime() <= now) {
      return `${cert.subject} is valid only from ${cert.validFrom} to ${cert.validTo}`;
    }
    const signedBy = (issuer: X509Certificate) =>
      cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
    if (authorities.some(signedBy)) return null;
    const next = intermediates.find((i) => i !== cert && i.ca && signedBy(i));
    if (next === undefined) return `${leaf.subject} is not signed by a CA in ${from}`;
    cert = next;
  }
  return `the chain of ${leaf.subject} is longer than ${MAX_CHAIN}`;
}

function certificate(pem: string, from: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new TlsConfigError(`${from}: a certificate in it does not parse (${error})`);
  }
}

/** The PEM blocks of `label` in `text`, each with its BEGIN and END lines. */
function pemBlocks(text: string, label: string): string[] {
  const pattern = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, "g");
  return text.match(pattern) ?? [];
}
