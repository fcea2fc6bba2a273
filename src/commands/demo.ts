// `fulgur demo`: the built-in demo (src/demo/demo.ts owns its options, run and report).
import { DEMO_USAGE, runDemoCli } from "../demo/demo.ts";
import type { Command } from "./command.ts";

export const command: Command = {
  summary: "train the built-in calculator agent with LightningRL and show it improve",
  usage: DEMO_USAGE,
  run: runDemoCli,
};
