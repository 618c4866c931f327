/**
 * The bearer token that guards the status endpoint's control actions: read from a file (made,
 * mode 0600, on the first start when missing, so it stays the same across restarts), or from
 * DST_STATUS_TOKEN, or else made fresh for this run. Compared in constant time.
 */
import { timingSafeEqual } from "node:crypto";

export interface StatusToken {
  readonly token: string;
  /** True when this run made the token, so the user must be told it. */
  readonly generated: boolean;
  /** Where it came from, for the log: a path, "DST_STATUS_TOKEN" or "generated". */
  readonly source: string;
}

/** 32 random bytes as hex. */
export function newToken(): string {
  return [...crypto.getRandomValues(new Uint8Array(32))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The token from `file` (made when missing), else DST_STATUS_TOKEN, else a fresh one. */
export async function loadStatusToken(file?: string): Promise<StatusToken> {
  if (file !== undefined) {
    try {
      const token = (await Deno.readTextFile(file)).trim();
      if (token.length < 16) {
        throw new Error(
          `status token file ${file} holds fewer than 16 characters: use a longer one`,
        );
      }
      return { token, generated: false, source: file };
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    const token = newToken();
    await Deno.writeTextFile(file, `${token}\n`, { mode: 0o600, createNew: true });
    return { token, generated: true, source: file };
  }
  const env = Deno.env.get("DST_STATUS_TOKEN");
  if (env !== undefined && env !== "") {
    return { token: env, generated: false, source: "DST_STATUS_TOKEN" };
  }
  return { token: newToken(), generated: true, source: "generated" };
}

const encoder = new TextEncoder();

/** True when an Authorization header carries exactly `Bearer <token>`. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (header === undefined) return false;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (match === null) return false;
  const given = encoder.encode(match[1]!);
  const want = encoder.encode(token);
  // Equal lengths for timingSafeEqual; the length itself is not the secret.
  return given.length === want.length && timingSafeEqual(given, want);
}
