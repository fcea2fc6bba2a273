// Every `fulgur` verb, in the order `fulgur --help` lists them (one file per verb).
import type { Command } from "./command.ts";
import { command as demo } from "./demo.ts";
import { evalCommand } from "./eval.ts";
import { command as exportCommand } from "./export.ts";
import { command as selfcheck } from "./selfcheck.ts";
import { command as serve } from "./serve.ts";
import { trainCommand } from "./train.ts";
import { command as worker } from "./worker.ts";

export type { Command } from "./command.ts";

export const commands: Record<string, Command> = {
  serve,
  worker,
  train: trainCommand,
  eval: evalCommand,
  export: exportCommand,
  selfcheck,
  demo,
};
