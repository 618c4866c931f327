/**
 * How to run this same `dst` again as a child process (`dst start` runs its nodes so, drills
 * their processes): from a checkout, main.ts with the checkout's config and runtime lock; from an
 * installed copy (one bundled file, see deploy/install.ts), that file with no config at all, so
 * nothing depends on where a checkout is or what the current folder holds.
 */

/** True when this module runs from its source file, not from a bundle. */
const fromSource = import.meta.url.endsWith("/cli/self.ts");

/** The deno arguments before a dst subcommand, e.g. `[run, ..., main.ts]`. */
export function selfArgs(): string[] {
  const common = ["run", "--unstable-net", "--allow-all"];
  if (fromSource) {
    const at = (path: string) => new URL(path, import.meta.url).pathname;
    return [
      ...common,
      "--config",
      at("../deno.json"),
      "--lock",
      at("../main.lock"),
      at("../main.ts"),
    ];
  }
  return [...common, "--no-config", new URL(Deno.mainModule).pathname];
}

/** A Deno.Command that runs `dst ARGS...`. */
export function selfCommand(args: readonly string[], options: Deno.CommandOptions = {}) {
  return new Deno.Command(Deno.execPath(), { ...options, args: [...selfArgs(), ...args] });
}
