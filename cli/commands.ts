/** The list of `dst` subcommands, in the order `dst --help` shows them. */
import type { Command } from "./command.ts";
import { ctlCommand } from "./ctl.ts";
import { drillCommand } from "./drill.ts";
import { exportCommand } from "./export.ts";
import { nodeCommand } from "./node.ts";
import { serveCommand } from "./serve.ts";
import { startCommand } from "./start.ts";
import { statusCommand } from "./status.ts";

export const commands: readonly Command[] = [
  startCommand,
  serveCommand,
  nodeCommand,
  exportCommand,
  statusCommand,
  ctlCommand,
  drillCommand,
];
