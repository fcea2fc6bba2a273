// `fulgur demo` (`npm run demo`): the main job out of the box. Starts the server (OpenAI proxy,
// store, dashboard) on the built-in model, trains the built-in calculator agent
// (examples/calculator-agent.ts, unchanged) with LightningRL through that server, and ends with
// validation accuracy before and after on held-out tasks, plus where the adapter and metrics went.

import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { withAgents } from "../compose.ts";
import { Progress } from "../progress.ts";
import type { Agent } from "../runner/types.ts";
import { type FulgurServer, startServer } from "../server.ts";
import { evaluateTasks } from "../trainer/algorithm.ts";
import type { AlgorithmConfig } from "../trainer/config.ts";
import { LightningRL } from "../trainer/lightning-rl.ts";
import { Trainer } from "../trainer/trainer.ts";
import {
  balancedOrder,
  type Candidate,
  chooseCandidate,
  restoreAdapter,
  type SplitAccuracy,
  selectionTasks,
  snapshotAdapter,
  splitAccuracy,
} from "./selection.ts";
import { type ArithmeticTask, demoSplits, OPERATIONS, type Operation } from "./tasks.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface DemoOptions {
  /** Training steps (each: tasksPerStep tasks × samplesPerTask rollouts, one update). */
  steps: number;
  seed: number;
  modelDir: string;
  /**
   * Where the store, log, metrics and adapter go; it must not hold an earlier run's store. ""
   * picks runs/demo-seed-<seed>, or runs/demo-seed-<seed>-2, -3, … when that one is taken.
   */
  outDir: string;
  /** Dashboard/API port; 0 = any free port. When the port is taken another one is used. */
  port: number;
  tasksPerStep: number;
  samplesPerTask: number;
  lr: number;
  rank: number;
  /** Held-out tasks measured before and after training (at most the val split's 128). */
  valTasks: number;
  /**
   * Selection tasks (their own split) validated every valEvery steps; the adapter kept is the best
   * of those validations (see selection.ts). 0 = no selection: keep the last adapter.
   */
  selectTasks: number;
  valEvery: number;
  /** k3 KL to the adapter-off policy (0 = off). */
  klCoef: number;
  /** More LightningRL options (trajectory, lossNormalization, async, credit, …; src/trainer/config.ts). */
  algorithm?: AlgorithmConfig;
  /** JSON lines instead of the bar and table; default: when the output is not a terminal. */
  json?: boolean;
  /** Keep serving the dashboard after training until interrupted. */
  keepServing: boolean;
}

export const DEMO_DEFAULTS: DemoOptions = {
  steps: 30,
  seed: 1,
  modelDir: join(ROOT, "models/fulgur-calc"),
  outDir: "",
  port: 8000,
  tasksPerStep: 8,
  samplesPerTask: 4,
  lr: 4e-3,
  rank: 8,
  valTasks: 128,
  selectTasks: 64,
  valEvery: 5,
  klCoef: 0.04,
  keepServing: false,
};

export const DEMO_USAGE = `fulgur demo [options]          (npm run demo -- [options] / bun run demo -- [options])
  Trains the built-in calculator agent on the built-in model with LightningRL and reports
  validation accuracy before and after. Watch it at the printed dashboard URL.
  --steps N            training steps (default ${DEMO_DEFAULTS.steps})
  --seed N             seed of the adapter init and task order (default ${DEMO_DEFAULTS.seed})
  --model DIR          base model (default models/fulgur-calc)
  --out DIR            store, log, metrics and adapter; must be new (default runs/demo-seed-N[-2, -3, …])
  --port N             dashboard/API port (default ${DEMO_DEFAULTS.port}; a free one if taken)
  --tasks-per-step N   tasks per step (default ${DEMO_DEFAULTS.tasksPerStep})
  --samples N          rollouts per task, the GRPO group (default ${DEMO_DEFAULTS.samplesPerTask})
  --lr X               adapter learning rate (default ${DEMO_DEFAULTS.lr})
  --rank N             LoRA rank (default ${DEMO_DEFAULTS.rank})
  --val N              held-out tasks, measured before and after (default ${DEMO_DEFAULTS.valTasks}, at most 128)
  --select N           selection tasks validated every --val-every steps to pick the adapter kept
                       (default ${DEMO_DEFAULTS.selectTasks}; 0 = keep the last adapter)
  --val-every N        validate the selection tasks every N steps (default ${DEMO_DEFAULTS.valEvery})
  --kl X               KL coefficient to the base policy (default ${DEMO_DEFAULTS.klCoef}; 0 = off)
  --keep-serving       keep the server and dashboard up after training (Ctrl-C to stop)
  --json               one JSON object per line, the last {"event":"done",...} (the default when
                       the output is not a terminal)`;

