// The SFT algorithm's loop: shuffled batches of supervised samples (seeded), the mean NLL of
// their target tokens backpropagated in token-budgeted micro-batches, AdamW over every weight or
// a LoRA adapter with linear warm-up and cosine decay. Used by `fulgur train` (algorithm "sft")
// and by scripts/make-base-model.ts, which pre-trains the built-in model with it.

import type { LoraSpec } from "../model/lora.ts";
import type { Model } from "../model/model.ts";
import { mulberry32 } from "../random.ts";
import { Optimizer } from "./optimizer.ts";
import { packByTokens } from "./samples.ts";
import { type SftSample, sftGradients } from "./sft.ts";

export interface SftFitOptions {
  steps: number;
  /** Samples per step (default 8). */
  batchSize?: number;
  /** Peak learning rate (default 1e-3). */
  lr?: number;
  /** Linear warm-up steps (default min(20, steps / 10)). */
  warmupSteps?: number;
  /** The cosine decays to lr × this (default 0.1). */
  minLrRatio?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  /** "full" trains every weight; otherwise the model's adapter (created from this spec when absent). */
  lora?: LoraSpec | "full";
  /** Most tokens per micro-batch (default 8192). */
  tokenBudget?: number;
  recompute?: boolean;
  /** Seed of the batch order (default 0). */
  seed?: number;
  /** Held-out samples: their mean NLL is measured before the first step, every valEvery, and after the last. */
  val?: SftSample[];
  /** Default 0: only before and after. */
  valEvery?: number;
  onStep?: (metrics: SftStepMetrics) => void;
  onValidation?: (result: { step: number; loss: number }) => void;
}

export interface SftStepMetrics {
  step: number;
  /** Mean NLL per target token of this step's batch (nats). */
  loss: number;
  lr: number;
  gradNorm: number;
  targetTokens: number;
  tokensPerSecond: number;
}

export interface SftFitResult {
  steps: number;
  history: SftStepMetrics[];
  /** Trained parameters (every weight, or the adapter's). */
  parameters: number;
  validation: { step: number; loss: number }[];
}

/** Learning rate at `step` (1-based): linear warm-up to `peak`, then cosine down to peak × minRatio. */
export function sftLearningRate(step: number, steps: number, peak: number, warmup: number, minRatio: number): number {
  if (warmup > 0 && step <= warmup) return (peak * step) / warmup;
  const span = Math.max(1, steps - warmup);
  const progress = Math.min(1, Math.max(0, (step - warmup) / span));
  return peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * progress)));
}

const targets = (s: SftSample) => s.lossMask.reduce((n, m) => n + (m ? 1 : 0), 0);

/** Mean NLL per target token of `samples` under the model as it is (forward only). */
export async function sftLoss(model: Model, samples: SftSample[], tokenBudget = 8192): Promise<number> {
  const total = samples.reduce((n, s) => n + targets(s), 0);
  if (total === 0) throw new Error("no sample has a target token");
  let loss = 0;
  for (const micro of packByTokens(samples, tokenBudget)) {
    const share = micro.reduce((n, s) => n + targets(s), 0) / total;
    loss += (await sftGradients(model.transformer, micro, null, { weight: share, recompute: true })).loss;
  }
  return loss;
}

/** Supervised fine-tuning of `model` on `samples` for `options.steps` steps. */
export async function fitSft(model: Model, samples: SftSample[], options: SftFitOptions): Promise<SftFitResult> {
  const { steps } = options;
  const batchSize = options.batchSize ?? 8;
  const peak = options.lr ?? 1e-3;
  const warmup = options.warmupSteps ?? Math.min(20, Math.floor(steps / 10));
  const minRatio = options.minLrRatio ?? 0.1;
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`SFT steps must be a positive integer, got ${steps}`);
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new Error(`SFT batchSize must be a positive integer, got ${batchSize}`);
  if (!(peak > 0)) throw new Error(`SFT lr must be > 0, got ${peak}`);
  if (samples.length === 0) throw new Error("SFT needs at least one sample");
  samples.forEach((s, i) => {
    if (targets(s) === 0) throw new Error(`SFT sample ${i} has no target token`);
  });

  const config = { lr: peak, weightDecay: options.weightDecay ?? 0, maxGradNorm: options.maxGradNorm ?? 1 };
  let optimizer: Optimizer;
  if (options.lora === "full") {
    optimizer = Optimizer.forAllWeights(model.transformer, config);
  } else {
    if (!model.adapter) {
      if (!options.lora) throw new Error('SFT needs lora: a LoRA spec, or "full" to train every weight');
      model.createAdapter(options.lora);
    }
    optimizer = Optimizer.forLora(model.adapter!, config);
  }

  const next = mulberry32(options.seed ?? 0);
  const order = samples.map((_, i) => i);
  let cursor = order.length;
  const draw = () => {
    if (cursor >= order.length) {
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      cursor = 0;
    }
    return samples[order[cursor++]];
  };

  const history: SftStepMetrics[] = [];
  const validation: SftFitResult["validation"] = [];
  const validate = async (step: number) => {
    if (!options.val?.length) return;
    const result = { step, loss: await sftLoss(model, options.val, options.tokenBudget) };
    validation.push(result);
    options.onValidation?.(result);
  };
  const parameters = optimizer.parameterCount;
  try {
    await validate(0);
    for (let step = 1; step <= steps; step++) {
      const started = performance.now();
      const batch = Array.from({ length: batchSize }, draw);
      const total = batch.reduce((n, s) => n + targets(s), 0);
      let loss = 0;
      let processed = 0;
      for (const micro of packByTokens(batch, options.tokenBudget ?? 8192)) {
        const share = micro.reduce((n, s) => n + targets(s), 0) / total;
        const r = await sftGradients(model.transformer, micro, optimizer.sink, {
          weight: share,
          recompute: options.recompute,
        });
        loss += r.loss;
        processed += micro.reduce((n, s) => n + s.tokens.length, 0);
      }
      const lr = sftLearningRate(step, steps, peak, warmup, minRatio);
      const stats = await optimizer.apply(lr);
      const metrics: SftStepMetrics = {
        step,
        loss,
        lr,
        gradNorm: stats.gradNorm,
        targetTokens: total,
        tokensPerSecond: processed / Math.max(1e-6, (performance.now() - started) / 1000),
      };
      history.push(metrics);
      options.onStep?.(metrics);
      const every = options.valEvery ?? 0;
      if (step === steps || (every > 0 && step % every === 0)) await validate(step);
    }
  } finally {
    optimizer.dispose();
  }
  return { steps, history, parameters, validation };
}
