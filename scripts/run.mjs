#!/usr/bin/env node
// Runs a TypeScript entry point on the runtime that invoked the package script: Bun when the
// script was started with `bun run` (its user agent says so), else Node through tsx.
//   node scripts/run.mjs src/server.ts [args]
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const [entry, ...args] = process.argv.slice(2);
if (!entry) {
  console.error("usage: node scripts/run.mjs <file.ts> [args]");
  process.exit(2);
}
const onBun = (process.env.npm_config_user_agent ?? "").startsWith("bun/") || "bun" in process.versions;
const bin = (name) => join(root, "node_modules/.bin", name);
const [cmd, cmdArgs] = onBun
  ? [process.versions.bun ? process.execPath : bin("bun"), [entry, ...args]]
  : [bin("tsx"), [entry, ...args]];
const r = spawnSync(cmd, cmdArgs, { stdio: "inherit" });
process.exit(r.status ?? 1);