export interface DemoResult {
  valAccuracyBefore: number;
  valAccuracyAfter: number;
  valTasks: number;
  steps: number;
  seed: number;
  seconds: number;
  rewardFirst: number;
  rewardLast: number;
  /** Held-out accuracy per operation, before and after. */
  byOperation: Record<Operation, { before: number; after: number }>;
  /** The step whose adapter was kept (chosen on the selection split), and that split's size. */
  selectedStep: number;
  selectTasks: number;
  /** Every validation of the selection split: step, accuracy, per operation. */
  selections: { step: number; accuracy: number; byOperation: Record<Operation, number> }[];
  adapter: string;
  metrics: string;
  log: string;
  store: string;
  dashboard: string;
}

/** Parses `fulgur demo` flags. */
export function parseDemoArgs(argv: string[]): DemoOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      steps: { type: "string" },
      seed: { type: "string" },
      model: { type: "string" },
      out: { type: "string" },
      port: { type: "string" },
      "tasks-per-step": { type: "string" },
      samples: { type: "string" },
      lr: { type: "string" },
      rank: { type: "string" },
      val: { type: "string" },
      select: { type: "string" },
      "val-every": { type: "string" },
      kl: { type: "string" },
      "keep-serving": { type: "boolean" },
      json: { type: "boolean" },
    },
  });
  const number = (flag: string, value: string | undefined, fallback: number, integer = true, min = 1): number => {
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n)))
      throw new Error(`--${flag} must be ${integer ? "an integer" : "a number"} >= ${min}, got '${value}'`);
    return n;
  };
  const d = DEMO_DEFAULTS;
  const seed = number("seed", values.seed, d.seed, true, 0);
  const lr = number("lr", values.lr, d.lr, false, 0);
  if (lr <= 0) throw new Error(`--lr must be > 0, got '${values.lr}'`);
  return {
    steps: number("steps", values.steps, d.steps),
    seed,
    modelDir: resolve(values.model ?? d.modelDir),
    outDir: values.out === undefined ? "" : resolve(values.out),
    port: number("port", values.port, d.port, true, 0),
    tasksPerStep: number("tasks-per-step", values["tasks-per-step"], d.tasksPerStep),
    samplesPerTask: number("samples", values.samples, d.samplesPerTask, true, 2),
    lr,
    rank: number("rank", values.rank, d.rank),
    valTasks: Math.min(number("val", values.val, d.valTasks), demoSplits().val.length),
    selectTasks: number("select", values.select, d.selectTasks, true, 0),
    valEvery: number("val-every", values["val-every"], d.valEvery),
    klCoef: number("kl", values.kl, d.klCoef, false, 0),
    json: values.json,
    keepServing: values["keep-serving"] ?? false,
  };
}

async function startDemoServer(options: DemoOptions, storeFile: string): Promise<FulgurServer> {
  const start = (port: number) =>
    startServer({ modelDir: options.modelDir, storeUrl: `file:${storeFile}`, port, maxSlots: 32, maxSeqLen: 512 });
  try {
    return await start(options.port);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || options.port === 0) throw err;
    return await start(0);
  }
}

/** `base`, or `base-2`, `base-3`, … : the first that holds no run yet. */
function freeRunDir(base: string): string {
  let dir = base;
  for (let i = 2; existsSync(join(dir, "store.db")); i++) dir = `${base}-${i}`;
  return dir;
}

const OPERATION_NAMES: Record<Operation, string> = {
  add: "addition",
  sub: "subtraction",
  mul: "multiplication",
  div: "division",
};

