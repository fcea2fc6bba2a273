// `fulgur selfcheck`: whether this machine runs Fulgur's GPU kernels (src/selfcheck.ts).
import { parseArgs } from "node:util";
import { selfCheck } from "../selfcheck.ts";
import type { Command } from "./command.ts";

export const command: Command = {
  summary: "check that this machine can run Fulgur's GPU kernels",
  usage: "fulgur selfcheck [--json]",
  async run(argv) {
    const { values } = parseArgs({ args: argv, options: { json: { type: "boolean" } } });
    const log = values.json ? () => {} : (line: string) => console.log(`  ${line}`);
    if (!values.json) console.log("Fulgur GPU self-check");
    const result = await selfCheck(log);
    if (values.json) console.log(JSON.stringify({ event: "selfcheck", ...result }));
    else console.log(result.ok ? "OK: this machine runs Fulgur's kernels." : "FAILED");
    return result.ok ? 0 : 1;
  },
};
