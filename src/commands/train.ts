// `fulgur train --config FILE`: a config names the model, the store, the agent module, the task
// files and the algorithm (`"algorithm": { "name": ... }`, LightningRL by default, see
// src/trainer/registry.ts); this verb loads them, starts the agents (src/compose.ts) and the
// Trainer, and reports progress: a live line on a TTY and JSON lines otherwise (--json).

import { copyFile, mkdir, readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { withAgents } from "../compose.ts";
import type { LoraSpec } from "../model/lora.ts";
import { loadModel, type Model } from "../model/model.ts";
import { copySidecarFiles, saveFullWeights } from "../model/save-weights.ts";
import { Progress } from "../progress.ts";
import type { JudgeOptions } from "../runner/judge.ts";
import { openStore } from "../store/libsql.ts";
import type { JsonValue } from "../store/types.ts";
import type { FitResult, TrainerEvent } from "../trainer/algorithm.ts";
import { type AlgorithmSetup, createAlgorithm } from "../trainer/registry.ts";
import { Trainer } from "../trainer/trainer.ts";
import type { Command } from "./command.ts";
import { importAgent, readTasks } from "./inputs.ts";
import { type ApoTrainConfig, isApoConfig, runApoTrain } from "./train-apo.ts";

/** The algorithm's fields are `AlgorithmSetup`'s (src/trainer/registry.ts); paths are relative to the config. */
export interface TrainConfig
  extends Pick<
    AlgorithmSetup,
    | "algorithm"
    | "optimizer"
    | "lora"
    | "valEvery"
    | "successThreshold"
    | "checkpointDir"
    | "checkpointEvery"
    | "resume"
  > {
  model: string;
  /** PEFT adapter to start from (a directory; not `AlgorithmSetup.adapter`, a named adapter). */
  adapter?: string;
  store?: string;
  /** Module whose default export (or `agent`) is the agent function (not for SFT). */
  agent?: string;
  /** RL: task files for the agent. SFT: JSONL chat records { messages, tools? }. */
  tasks: { train: string; val?: string };
  steps: number;
  logFile?: string;
  concurrency?: number;
  /** Options of the judge behind agents' `ctx.judge` (docs/judges.md); default: the served model. */
  judge?: Partial<JudgeOptions>;
  /** Save the final adapter here (PEFT), or with "lora": "full" the whole model directory. */
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

export async function runTrain(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: "string" }, json: { type: "boolean" } } });
  if (!values.config) throw new Error(`--config is required\n\n${TRAIN_USAGE}`);
  const configPath = resolve(values.config);
  const config = JSON.parse(await readFile(configPath, "utf8")) as TrainConfig;
  const rel = (p: string | undefined) => (p ? resolve(dirname(configPath), p) : undefined);
  // APO trains no weights: it needs a server (local model or upstream) as its default optimiser LLM.
  if (isApoConfig(config)) return runApoTrain(config as unknown as ApoTrainConfig, configPath, values.json);
  const sft = config.algorithm?.name === "sft";
  for (const key of sft ? (["model", "tasks", "steps"] as const) : (["model", "agent", "tasks", "steps"] as const)) {
    if (config[key] === undefined) throw new Error(`${configPath}: "${key}" is required`);
  }
  const algorithm = createAlgorithm({
    algorithm: config.algorithm,
    optimizer: config.optimizer,
    lora: config.lora,
    valEvery: config.valEvery,
    successThreshold: config.successThreshold,
    checkpointDir: rel(config.checkpointDir),
    checkpointEvery: config.checkpointEvery,
    resume: config.resume,
  });
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
    const trainer = new Trainer<JsonValue>({
      model,
      store,
      algorithm,
      logFile: rel(config.logFile),
      onEvent: (e) => report(progress, e, config.steps),
    });
    const runFit = () => trainer.fit({ train, val }, config.steps);
    let result: FitResult;
    try {
      result = config.agent
        ? await withAgents(
            {
              model,
              store,
              agent: await importAgent(rel(config.agent)!),
              concurrency: config.concurrency,
              judge: config.judge,
            },
            runFit,
          )
        : await runFit();
    } finally {
      await trainer.close();
    }
    const output = rel(config.output);
    if (output) await saveOutput(model, config.lora, output);
    progress.clear();
    if (result.summary) {
      // An algorithm with its own report (SFT): its summary, and what was saved.
      const saved = { [config.lora === "full" ? "model" : "adapter"]: output ?? null };
      progress.event(
        { event: "done", ...result.summary, steps: result.steps, ...saved },
        `done: ${config.steps} ${algorithm.name === "sft" ? "SFT " : ""}steps${output ? `; saved to ${output}` : ""}`,
      );
      return 0;
    }
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

/** One progress line or JSON event per trainer event. */
function report(progress: Progress, e: TrainerEvent<JsonValue>, steps: number): void {
  if (e.type === "step") {
    const m = e.metrics;
    progress.event({ event: "step", step: e.step, ...m });
    progress.update(
      e.step,
      steps,
      "rewardMean" in m
        ? `reward ${m.rewardMean.toFixed(3)} loss ${m.loss.toFixed(4)} grad ${m.gradNorm.toFixed(3)}`
        : `loss ${m.loss.toFixed(4)} lr ${m.lr.toExponential(2)} grad ${m.gradNorm.toFixed(3)}`,
    );
  } else if (e.type === "validation") {
    progress.event(
      { event: "validation", step: e.step, accuracy: e.accuracy, rewardMean: e.rewardMean },
      `step ${e.step}: validation accuracy ${(e.accuracy * 100).toFixed(1)}% (mean reward ${e.rewardMean.toFixed(3)})`,
    );
  } else if (e.type === "validationLoss") {
    progress.event(
      { event: "validation", step: e.step, loss: e.loss },
      `step ${e.step}: validation loss ${e.loss.toFixed(4)} nats/token`,
    );
  } else if (e.type === "checkpoint") {
    progress.event({ event: "checkpoint", step: e.step, dir: e.dir });
  }
}

/** The trained adapter as PEFT, or after full-weight training the whole model directory. */
async function saveOutput(model: Model, lora: LoraSpec | "full" | undefined, output: string): Promise<void> {
  if (lora === "full") {
    await mkdir(output, { recursive: true });
    await copyFile(join(model.dir, "config.json"), join(output, "config.json"));
    await copySidecarFiles(model.dir, output);
    await saveFullWeights(model.transformer, output);
  } else {
    await model.saveAdapter(output);
  }
}

export const trainCommand: Command = {
  summary: "train an agent with LightningRL from a JSON config",
  usage: TRAIN_USAGE,
  run: runTrain,
};
