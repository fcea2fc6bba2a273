#!/usr/bin/env node
// The installed `fulgur` command: runs src/cli.ts on Bun when invoked from Bun, else on Node via tsx.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const r = spawnSync(
  process.execPath,
  [join(root, "scripts/run.mjs"), join(root, "src/cli.ts"), ...process.argv.slice(2)],
  {
    stdio: "inherit",
  },
);
process.exit(r.status ?? 1);
