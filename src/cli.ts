// The `fulgur` command line: one verb per job. Each verb parses its own flags with node:util's
// parseArgs and has --help.

import { parseArgs } from "node:util";
import { DEMO_USAGE, runDemoCli } from "./demo/demo.ts";
import { EXPORT_USAGE, runExport } from "./export/cli.ts";
import { runWorker, WORKER_USAGE } from "./runner/worker-cli.ts";
import { selfCheck } from "./selfcheck.ts";
import { runServer, SERVER_USAGE } from "./server.ts";
import { EVAL_USAGE, runEval, runTrain, TRAIN_USAGE } from "./trainer/cli.ts";

interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

const commands: Record<string, Command> = {
  serve: {
    summary: "serve the OpenAI-compatible API, the store API and the dashboard",
    usage: SERVER_USAGE.replace(/^Usage: /, ""),
    run: runServer,
  },
  worker: {
    summary: "run an agent on a server's rollouts (a remote runner)",
    usage: WORKER_USAGE.replace(/^Usage: /, ""),
    run: runWorker,
  },
  train: {
    summary: "train an agent with LightningRL from a JSON config",
    usage: TRAIN_USAGE,
    run: runTrain,
  },
  eval: {
    summary: "accuracy of a model (+ adapter) with an agent on a task set",
    usage: EVAL_USAGE,
    run: runEval,
  },
  export: {
    summary: "write a trained adapter as PEFT, or merged into the model as an HF directory or a GGUF file",
    usage: EXPORT_USAGE.replace(/^usage: /, ""),
    run: runExport,
  },
  selfcheck: {
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
  },
  demo: {
    summary: "train the built-in calculator agent with LightningRL and show it improve",
    usage: DEMO_USAGE,
    run: runDemoCli,
  },
};

function help(): string {
  const lines = ["Usage: fulgur <command> [options]", "", "Commands:"];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push("", "Run `fulgur <command> --help` for a command's options.");
  return lines.join("\n");
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(help());
    return name ? 0 : 1;
  }
  const command = commands[name];
  if (!command) {
    console.error(`fulgur: unknown command '${name}'\n\n${help()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`${command.summary}\n\nUsage: ${command.usage}`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    console.error(`fulgur ${name}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("/src/cli.ts")) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
