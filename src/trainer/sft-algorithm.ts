// SFT as an `Algorithm`: its "tasks" are chat records ({ messages, tools? }), rendered with the
// model's chat template; only the assistant turns are learned (src/trainer/sft-fit.ts is the
// loop). Selected by `"algorithm": { "name": "sft" }`. It trains the model's adapter (or every
// weight with `lora: "full"`) in place; saving it is the caller's (`fulgur train`'s "output").

import type { LoraSpec } from "../model/lora.ts";
import type { JsonValue } from "../store/types.ts";
import type { Algorithm, AlgorithmContext, FitResult } from "./algorithm.ts";
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

export interface SftOptions {
  algorithm?: SftAlgorithmConfig;
  lr?: number;
  weightDecay?: number;
  /** Default { rank: 16, alpha: 32 }; "full" trains every weight. */
  lora?: LoraSpec | "full";
  /** Held-out loss every k steps (and before and after). Default 0: only before and after. */
  valEvery?: number;
}

export class Sft implements Algorithm<JsonValue> {
  readonly name = "sft";
  readonly options: SftOptions;

  constructor(options: SftOptions = {}) {
    this.options = options;
  }

  async fit(ctx: AlgorithmContext<JsonValue>, data: { train: JsonValue[]; val?: JsonValue[] }, steps: number) {
    const model = ctx.model;
    if (!model) throw new Error("SFT trains a local model: give the Trainer a model");
    const toSamples = (records: JsonValue[], split: string) =>
      records.map((r, i) => {
        const record = asChatRecord(r, `${split} record ${i + 1}`);
        return chatSample(model.tokenizer, record.messages, { tools: record.tools });
      });
    const train = toSamples(data.train, "train");
    const val = data.val ? toSamples(data.val, "val") : undefined;
    const lora = this.options.lora ?? { rank: 16, alpha: 32 };
    const algo = this.options.algorithm ?? { name: "sft" };
    const result = await fitSft(model, train, {
      steps,
      lr: this.options.lr,
      weightDecay: this.options.weightDecay,
      lora,
      val,
      valEvery: this.options.valEvery,
      batchSize: algo.batchSize,
      warmupSteps: algo.warmupSteps,
      minLrRatio: algo.minLrRatio,
      tokenBudget: algo.tokenBudget,
      recompute: algo.recompute,
      seed: algo.seed,
      onStep: (m) => {
        const { step, ...metrics } = m;
        void ctx.log({ event: "step", ...m });
        ctx.emit({ type: "step", step, metrics });
      },
      onValidation: (v) => {
        void ctx.log({ event: "validation", step: v.step, loss: v.loss });
        ctx.emit({ type: "validationLoss", step: v.step, loss: v.loss });
      },
    });
    const last = result.history[result.history.length - 1];
    const fit: FitResult = {
      steps: result.steps,
      history: result.history.map((m) => ({ ...m })),
      validation: [],
      checkpoint: null,
      summary: {
        algorithm: "sft",
        parameters: result.parameters,
        loss: last?.loss ?? null,
        validation: result.validation,
      },
    };
    return fit;
  }
}
