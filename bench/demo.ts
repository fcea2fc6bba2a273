// The built-in demo, several seeds: held-out accuracy before and after LightningRL and the wall
// time of each run (issue targets: ≥ 15 points, ≤ 15 minutes on a 2-core machine without a GPU).
// Before and after are measured in the same run on the same 128 tasks.
//   npx tsx bench/demo.ts [seeds, default 1 2 3] [--steps N]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DEMO_DEFAULTS, runDemo } from "../src/demo/demo.ts";
import { emit } from "./lib.ts";

const { values, positionals } = parseArgs({
  options: { steps: { type: "string", default: String(DEMO_DEFAULTS.steps) } },
  allowPositionals: true,
});
const seeds = positionals.length ? positionals.map(Number) : [1, 2, 3];
const out = mkdtempSync(join(tmpdir(), "fulgur-bench-demo-"));
// runDemo reports progress as JSON lines; the bench prints only its own records.
const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
try {
  for (const seed of seeds) {
    const r = await runDemo(
      { ...DEMO_DEFAULTS, steps: Number(values.steps), seed, port: 0, json: true, outDir: join(out, `seed-${seed}`) },
      quiet,
    );
    const common = { bench: "demo", seed, steps: r.steps, valTasks: r.valTasks };
    emit({ ...common, metric: "valAccuracyBefore", value: r.valAccuracyBefore, unit: "fraction" });
    emit({ ...common, metric: "valAccuracyAfter", value: r.valAccuracyAfter, unit: "fraction" });
    emit({ ...common, metric: "gain", value: (r.valAccuracyAfter - r.valAccuracyBefore) * 100, unit: "points" });
    emit({ ...common, metric: "wallTime", value: r.seconds / 60, unit: "min" });
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
