/**
 * The flags that put an NBD export behind TLS, shared by `dst export` and `dst serve` so both
 * spell, check and explain them the same way: `--tls on|require|off`, `--tls-cert`, `--tls-key`
 * and `--tls-ca` (client certificates must chain to it), as nbdkit's `--tls` and qemu-nbd's
 * `--tls-creds` offer.
 */
import type { NbdTlsFiles, TlsMode } from "../nbd/tls.ts";
import { UsageError } from "./command.ts";

/** For parseFlags: spread into a command's options. */
export const tlsFlags = {
  tls: { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-ca": { type: "string" },
} as const;

type TlsFlagValues = { [K in keyof typeof tlsFlags]?: string | undefined };

/** Help lines for the flags, descriptions starting at `column`. */
export function tlsHelp(column: number): string {
  const pad = " ".repeat(column);
  const entries: [string, string[]][] = [
    ["--tls on|require|off", [
      "NBD over TLS (NBD_OPT_STARTTLS; clients use nbds:// URIs): on lets clients",
      "upgrade and plain ones still in; require refuses every client that does not",
      "upgrade first (default off)",
    ]],
    ["--tls-cert PATH", ["the server's certificate chain (PEM), for --tls"]],
    ["--tls-key PATH", ["its private key (PEM)"]],
    ["--tls-ca PATH", [
      "CA certificates (PEM): clients must present a certificate one of them signed",
    ]],
  ];
  return entries.map(([flag, lines]) =>
    [`  ${flag}`, ...lines.map((line) => pad + line)].join("\n")
  ).join("\n");
}

/** The TLS files the flags ask for; undefined when TLS is off. A UsageError names a mistake. */
export function tlsFilesFrom(values: TlsFlagValues): NbdTlsFiles | undefined {
  const mode = values.tls;
  const files = { cert: values["tls-cert"], key: values["tls-key"], ca: values["tls-ca"] };
  const given = Object.entries(files).filter(([, v]) => v !== undefined).map(([k]) => `--tls-${k}`);
  if (mode === undefined || mode === "off") {
    if (given.length > 0) {
      throw new UsageError(`${given.join(", ")} go with --tls on or --tls require`);
    }
    return undefined;
  }
  if (mode !== "on" && mode !== "require") {
    throw new UsageError(`--tls ${JSON.stringify(mode)}: use on, require or off`);
  }
  if (files.cert === undefined || files.key === undefined) {
    throw new UsageError(`--tls ${mode} needs --tls-cert PATH and --tls-key PATH`);
  }
  return {
    mode: mode as TlsMode,
    cert: files.cert,
    key: files.key,
    ...(files.ca === undefined ? {} : { ca: files.ca }),
  };
}