const percent = (x: number) => `${(x * 100).toFixed(1)}%`;
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/** Runs the demo; `stream` receives the progress (a TTY gets the bar, anything else JSON lines). */
export async function runDemo(given: DemoOptions, stream: NodeJS.WriteStream = process.stdout): Promise<DemoResult> {
  const started = performance.now();
  const options = { ...given, outDir: given.outDir || freeRunDir(resolve(`runs/demo-seed-${given.seed}`)) };
  // Reusing a store would mix two runs' rollouts (and their validation groups): refuse, delete nothing.
  if (existsSync(join(options.outDir, "store.db")))
    throw new Error(`${options.outDir} already holds a run (store.db); give a new --out or remove it`);
  const progress = new Progress({ json: options.json, stream });
  await mkdir(options.outDir, { recursive: true });
  const storeFile = join(options.outDir, "store.db");
  const logFile = join(options.outDir, "train.jsonl");
  const metricsFile = join(options.outDir, "metrics.json");
  const adapterDir = join(options.outDir, "adapter");
  const show = (p: string) => relative(process.cwd(), p) || ".";

  const server = await startDemoServer(options, storeFile);
  try {
    const model = server.model!;
    const dashboard = `${server.url}/`;
    progress.event(
      { event: "start", model: options.modelDir, device: model.gpu.info.description, dashboard, out: options.outDir },
      `Fulgur demo: training the calculator agent on ${show(options.modelDir)} (${model.gpu.info.description})\n` +
        `  dashboard: ${dashboard}\n  output:    ${show(options.outDir)}`,
    );
    const { agent } = (await import(new URL("../../examples/calculator-agent.ts", import.meta.url).href)) as {
      agent: Agent<ArithmeticTask>;
    };
    const splits = demoSplits();
    // Every step sees every operation (see selection.ts), in a seeded order.
    const train = balancedOrder(splits.train, options.seed);
    const val = splits.val.slice(0, options.valTasks);
    const select = selectionTasks(options.selectTasks);
    const rewards: number[] = [];
    const candidates: Candidate[] = [];
    const stepSeconds: number[] = [];
    let lastVal: number | null = null;
    let stepStarted = performance.now();
    // Fits an 80-column terminal after the bar: "[####…] 12/30 reward 0.71 · val 75.8% · 4.1 s/step · ETA 1:14".
    const label = (phase: string) => {
      const reward = rewards.length ? mean(rewards.slice(-5)).toFixed(2) : "-";
      const acc = lastVal === null ? "-" : percent(lastVal);
      return `reward ${reward} · val ${acc} · ${phase}`;
    };
    progress.update(0, options.steps, label("validating the base model"));
    // A timed-out rollout counts as wrong: on a busy 2-core machine a 64-rollout validation can
    // take minutes, and slowness must not read as a wrong answer.
    const rolloutTimeoutMs = 900_000;
    const algorithm = new LightningRL<ArithmeticTask>({
      lora: { rank: options.rank, alpha: options.rank * 2, seed: options.seed },
      optimizer: { lr: options.lr },
      algorithm: {
        samplesPerTask: options.samplesPerTask,
        tasksPerStep: options.tasksPerStep,
        klCoef: options.klCoef,
        ...options.algorithm,
      },
      valEvery: options.valEvery,
      rolloutTimeoutMs,
      seed: options.seed,
    });
    const trainer = new Trainer<ArithmeticTask>({
      model,
      store: server.store,
      algorithm,
      logFile,
      onEvent: (e) => {
        if (e.type === "step") {
          const m = e.metrics;
          rewards.push(m.rewardMean);
          const seconds = (performance.now() - stepStarted) / 1000;
          stepStarted = performance.now();
          progress.event({ event: "step", step: e.step, seconds, ...m });
          stepSeconds.push(seconds);
          const eta = Math.round(mean(stepSeconds) * (options.steps - e.step));
          const clock = `${Math.floor(eta / 60)}:${String(eta % 60).padStart(2, "0")}`;
          progress.update(e.step, options.steps, label(`${seconds.toFixed(1)} s/step · ETA ${clock}`));
        } else if (e.type === "validation") {
          // The Trainer validates the selection split; the held-out split is measured only before and after.
          lastVal = e.accuracy;
          const selection = splitAccuracy(e.results);
          candidates.push({ step: e.step, selection, snapshot: snapshotAdapter(model.adapter!) });
          progress.event(
            {
              event: "validation",
              split: "selection",
              step: e.step,
              accuracy: e.accuracy,
              rewardMean: e.rewardMean,
              tasks: select.length,
              byOperation: selection.byOperation,
            },
            `step ${String(e.step).padStart(3)}: selection accuracy ${percent(e.accuracy)} on ${select.length} tasks`,
          );
          progress.update(e.step, options.steps, label("training"));
          stepStarted = performance.now();
        } else if (e.type === "rollouts" && e.total > 0) {
          progress.update(e.step, options.steps, label(`${e.done} rollouts in`));
        }
      },
    });
    // Validation rollouts are greedy (the agent uses temperature 0 outside training), so each
    // accuracy is a function of the adapter alone.
    const measure = async (step: number, when: string): Promise<SplitAccuracy> => {
      const r = await evaluateTasks(server.store, val, {
        mode: "test",
        group: `test-${step}`,
        run: { resources: step > 0 ? { name: "adapter" } : undefined, maxAttempts: 2, timeoutMs: rolloutTimeoutMs },
      });
      const acc = splitAccuracy(r.results);
      progress.event(
        {
          event: "validation",
          split: "held-out",
          step,
          accuracy: acc.accuracy,
          tasks: val.length,
          byOperation: acc.byOperation,
        },
        `step ${String(step).padStart(3)}: held-out accuracy ${percent(acc.accuracy)} on ${val.length} tasks (${when})`,
      );
      return acc;
    };
    const run = await withAgents(
      { model, store: server.store, agent, serverUrl: server.url, concurrency: 32 },
      async () => {
        const before = await measure(0, "before training");
        lastVal = before.accuracy;
        const fit = await trainer.fit({ train, val: select.length ? select : undefined }, options.steps);
        // The adapter kept: the best validation on the selection split (never the held-out one).
        const chosen = chooseCandidate(
          candidates.length ? candidates : [{ step: fit.steps, selection: null, snapshot: null }],
        );
        if (chosen.snapshot && chosen.step !== fit.steps) await restoreAdapter(model.adapter!, chosen.snapshot);
        progress.update(options.steps, options.steps, label("measuring the held-out tasks"));
        const after = await measure(
          fit.steps,
          chosen.step === fit.steps
            ? "after training"
            : `adapter of step ${chosen.step}, chosen on the selection tasks`,
        );
        return { fit, chosen, heldOutBefore: before, heldOutAfter: after };
      },
    ).finally(() => trainer.close());
    const { fit, chosen, heldOutBefore, heldOutAfter } = run;
    await model.saveAdapter(adapterDir);
    progress.clear();

    const before = heldOutBefore.accuracy;
    const after = heldOutAfter.accuracy;
    const byOperation = Object.fromEntries(
      OPERATIONS.map((op) => [op, { before: heldOutBefore.byOperation[op], after: heldOutAfter.byOperation[op] }]),
    ) as DemoResult["byOperation"];
    const head = Math.min(5, rewards.length);
    const result: DemoResult = {
      valAccuracyBefore: before,
      valAccuracyAfter: after,
      valTasks: val.length,
      steps: fit.steps,
      seed: options.seed,
      seconds: (performance.now() - started) / 1000,
      rewardFirst: mean(rewards.slice(0, head)),
      rewardLast: mean(rewards.slice(-head)),
      byOperation,
      selectedStep: chosen.step,
      selectTasks: select.length,
      selections: candidates.map((c) => ({
        step: c.step,
        accuracy: c.selection!.accuracy,
        byOperation: c.selection!.byOperation,
      })),
      adapter: adapterDir,
      metrics: metricsFile,
      log: logFile,
      store: storeFile,
      dashboard,
    };
    await writeFile(
      metricsFile,
      `${JSON.stringify({ ...result, options, validation: fit.validation, history: fit.history, heldOut: { before: heldOutBefore, after: heldOutAfter } }, null, 2)}\n`,
    );
    const change = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)} points`;
    const table = [
      "",
      `                          before     after   change`,
      `  held-out accuracy    ${percent(before).padStart(8)}  ${percent(after).padStart(8)}   ${change(after - before)}   (${val.length} held-out tasks)`,
      ...OPERATIONS.map(
        (op) =>
          `    ${OPERATION_NAMES[op].padEnd(18)} ${percent(byOperation[op].before).padStart(8)}  ${percent(byOperation[op].after).padStart(8)}   ${change(byOperation[op].after - byOperation[op].before)}`,
      ),
      `  train reward         ${result.rewardFirst.toFixed(3).padStart(8)}  ${result.rewardLast.toFixed(3).padStart(8)}   (mean of the first / last ${head} steps)`,
      "",
      `  ${fit.steps} steps in ${(result.seconds / 60).toFixed(1)} min; adapter kept: step ${chosen.step}` +
        (select.length ? ` (best on ${select.length} selection tasks, no operation below its start)` : ""),
      `  adapter (PEFT): ${show(adapterDir)}`,
      `  metrics:        ${show(metricsFile)}  (per-step log: ${show(logFile)})`,
      `  store:          ${show(storeFile)}  (fulgur serve --store file:${show(storeFile)} to browse it again)`,
    ].join("\n");
    progress.event({ event: "done", ...result }, table);
    if (options.keepServing) {
      progress.line(`serving ${dashboard} until Ctrl-C`);
      await new Promise<void>((done) => {
        process.once("SIGINT", done);
        process.once("SIGTERM", done);
      });
    }
    return result;
  } finally {
    await server.shutdown();
  }
}

/** `fulgur demo`. */
export async function runDemoCli(argv: string[]): Promise<number> {
  await runDemo(parseDemoArgs(argv));
  return 0;
}
