/** The cluster secret, from a file named on the command line or the DST_SECRET variable. */
import { osReason } from "../util/os_error.ts";
import { UsageError } from "./command.ts";

/** The secret from `path` (when given) or DST_SECRET; undefined when there is neither. */
export async function readSecret(
  path: string | undefined,
  flag = "--secret-file",
): Promise<string | undefined> {
  if (path === undefined) {
    const env = Deno.env.get("DST_SECRET");
    return env === undefined || env === "" ? undefined : env;
  }
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new UsageError(`cannot read ${flag} ${path}: ${osReason(error as Error)}`);
  }
  // A trailing newline from `echo secret > file` is not part of the secret.
  const secret = text.replace(/\r?\n$/, "");
  if (secret === "") throw new UsageError(`${flag} ${path} is empty`);
  return secret;
}
