// `fulgur train` with `"algorithm": { "name": "sft" }`: supervised fine-tuning from JSONL chat
// records ({ messages, tools? }) instead of agent rollouts. The records are rendered with the
// model's chat template and only the assistant turns are learned; the output is a PEFT adapter,
// or with `"lora": "full"` a complete HF model directory.

import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { LoraSpec } from "../model/lora.ts";
import type { Model } from "../model/model.ts";
import { copySidecarFiles, saveFullWeights } from "../model/save-weights.ts";
import type { Progress } from "../progress.ts";
import type { JsonValue } from "../store/types.ts";
import { asChatRecord, chatSample } from "./sft-data.ts";
import { fitSft } from "./sft-fit.ts";

export interface SftAlgorithmConfig {
  name: "sft";
  /** Records per step (default 8). */
  batchSize?: number;
  warmupSteps?: number;
  minLrRatio?: number;
  tokenBudget?: number;
  recompute?: boolean;
  seed?: number;
}

export interface SftRunInput {
  model: Model;
  train: JsonValue[];
  val?: JsonValue[];
  steps: number;
  algorithm: SftAlgorithmConfig;
  lr?: number;
  weightDecay?: number;
  lora?: LoraSpec | "full";
  valEvery?: number;
  /** Where to save the adapter (PEFT) or, for "full", the model directory. */
  output?: string;
  progress: Progress;
}

/** Runs SFT for `fulgur train`; returns the "done" record. */
export async function runSft(input: SftRunInput): Promise<Record<string, unknown>> {
  const { model, progress, steps } = input;
  const toSamples = (records: JsonValue[], split: string) =>
    records.map((r, i) => {
      const record = asChatRecord(r, `${split} record ${i + 1}`);
      return chatSample(model.tokenizer, record.messages, { tools: record.tools });
    });
  const train = toSamples(input.train, "train");
  const val = input.val ? toSamples(input.val, "val") : undefined;
  const lora = input.lora ?? { rank: 16, alpha: 32 };
  const result = await fitSft(model, train, {
    steps,
    lr: input.lr,
    weightDecay: input.weightDecay,
    lora,
    val,
    valEvery: input.valEvery,
    batchSize: input.algorithm.batchSize,
    warmupSteps: input.algorithm.warmupSteps,
    minLrRatio: input.algorithm.minLrRatio,
    tokenBudget: input.algorithm.tokenBudget,
    recompute: input.algorithm.recompute,
    seed: input.algorithm.seed,
    onStep: (m) => {
      progress.event({ event: "step", ...m });
      progress.update(
        m.step,
        steps,
        `loss ${m.loss.toFixed(4)} lr ${m.lr.toExponential(2)} grad ${m.gradNorm.toFixed(3)}`,
      );
    },
    onValidation: (v) =>
      progress.event(
        { event: "validation", step: v.step, loss: v.loss },
        `step ${v.step}: validation loss ${v.loss.toFixed(4)} nats/token`,
      ),
  });
  if (input.output) {
    if (lora === "full") {
      await mkdir(input.output, { recursive: true });
      await copyFile(join(model.dir, "config.json"), join(input.output, "config.json"));
      await copySidecarFiles(model.dir, input.output);
      await saveFullWeights(model.transformer, input.output);
    } else {
      await model.saveAdapter(input.output);
    }
  }
  progress.clear();
  const last = result.history[result.history.length - 1];
  return {
    event: "done",
    algorithm: "sft",
    steps: result.steps,
    parameters: result.parameters,
    loss: last?.loss ?? null,
    validation: result.validation,
    [lora === "full" ? "model" : "adapter"]: input.output ?? null,
  };
}
