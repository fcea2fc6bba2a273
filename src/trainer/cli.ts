// `fulgur train --config FILE` and `fulgur eval`: the Trainer from the command line. A config
// names the model, the store, the agent module and the task files; progress is a live line on a
// TTY and JSON lines otherwise (--json).

import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { type ApoTrainConfig, isApoConfig, runApoTrain } from "../commands/train-apo.ts";
import type { LoraSpec } from "../model/lora.ts";
import { loadModel } from "../model/model.ts";
import { Progress } from "../progress.ts";
import type { Agent } from "../runner/types.ts";
import { openStore } from "../store/libsql.ts";
import type { JsonValue } from "../store/types.ts";
import type { OptimizerConfig } from "./optimizer.ts";
import { runSft, type SftAlgorithmConfig } from "./sft-cli.ts";
import { type AlgorithmConfig, Trainer } from "./trainer.ts";

export interface TrainConfig {
  model: string;
  /** PEFT adapter to start from. */
  adapter?: string;
  store?: string;
  /** Module whose default export (or `agent`) is the agent function (not for SFT). */
  agent?: string;
  /** RL: task files for the agent. SFT: JSONL chat records { messages, tools? }. */
  tasks: { train: string; val?: string };
  steps: number;
  /** LightningRL (default), or { "name": "sft" } for supervised fine-tuning on chat records. */
  algorithm?: AlgorithmConfig | SftAlgorithmConfig;
  optimizer?: OptimizerConfig;
  lora?: LoraSpec | "full";
  valEvery?: number;
  successThreshold?: number;
  checkpointDir?: string;
  checkpointEvery?: number;
  resume?: boolean;
  logFile?: string;
  concurrency?: number;
  /** Save the final adapter here (PEFT). */
  output?: string;
}

export const TRAIN_USAGE = `fulgur train --config train.json [--json]
  train.json: { "model": DIR, "agent": "./my-agent.ts", "tasks": { "train": "train.jsonl", "val": "val.jsonl" },
                "steps": 20, "store": "file:runs/store.db", "algorithm": { "samplesPerTask": 4, "tasksPerStep": 8 },
                "optimizer": { "lr": 1e-3 }, "lora": { "rank": 16, "alpha": 32 }, "checkpointDir": "runs/ckpt",
                "logFile": "runs/train.jsonl", "output": "runs/adapter" }
  Paths are relative to the config file.
  SFT instead of RL: "algorithm": { "name": "sft", "batchSize": 8 }, no "agent", and task files of
  chat records { "messages": [...], "tools": [...] } (only assistant turns are learned); "lora":
  "full" trains every weight and "output" is then a whole model directory.`;

export const EVAL_USAGE = `fulgur eval --model DIR --agent PATH --tasks FILE [--adapter DIR] [--threshold 1] [--json]
  Runs the agent once per task (JSON array or JSONL) and prints accuracy and mean reward.`;

/** Loads an agent function from a module path. */
export async function importAgent(path: string): Promise<Agent> {
  const mod = (await import(pathToFileURL(resolve(path)).href)) as { default?: unknown; agent?: unknown };
  const agent = mod.agent ?? mod.default;
  if (typeof agent !== "function")
    throw new Error(`${path} exports no agent function (export default or export const agent)`);
  return agent as Agent;
}

/** Reads tasks from a JSON array or JSONL file. */
export async function readTasks(path: string): Promise<JsonValue[]> {
  const text = (await readFile(path, "utf8")).trim();
  if (text.startsWith("[")) return JSON.parse(text) as JsonValue[];
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        return JSON.parse(l) as JsonValue;
      } catch {
        throw new Error(`${path}:${i + 1} is not valid JSON`);
      }
    });
}

