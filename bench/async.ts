// Synchronous vs asynchronous LightningRL on the built-in demo (models/fulgur-calc, the calculator
// agent, the demo's task split), in the same run: wall seconds per training step, how long each
// step waits for its rollouts and how long its update takes, and in async mode the staleness and
// the importance weights. Same seed, same adapter init, same tasks for both; no validation.
//   npx tsx bench/async.ts [--steps 6] [--max-staleness 1] [--tasks-per-step 8] [--samples 4]

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { train } from "../src/compose.ts";
import { DEMO_DEFAULTS } from "../src/demo/demo.ts";
import { type ArithmeticTask, demoSplits } from "../src/demo/tasks.ts";
import { loadModel } from "../src/model/model.ts";
import type { Agent } from "../src/runner/types.ts";
import { openStore } from "../src/store/libsql.ts";
import type { AlgorithmConfig } from "../src/trainer/config.ts";
import { emit } from "./lib.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "6" },
    "max-staleness": { type: "string", default: "1" },
    "tasks-per-step": { type: "string", default: String(DEMO_DEFAULTS.tasksPerStep) },
    samples: { type: "string", default: String(DEMO_DEFAULTS.samplesPerTask) },
    seed: { type: "string", default: "1" },
  },
});
const steps = Number(values.steps);
const seed = Number(values.seed);
const { agent } = (await import(join(ROOT, "examples/calculator-agent.ts"))) as { agent: Agent<ArithmeticTask> };
const model = await loadModel(join(ROOT, "models/fulgur-calc"), { maxSlots: 32, maxSeqLen: 512 });
const base = { tasksPerStep: Number(values["tasks-per-step"]), samplesPerTask: Number(values.samples) };
const modes: [string, AlgorithmConfig][] = [
  ["sync", base],
  ["async", { ...base, async: { maxStaleness: Number(values["max-staleness"]) } }],
];
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
const perStep: Record<string, number> = {};
try {
  for (const [mode, algorithm] of modes) {
    const store = await openStore(":memory:");
    const started = performance.now();
    const fit = await train<ArithmeticTask>({
      model,
      store,
      agent,
      concurrency: 32,
      algorithm,
      lora: { rank: DEMO_DEFAULTS.rank, alpha: DEMO_DEFAULTS.rank * 2, seed },
      optimizer: { lr: DEMO_DEFAULTS.lr },
      valEvery: 0,
      seed,
      data: { train: demoSplits().train },
      steps,
    });
    const seconds = (performance.now() - started) / 1000;
    model.removeAdapter();
    await store.close();
    const h = fit.history;
    const common = { bench: "async", mode, steps, ...base };
    perStep[mode] = seconds / steps;
    emit({ ...common, metric: "secondsPerStep", value: seconds / steps, unit: "s" });
    emit({ ...common, metric: "rolloutWaitSeconds", value: mean(h.map((m) => m.rolloutSeconds)), unit: "s" });
    emit({ ...common, metric: "updateSeconds", value: mean(h.map((m) => m.updateSeconds)), unit: "s" });
    emit({ ...common, metric: "rewardMean", value: mean(h.map((m) => m.rewardMean)), unit: "reward" });
    emit({ ...common, metric: "stalenessMean", value: mean(h.map((m) => m.stalenessMean)), unit: "versions" });
    emit({ ...common, metric: "failedRollouts", value: h.reduce((a, m) => a + m.failedRollouts, 0), unit: "rollouts" });
    emit({ ...common, metric: "droppedStale", value: h.reduce((a, m) => a + m.droppedStale, 0), unit: "samples" });
    if (mode === "async") {
      emit({ ...common, metric: "isWeightMean", value: mean(h.map((m) => m.isWeightMean)), unit: "weight" });
      emit({
        ...common,
        metric: "isTruncatedFraction",
        value: mean(h.map((m) => m.isTruncatedFraction)),
        unit: "fraction",
      });
    }
  }
  emit({
    bench: "async",
    metric: "speedup",
    value: perStep.sync / perStep.async,
    unit: "x",
    note: "sync seconds per step / async seconds per step, same run",
  });
} finally {
  model.dispose();
}
