// `npm run bench`: every benchmark, one JSON object per line on stdout.
//   npm run bench -- [kernels|engine|store|proxy|train|demo|constrained ...]   (default: all)

import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const suites: Record<string, string> = {
  kernels: "kernels.ts",
  engine: "engine.ts",
  store: "store.ts",
  "vs-llamacpp": "vs-llamacpp.ts",
  proxy: "proxy.ts",
  train: "train.ts",
  demo: "demo.ts",
  constrained: "constrained.ts",
};
const chosen = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(suites);
for (const name of chosen) {
  const file = suites[name];
  if (!file) {
    console.error(`unknown bench '${name}' (known: ${Object.keys(suites).join(", ")})`);
    process.exit(2);
  }
  // Each suite in its own process: GPU devices and stores do not outlive their suite.
  const r = spawnSync(process.execPath, ["--import", "tsx", join(here, file)], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
