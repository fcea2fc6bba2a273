// `npm run bench`: every benchmark, one JSON object per line on stdout.
//   npm run bench -- [kernels|engine|store|proxy|train|demo|constrained|trajectory|multi-adapter|scale ...]   (default: all)
// `scale` runs bench/scale.ts --quick here (the full 8 × 1,024-token 0.5B update takes hours on a
// software adapter); run it directly for full sizes, or bench/gpu.sh on a real GPU.

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
  trajectory: "trajectory.ts --quick",
  "multi-adapter": "multi-adapter.ts",
  scale: "scale.ts --quick",
};
const chosen = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(suites);
for (const name of chosen) {
  const file = suites[name];
  if (!file) {
    console.error(`unknown bench '${name}' (known: ${Object.keys(suites).join(", ")})`);
    process.exit(2);
  }
  // Each suite in its own process: GPU devices and stores do not outlive their suite.
  const [script, ...args] = file.split(" ");
  const r = spawnSync(process.execPath, ["--import", "tsx", join(here, script), ...args], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
