#!/usr/bin/env node
// The installed `fulgur` command: runs src/cli.ts through scripts/run.mjs (Bun when invoked from
// Bun, else Node with tsx's loader), in this same process so signals reach the program.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
process.argv.splice(2, 0, join(root, "src/cli.ts"));
await import(join(root, "scripts/run.mjs"));
