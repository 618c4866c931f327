/**
 * OS errors that say what they are about. Deno's and node:fs's errors often name neither the
 * address nor the path ("Address already in use (os error 98)"), so each place that listens,
 * connects, opens, stats or creates wraps what it throws with the action and the target:
 * `cannot listen on tcp://127.0.0.1:10809: address already in use`. The error keeps its class
 * and code, so callers that test `instanceof Deno.errors.NotFound` still work.
 */

/** Short reasons (and what to check) by errno code, the same for Deno's and node's errors. */
const REASONS: Record<string, string> = {
  EADDRINUSE: "address already in use (another process listens there; pick another port)",
  EADDRNOTAVAIL: "address not available (is that host an address of this machine?)",
  ECONNREFUSED: "connection refused (is it running and listening there?)",
  ECONNRESET: "connection reset by the peer",
  ETIMEDOUT: "timed out",
  ENETUNREACH: "network unreachable",
  EHOSTUNREACH: "host unreachable",
  ENOENT: "no such file or directory (is the folder there?)",
  EEXIST: "it already exists",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
  ENOTDIR: "a part of the path is not a folder",
  EISDIR: "it is a folder",
  ELOOP: "too many symbolic links",
  ENAMETOOLONG: "the name is too long",
  EBUSY: "device or resource busy",
};

/** {@link osReason}, said for `action`: a Unix socket not there means nothing listens on it. */
export function osReasonFor(action: string, error: Error): string {
  return osErrorCode(error) === "ENOENT" && action.startsWith("connect")
    ? "nothing there (is it running and listening there?)"
    : osReason(error);
}

const WRAPPED = Symbol("dst.osErrorWrapped");

/** The errno code of an OS error (Deno.errors.* or a node:fs error), else undefined. */
export function osErrorCode(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/** The OS's reason in a few lowercase words, without "(os error N)" or node's "ECODE:" prefix. */
export function osReason(error: Error): string {
  const code = osErrorCode(error);
  const known = code === undefined ? undefined : REASONS[code];
  if (known !== undefined) return known;
  const text = error.message
    .replace(/^E[A-Z0-9]+: /, "")
    .replace(/ \(os error \d+\).*$/s, "")
    .replace(/, \w+ '.*'$/s, "");
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/**
 * `error` as `cannot ACTION TARGET: reason`, keeping its class and code. Errors that are not OS
 * errors, or that were wrapped already, are returned unchanged (they carry their own words).
 */
export function osError(action: string, target: string, error: unknown): unknown {
  const code = osErrorCode(error);
  if (code === undefined || (error as { [WRAPPED]?: true })[WRAPPED]) return error;
  const original = error as Error;
  const message = `cannot ${action} ${target}: ${osReasonFor(action, original)}`;
  let wrapped: Error;
  try {
    const Class = original.constructor as new (message: string, options?: ErrorOptions) => Error;
    wrapped = new Class(message, { cause: original });
  } catch {
    wrapped = new Error(message, { cause: original });
  }
  if (wrapped.message !== message) wrapped = new Error(message, { cause: original });
  Object.assign(wrapped, { code, [WRAPPED]: true });
  return wrapped;
}

/** Runs `work`; an OS error it throws is rethrown naming `action` and `target`. */
export async function withOsContext<T>(
  action: string,
  target: string,
  work: () => T | Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw osError(action, target, error);
  }
}
