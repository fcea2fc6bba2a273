#!/usr/bin/env node
// Runs a TypeScript entry point on the runtime that invoked the package script: Bun when the
// script was started with `bun run` (its user agent says so), else Node with tsx's loader in the
// same process (`node --import tsx`). Signals are forwarded, so `kill <pid>` of this wrapper stops
// the program (a worker, the server) instead of orphaning it.
//   node scripts/run.mjs src/server.ts [args]
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const [entry, ...args] = process.argv.slice(2);
if (!entry) {
  console.error("usage: node scripts/run.mjs <file.ts> [args]");
  process.exit(2);
}
const onBun = (process.env.npm_config_user_agent ?? "").startsWith("bun/") || "bun" in process.versions;
const [cmd, cmdArgs] = onBun
  ? [process.versions.bun ? process.execPath : join(root, "node_modules/.bin/bun"), [entry, ...args]]
  : [process.execPath, ["--import", "tsx", entry, ...args]];
const child = spawn(cmd, cmdArgs, { stdio: "inherit", cwd: process.cwd() });
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => child.kill(signal));
}
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 128 + 1 : 1)));