export async function runTrain(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: "string" }, json: { type: "boolean" } } });
  if (!values.config) throw new Error(`--config is required\n\n${TRAIN_USAGE}`);
  const configPath = resolve(values.config);
  const config = JSON.parse(await readFile(configPath, "utf8")) as TrainConfig;
  const rel = (p: string | undefined) => (p ? resolve(dirname(configPath), p) : undefined);
  if (isApoConfig(config)) return runApoTrain(config as unknown as ApoTrainConfig, configPath, values.json);
  const sft = config.algorithm !== undefined && "name" in config.algorithm && config.algorithm.name === "sft";
  for (const key of sft ? (["model", "tasks", "steps"] as const) : (["model", "agent", "tasks", "steps"] as const)) {
    if (config[key] === undefined) throw new Error(`${configPath}: "${key}" is required`);
  }
  const progress = new Progress({ json: values.json });
  // Full-weight training updates every weight in place, so they must be f32 (not the f16 default).
  const model = await loadModel(rel(config.model)!, config.lora === "full" ? { dtype: "f32" } : {});
  const storeUrl = config.store?.startsWith("file:")
    ? `file:${rel(config.store.slice(5))}`
    : (config.store ?? ":memory:");
  const store = await openStore(storeUrl);
  try {
    if (config.adapter) await model.loadAdapter(rel(config.adapter)!);
    const train = await readTasks(rel(config.tasks.train)!);
    const val = config.tasks.val ? await readTasks(rel(config.tasks.val)!) : undefined;
    if (sft) {
      const done = await runSft({
        model,
        train,
        val,
        steps: config.steps,
        algorithm: config.algorithm as SftAlgorithmConfig,
        lr: config.optimizer?.lr,
        weightDecay: config.optimizer?.weightDecay,
        lora: config.lora,
        valEvery: config.valEvery,
        output: rel(config.output),
        progress,
      });
      progress.event(done, `done: ${config.steps} SFT steps${config.output ? `; saved to ${rel(config.output)}` : ""}`);
      return 0;
    }
    const trainer = new Trainer({
      model,
      store,
      agent: await importAgent(rel(config.agent)!),
      algorithm: config.algorithm as AlgorithmConfig | undefined,
      optimizer: config.optimizer,
      lora: config.lora,
      valEvery: config.valEvery,
      successThreshold: config.successThreshold,
      checkpointDir: rel(config.checkpointDir),
      checkpointEvery: config.checkpointEvery,
      resume: config.resume,
      logFile: rel(config.logFile),
      concurrency: config.concurrency,
      onEvent: (e) => {
        if (e.type === "step") {
          const m = e.metrics;
          progress.event({ event: "step", step: e.step, ...m });
          progress.update(
            e.step,
            config.steps,
            `reward ${m.rewardMean.toFixed(3)} loss ${m.loss.toFixed(4)} grad ${m.gradNorm.toFixed(3)}`,
          );
        } else if (e.type === "validation") {
          progress.event(
            { event: "validation", step: e.step, accuracy: e.accuracy, rewardMean: e.rewardMean },
            `step ${e.step}: validation accuracy ${(e.accuracy * 100).toFixed(1)}% (mean reward ${e.rewardMean.toFixed(3)})`,
          );
        } else if (e.type === "checkpoint") {
          progress.event({ event: "checkpoint", step: e.step, dir: e.dir });
        }
      },
    });
    const result = await trainer.fit({ train, val }, config.steps);
    const output = rel(config.output);
    if (output) await model.saveAdapter(output);
    await trainer.close();
    progress.clear();
    progress.event(
      {
        event: "done",
        steps: result.steps,
        validation: result.validation,
        adapter: output ?? null,
        checkpoint: result.checkpoint,
      },
      `done: ${result.steps} steps${output ? `; adapter saved to ${output}` : ""}`,
    );
    return 0;
  } finally {
    await store.close();
    model.dispose();
  }
}

export async function runEval(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" },
      adapter: { type: "string" },
      agent: { type: "string" },
      tasks: { type: "string" },
      threshold: { type: "string", default: "1" },
      json: { type: "boolean" },
    },
  });
  if (!values.model || !values.agent || !values.tasks)
    throw new Error(`--model, --agent and --tasks are required\n\n${EVAL_USAGE}`);
  const progress = new Progress({ json: values.json });
  const model = await loadModel(resolve(values.model));
  const store = await openStore(":memory:");
  try {
    if (values.adapter) await model.loadAdapter(resolve(values.adapter));
    const trainer = new Trainer({
      model,
      store,
      agent: await importAgent(values.agent),
      successThreshold: Number(values.threshold),
      lora: undefined,
    });
    const tasks = await readTasks(resolve(values.tasks));
    const r = await trainer.evaluate(tasks, "test");
    await trainer.close();
    progress.event(
      { event: "eval", ...r, adapter: values.adapter ?? null },
      `accuracy ${(r.accuracy * 100).toFixed(1)}% over ${r.rollouts} tasks (mean reward ${r.rewardMean.toFixed(3)}, ${r.failed} failed)`,
    );
    return 0;
  } finally {
    await store.close();
    model.dispose();
  }
}
