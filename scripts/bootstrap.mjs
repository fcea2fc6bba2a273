#!/usr/bin/env node
// Entry point of the README's commands (`npm run demo`, `npm test`): makes a fresh machine ready,
// saying what it does, then runs the job. Uses only Node built-ins, since it runs before
// `npm install`.
//   node scripts/bootstrap.mjs demo [args]   → installs if needed, sets up a GPU, runs the demo
//   node scripts/bootstrap.mjs test [args]   → same, then runs the test suite (vitest)
//   node scripts/bootstrap.mjs setup         → only the set-up (used by CI before its checks)
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const [job = "demo", ...args] = process.argv.slice(2);
const say = (msg) => console.error(`[fulgur] ${msg}`);

/** Runs a step; `setUp` steps print to stderr, so the job's stdout (`demo --json`) stays pure. */
function run(cmd, cmdArgs, what, setUp = true) {
  const stdio = setUp ? ["inherit", process.stderr, "inherit"] : "inherit";
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio, env: process.env });
  if (r.status !== 0) {
    say(`${what} failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
}

function dependenciesStale() {
  const installed = join(root, "node_modules/.package-lock.json");
  if (!existsSync(installed)) return "node_modules is missing";
  if (statSync(join(root, "package-lock.json")).mtimeMs > statSync(installed).mtimeMs + 1000) {
    return "package-lock.json changed since the last install";
  }
  return null;
}

const stale = dependenciesStale();
if (stale) {
  // `npm install` rather than `npm ci`: the lock cannot list optional platform builds that the
  // registry does not serve (node-llama-cpp's), and `npm ci` refuses such a lock outright.
  say(`installing npm packages (${stale}): npm install`);
  run("npm", ["install", "--no-audit", "--no-fund"], "npm install");
} else {
  say("npm packages are installed");
}

say("checking for a WebGPU adapter (installs Mesa lavapipe on a GPU-less Debian machine)");
run("bash", [join(root, "scripts/setup-gpu.sh")], "GPU set-up");

if (job === "test" || job === "setup") {
  say("checking for Chromium (the dashboard's end-to-end tests drive it)");
  run("bash", [join(root, "scripts/setup-chromium.sh")], "Chromium set-up");
  say("checking for a libSQL server (the shared-store tests run against a real one)");
  run(process.execPath, [join(root, "scripts/setup-sqld.mjs")], "sqld set-up");
}

const bin = (name) => join(root, "node_modules/.bin", name);

/**
 * Runs the suite. A test worker that dies (a native crash in the GPU driver or a database
 * binding) leaves its file unfinished with no failed assertion; such files, and only those, run
 * once more, and the rerun is reported loudly. A worker that dies after all its tests passed
 * (in teardown) names no file, so then the whole suite runs once more. Any failed test fails
 * the run as it is.
 */
function runTests() {
  const summaryFile = join(root, ".fulgur/test-summary.json");
  rmSync(summaryFile, { force: true });
  say(`running the tests: vitest run ${args.join(" ")}`);
  const first = spawnSync(bin("vitest"), ["run", ...args], { cwd: root, stdio: "inherit", env: process.env });
  if (first.status === 0) return;
  const summary = existsSync(summaryFile) ? JSON.parse(readFileSync(summaryFile, "utf8")) : null;
  const onlyCrashes =
    summary &&
    summary.failed.length === 0 &&
    summary.unfinished.length + summary.errors.length > 0 &&
    summary.errors.every((e) => /Worker exited unexpectedly/.test(e));
  if (!onlyCrashes) {
    say(`tests failed (exit ${first.status ?? first.signal})`);
    process.exit(first.status ?? 1);
  }
  const files = summary.unfinished.map((f) => f.file);
  const which = files.length > 0 ? files.join(", ") : "every file (the worker died after its tests passed)";
  say(`a test worker died with no failed test; running ${which} once more`);
  const again = spawnSync(bin("vitest"), ["run", ...files, ...(files.length > 0 ? [] : args)], {
    cwd: root,
    stdio: "inherit",
    env: process.env,
  });
  if (again.status !== 0) {
    say(`tests failed on the rerun too (exit ${again.status ?? again.signal})`);
    process.exit(again.status ?? 1);
  }
  say(`CRASHED WORKER, PASSED ON RERUN: ${which} (everything else passed the first time)`);
}
switch (job) {
  case "setup":
    say("ready");
    break;
  case "test":
    runTests();
    break;
  case "demo":
    say("running the demo");
    run(process.execPath, [join(root, "scripts/run.mjs"), join(root, "src/cli.ts"), "demo", ...args], "demo", false);
    break;
  default:
    say(`unknown job '${job}' (expected demo, test or setup)`);
    process.exit(2);
}
