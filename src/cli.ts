// The `fulgur` command line: dispatches to the verbs in src/commands/ (one file each; each parses
// its own flags with node:util's parseArgs and has --help).

import { commands } from "./commands/index.ts";

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
