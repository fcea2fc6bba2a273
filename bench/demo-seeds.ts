// The built-in demo's robustness over seeds (issue 17.8): for each seed, held-out accuracy before
// and after (greedy, 128 tasks, overall and per operation) and the wall time, one JSON line per
// seed; then a summary line: the smallest gain and how many operations ended below their start.
// The goal: every run gains ≥ 20 points and no operation ends below its start.
//   npx tsx bench/demo-seeds.ts [--seeds 10 | seeds…] [--steps N] [--select N] [--kl X]
// Seeds run one after another in this process (each run starts its own server on a free port).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DEMO_DEFAULTS, type DemoOptions, runDemo } from "../src/demo/demo.ts";
import { OPERATIONS } from "../src/demo/tasks.ts";
import { emit } from "./lib.ts";

const { values, positionals } = parseArgs({
  options: {
    seeds: { type: "string", default: "10" },
    steps: { type: "string" },
    select: { type: "string" },
    kl: { type: "string" },
  },
  allowPositionals: true,
});
const seeds = positionals.length
  ? positionals.map(Number)
  : Array.from({ length: Number(values.seeds) }, (_, i) => i + 1);
const overrides: Partial<DemoOptions> = {};
if (values.steps !== undefined) overrides.steps = Number(values.steps);
if (values.select !== undefined) overrides.selectTasks = Number(values.select);
if (values.kl !== undefined) overrides.klCoef = Number(values.kl);
const out = mkdtempSync(join(tmpdir(), "fulgur-bench-demo-seeds-"));
const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
const gains: number[] = [];
let below = 0;
let met = 0;
try {
  for (const seed of seeds) {
    const r = await runDemo(
      { ...DEMO_DEFAULTS, ...overrides, seed, port: 0, json: true, outDir: join(out, `seed-${seed}`) },
      quiet,
    );
    const gain = (r.valAccuracyAfter - r.valAccuracyBefore) * 100;
    const opsBelow = OPERATIONS.filter((op) => r.byOperation[op].after < r.byOperation[op].before);
    gains.push(gain);
    below += opsBelow.length;
    if (gain >= 20 && opsBelow.length === 0) met++;
    emit({
      bench: "demo-seeds",
      metric: "gain",
      value: Number(gain.toFixed(2)),
      unit: "points",
      seed,
      before: r.valAccuracyBefore,
      after: r.valAccuracyAfter,
      byOperation: r.byOperation,
      operationsBelowStart: opsBelow,
      selectedStep: r.selectedStep,
      selections: r.selections,
      steps: r.steps,
      valTasks: r.valTasks,
      selectTasks: r.selectTasks,
      minutes: Number((r.seconds / 60).toFixed(2)),
    });
  }
  emit({
    bench: "demo-seeds",
    metric: "minGain",
    value: Number(Math.min(...gains).toFixed(2)),
    unit: "points",
    seeds: seeds.length,
    meanGain: Number((gains.reduce((a, b) => a + b, 0) / gains.length).toFixed(2)),
    operationsBelowStart: below,
    runsMeetingGoal: met,
  });
} finally {
  rmSync(out, { recursive: true, force: true });
}
