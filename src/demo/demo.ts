// `fulgur demo` (`npm run demo`): the main job out of the box. Starts the server (OpenAI proxy,
// store, dashboard) on the built-in model, trains the built-in calculator agent
// (examples/calculator-agent.ts, unchanged) with LightningRL through that server, and ends with
// validation accuracy before and after on held-out tasks, plus where the adapter and metrics went.

import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { train as trainAgent } from "../compose.ts";
import { Progress } from "../progress.ts";
import type { Agent } from "../runner/types.ts";
import { type FulgurServer, startServer } from "../server.ts";
import { type ArithmeticTask, demoSplits, OPERATIONS, type Operation, seededRandom } from "./tasks.ts";

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
  /** Held-out tasks measured before, during and after training (at most the val split's 128). */
  valTasks: number;
  valEvery: number;
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
  valEvery: 10,
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
  --val N              held-out tasks per validation (default ${DEMO_DEFAULTS.valTasks}, at most 128)
  --val-every N        validate every N steps, and before and after (default ${DEMO_DEFAULTS.valEvery})
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
      "val-every": { type: "string" },
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
    valEvery: number("val-every", values["val-every"], d.valEvery),
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

/** The training split in a seeded order, so seeds differ in what the adapter sees first. */
function shuffled<T>(items: T[], seed: number): T[] {
  const next = seededRandom(seed * 7919 + 17);
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Accuracy per operation of one validation's results (a failed rollout counts as wrong). */
function accuracyByOperation(results: { task: ArithmeticTask; reward: number | null }[]): Record<Operation, number> {
  const out = {} as Record<Operation, number>;
  for (const op of OPERATIONS) {
    const ofOp = results.filter((r) => r.task.op === op);
    out[op] = ofOp.length ? ofOp.filter((r) => r.reward === 1).length / ofOp.length : 0;
  }
  return out;
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
    const train = shuffled(splits.train, options.seed);
    const val = splits.val.slice(0, options.valTasks);
    const rewards: number[] = [];
    const byOperationAt: Record<Operation, number>[] = [];
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
    const fit = await trainAgent<ArithmeticTask>({
      model,
      store: server.store,
      agent,
      serverUrl: server.url,
      lora: { rank: options.rank, alpha: options.rank * 2, seed: options.seed },
      optimizer: { lr: options.lr },
      algorithm: { samplesPerTask: options.samplesPerTask, tasksPerStep: options.tasksPerStep },
      valEvery: options.valEvery,
      concurrency: 32,
      seed: options.seed,
      logFile,
      data: { train, val },
      steps: options.steps,
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
          lastVal = e.accuracy;
          byOperationAt.push(accuracyByOperation(e.results));
          progress.event(
            { event: "validation", step: e.step, accuracy: e.accuracy, rewardMean: e.rewardMean, tasks: val.length },
            `step ${String(e.step).padStart(3)}: validation accuracy ${percent(e.accuracy)} on ${val.length} held-out tasks`,
          );
          progress.update(e.step, options.steps, label("training"));
          stepStarted = performance.now();
        } else if (e.type === "rollouts" && e.total > 0) {
          progress.update(e.step, options.steps, label(`${e.done} rollouts in`));
        }
      },
    });
    await model.saveAdapter(adapterDir);
    progress.clear();

    const first = fit.validation[0];
    const last = fit.validation[fit.validation.length - 1];
    const before = first?.accuracy ?? 0;
    const after = last?.accuracy ?? 0;
    const opsBefore = byOperationAt[0];
    const opsAfter = byOperationAt[byOperationAt.length - 1];
    const byOperation = Object.fromEntries(
      OPERATIONS.map((op) => [op, { before: opsBefore[op], after: opsAfter[op] }]),
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
      adapter: adapterDir,
      metrics: metricsFile,
      log: logFile,
      store: storeFile,
      dashboard,
    };
    await writeFile(
      metricsFile,
      `${JSON.stringify({ ...result, options, validation: fit.validation, history: fit.history }, null, 2)}\n`,
    );
    const change = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)} points`;
    const table = [
      "",
      `                          before     after   change`,
      `  validation accuracy  ${percent(before).padStart(8)}  ${percent(after).padStart(8)}   ${change(after - before)}   (${val.length} held-out tasks)`,
      ...OPERATIONS.map(
        (op) =>
          `    ${OPERATION_NAMES[op].padEnd(18)} ${percent(byOperation[op].before).padStart(8)}  ${percent(byOperation[op].after).padStart(8)}   ${change(byOperation[op].after - byOperation[op].before)}`,
      ),
      `  train reward         ${result.rewardFirst.toFixed(3).padStart(8)}  ${result.rewardLast.toFixed(3).padStart(8)}   (mean of the first / last ${head} steps)`,
      "",
      `  ${fit.steps} steps in ${(result.seconds / 60).toFixed(1)} min`,
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
