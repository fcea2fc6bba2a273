// LightningRL as an `Algorithm`: each step enqueues a batch of tasks as GRPO groups (n rollouts
// per task), waits for whoever serves the store to run them, turns the finished rollouts' LLM
// calls into single-turn samples, backpropagates the PPO loss into the LoRA adapter in
// token-budgeted micro-batches, steps AdamW — which updates the adapter serving traffic in place —
// and publishes the new adapter version as a resource. Validation, checkpoints (resumable),
// metrics to the store (dashboard). Asynchronous mode (`algorithm.async`) enqueues the next steps'
// rollouts before each update, drops samples staler than `maxStaleness` adapter versions and
// corrects the rest with truncated importance sampling (docs/trainer.md, "Asynchronous training").

import { basename } from "node:path";
import type { LoraSpec } from "../model/lora.ts";
import type { Model } from "../model/model.ts";
import type { JsonValue, RolloutMode } from "../store/types.ts";
import { type AdvantageEstimator, RunningBaseline } from "./advantages.ts";
import {
  type Algorithm,
  type AlgorithmContext,
  type EvalResult,
  evaluateTasks,
  type FitResult,
  type PendingRollouts,
  startRollouts,
} from "./algorithm.ts";
import { latestCheckpoint, restoreCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import { type AlgorithmConfig, type ResolvedAlgorithmConfig, resolveAlgorithmConfig } from "./config.ts";
import { policyGradients } from "./grads.ts";
import { Optimizer, type OptimizerConfig } from "./optimizer.ts";
import { buildSamples, microBatches, type TrainingSample } from "./samples.ts";

export type { AlgorithmConfig } from "./config.ts";

export interface LightningRLOptions {
  algorithm?: AlgorithmConfig;
  optimizer?: OptimizerConfig;
  /** The adapter to train (created when the model has none), or "full" for every weight. */
  lora?: LoraSpec | "full";
  /**
   * Multi-agent: train the model's named adapter `adapter` (created from `lora` when absent) with
   * its own optimizer, only on calls it generated (model "<base>:<adapter>"), publishing its
   * versions as resource "adapter:<adapter>". Default: the default adapter, resource "adapter".
   */
  adapter?: string;
  /** Validate every k steps (and before the first and after the last). 0 = never. Default 5. */
  valEvery?: number;
  /** A rollout with reward ≥ this counts as correct for accuracy. Default 1. */
  successThreshold?: number;
  checkpointDir?: string;
  checkpointEvery?: number;
  /** Continue from the newest checkpoint in checkpointDir. */
  resume?: boolean;
  rolloutTimeoutMs?: number;
  maxAttempts?: number;
  seed?: number;
}

/** Staleness of a sample: adapter versions between the one that sampled it and `current`. */
export function staleness(sample: Pick<TrainingSample, "adapterVersion">, current: number): number {
  return sample.adapterVersion === null || sample.adapterVersion === undefined
    ? 0
    : Math.max(0, current - sample.adapterVersion);
}

export class LightningRL<Task extends JsonValue = JsonValue> implements Algorithm<Task> {
  readonly name = "lightningrl";
  readonly options: LightningRLOptions;
  readonly config: ResolvedAlgorithmConfig;
  optimizer: Optimizer | null = null;
  step = 0;
  private readonly baseline = new RunningBaseline();
  private cursor = 0;
  private readonly validation: FitResult["validation"] = [];
  /** Asynchronous mode: batches already enqueued for later steps, by step. */
  private readonly pending = new Map<number, PendingRollouts>();

  constructor(options: LightningRLOptions = {}) {
    this.options = options;
    this.config = resolveAlgorithmConfig(options.algorithm);
  }

  async fit(ctx: AlgorithmContext<Task>, data: { train: Task[]; val?: Task[] }, steps: number): Promise<FitResult> {
    if (data.train.length === 0) throw new Error("fit needs at least one training task");
    const model = requireModel(ctx);
    const history: Record<string, number>[] = [];
    await this.prepare(ctx, model);
    const { valEvery = 5, checkpointEvery = 0 } = this.options;
    let checkpoint: string | null = null;
    try {
      if (data.val && valEvery > 0 && this.step === 0) await this.validate(ctx, data.val);
      while (this.step < steps) {
        const metrics = await this.trainStep(ctx, model, data.train, steps);
        history.push(metrics);
        const last = this.step === steps;
        if (data.val && valEvery > 0 && (this.step % valEvery === 0 || last)) await this.validate(ctx, data.val);
        if (this.options.checkpointDir && ((checkpointEvery > 0 && this.step % checkpointEvery === 0) || last)) {
          checkpoint = (await this.checkpoint(ctx)).dir;
        }
      }
    } finally {
      // Only an error leaves batches enqueued ahead; nobody will train on them.
      for (const batch of this.pending.values()) await batch.cancel();
      this.pending.clear();
    }
    return { steps: this.step, history, validation: this.validation, checkpoint };
  }

  /** Accuracy and mean reward of the current policy on `tasks` (one rollout each). */
  async evaluate(ctx: AlgorithmContext<Task>, tasks: Task[], mode: RolloutMode = "val"): Promise<EvalResult<Task>> {
    return evaluateTasks(ctx.store, tasks, {
      mode,
      group: `${mode}-${this.step}`,
      successThreshold: this.options.successThreshold,
      run: {
        // Rollouts pin the adapter resource once training publishes one (evaluation alone does not).
        resources: this.optimizer ? { name: this.resourceName } : undefined,
        maxAttempts: this.options.maxAttempts ?? 2,
        timeoutMs: this.options.rolloutTimeoutMs ?? 120_000,
        onFinished: (done, total) => ctx.emit({ type: "rollouts", step: this.step, done, total }),
      },
    });
  }

  /** Frees the optimizer state. */
  async close(): Promise<void> {
    this.optimizer?.dispose();
    this.optimizer = null;
  }

  /** Creates or restores the adapter and optimizer; publishes the starting adapter version. */
  private async prepare(ctx: AlgorithmContext<Task>, model: Model): Promise<void> {
    if (this.optimizer) return;
    const { checkpointDir, resume } = this.options;
    if (this.options.adapter !== undefined && this.options.lora === "full")
      throw new Error('a named adapter cannot train "full"');
    const make = () =>
      this.options.lora === "full"
        ? Optimizer.forAllWeights(model.transformer, this.optimizerConfig())
        : Optimizer.forLora(model.adapterNamed(this.options.adapter)!, this.optimizerConfig());
    const found = resume && checkpointDir ? await latestCheckpoint(checkpointDir) : null;
    if (found) {
      if (this.options.lora === "full")
        throw new Error("resuming full-weight training is not supported; use a LoRA adapter");
      const { optimizer, state } = await restoreCheckpoint(found, model, make, this.options.adapter);
      this.optimizer = optimizer;
      this.step = state.step;
      this.cursor = Number(state.extra.cursor ?? 0);
      if (typeof state.extra.baseline === "number") this.baseline.value = state.extra.baseline;
      await ctx.log({ event: "resumed", step: this.step, checkpoint: found.dir });
    } else {
      if (this.options.lora !== "full" && !model.adapterNamed(this.options.adapter)) {
        model.createAdapter(
          this.options.lora ?? { rank: 16, alpha: 32, seed: this.options.seed },
          this.options.adapter,
        );
      }
      this.optimizer = make();
    }
    await this.publishAdapter(ctx, model);
  }

  private optimizerConfig(): OptimizerConfig {
    return { lr: 1e-3, weightDecay: 0, ...this.options.optimizer };
  }

  /** Enqueues the rollouts of training step `forStep` (its tasks are the next in the cursor). */
  private async enqueue(ctx: AlgorithmContext<Task>, train: Task[], forStep: number): Promise<PendingRollouts> {
    const algo = this.config;
    const tasks = Array.from({ length: algo.tasksPerStep }, () => train[this.cursor++ % train.length]);
    const requests = tasks.flatMap((task, i) =>
      Array.from({ length: algo.samplesPerTask }, () => ({ task, group: `train-${forStep}-${i}` })),
    );
    const batch = await startRollouts(ctx.store, requests, "train", {
      resources: { name: this.resourceName },
      maxAttempts: this.options.maxAttempts ?? 2,
      timeoutMs: this.options.rolloutTimeoutMs ?? 120_000,
      onFinished: (done, total) => ctx.emit({ type: "rollouts", step: this.step, done, total }),
    });
    ctx.emit({ type: "enqueued", step: this.step, forStep, rollouts: requests.length });
    return batch;
  }

  private async trainStep(
    ctx: AlgorithmContext<Task>,
    model: Model,
    train: Task[],
    lastStep: number,
  ): Promise<Record<string, number>> {
    const algo = this.config;
    const started = performance.now();
    const forStep = this.step + 1;
    const own = this.pending.get(forStep) ?? (await this.enqueue(ctx, train, forStep));
    this.pending.delete(forStep);
    const rollouts = await own.finished;
    const rolloutMs = performance.now() - started;
    // Asynchronous: the next steps' rollouts run (on the adapter as it is now) while this update runs.
    if (algo.async) {
      for (let s = forStep + 1; s <= Math.min(lastStep, forStep + algo.async.lookahead); s++) {
        if (!this.pending.has(s)) this.pending.set(s, await this.enqueue(ctx, train, s));
      }
    }
    const estimator: AdvantageEstimator =
      algo.advantage === "reinforce"
        ? { kind: "reinforce", baseline: this.baseline }
        : algo.advantage === "rloo"
          ? { kind: "rloo" }
          : { kind: "grpo", normalizeStd: algo.normalizeStd };
    const batch = await buildSamples(ctx.store, rollouts, {
      advantage: estimator,
      credit: algo.credit,
      agents: algo.agents,
      // A named adapter learns from its own calls; the default one, next to named ones, from the rest.
      adapter: this.options.adapter ?? (model.adapters.size > 0 ? null : undefined),
      defaultTemperature: algo.temperature,
      trajectory: algo.trajectory,
      lossNormalization: algo.lossNormalization,
    });
    const trainStarted = performance.now();
    ctx.emit({ type: "update", step: forStep, phase: "start" });
    // The adapter version being updated: the "old" policy of this update.
    const current = model.adapterNamed(this.options.adapter)?.version ?? 0;
    const lags = batch.samples.map((s) => staleness(s, current));
    const maxStaleness = algo.async?.maxStaleness ?? Infinity;
    const samples = batch.samples.filter((_, i) => lags[i] <= maxStaleness);
    const droppedStale = batch.samples.length - samples.length;
    const optimizer = this.optimizer!;
    const totalTokens = samples.reduce((n, s) => n + s.lossMask.reduce((a, b) => a + b, 0), 0);
    let loss = 0;
    let clipped = 0;
    let kl = 0;
    let entropy = 0;
    let tokens = 0;
    const importance = { sum: 0, min: Infinity, max: 0, truncated: 0, tokens: 0 };
    for (const micro of microBatches(samples, algo.tokenBudget)) {
      const microTokens = micro.reduce((n, s) => n + s.lossMask.reduce((a, b) => a + b, 0), 0);
      if (microTokens === 0) continue;
      const r = await policyGradients(
        model.transformer,
        micro,
        {
          ...algo,
          temperature: micro[0].temperature,
          weight: microTokens / totalTokens,
          isTruncation: algo.async?.isTruncation,
          lora: model.adapterNamed(this.options.adapter),
        },
        optimizer.sink,
      );
      loss += r.loss;
      clipped += r.metrics.clipFraction * microTokens;
      kl += r.metrics.kl * (microTokens / totalTokens);
      entropy += r.metrics.entropy * (microTokens / totalTokens);
      tokens += micro.reduce((n, s) => n + s.tokens.length, 0);
      const is = r.metrics.importance;
      if (is) {
        importance.sum += is.sum;
        importance.min = Math.min(importance.min, is.min);
        importance.max = Math.max(importance.max, is.max);
        importance.truncated += is.truncated;
        importance.tokens += r.metrics.tokens;
      }
    }
    let gradNorm = 0;
    let skipped = 0;
    if (totalTokens > 0) {
      const stats = await optimizer.apply();
      gradNorm = stats.gradNorm;
      skipped = stats.skipped ? 1 : 0;
    }
    this.step++;
    await this.publishAdapter(ctx, model);
    ctx.emit({ type: "update", step: this.step, phase: "end" });
    const trainMs = performance.now() - trainStarted;
    const metrics: Record<string, number> = {
      rewardMean: batch.metrics.rewardMean,
      loss,
      clipFraction: totalTokens ? clipped / totalTokens : 0,
      kl,
      entropy,
      gradNorm: Number.isFinite(gradNorm) ? gradNorm : 0,
      skippedUpdate: skipped,
      samples: samples.length,
      trainedTokens: totalTokens,
      tokensPerSecond: tokens / Math.max(trainMs / 1000, 1e-6),
      rollouts: batch.metrics.rollouts,
      failedRollouts: batch.metrics.failedRollouts,
      droppedGroups: batch.metrics.droppedGroups,
      mergedCalls: batch.metrics.mergedCalls,
      rolloutSeconds: rolloutMs / 1000,
      updateSeconds: trainMs / 1000,
      adapterVersion: model.adapterNamed(this.options.adapter)?.version ?? 0,
      stalenessMean: lags.length ? lags.reduce((a, b) => a + b, 0) / lags.length : 0,
      stalenessMax: lags.length ? Math.max(...lags) : 0,
      droppedStale,
    };
    if (algo.async) {
      const n = importance.tokens;
      metrics.isWeightMean = n ? importance.sum / n : 0;
      metrics.isWeightMin = n ? importance.min : 0;
      metrics.isWeightMax = n ? importance.max : 0;
      metrics.isTruncatedFraction = n ? importance.truncated / n : 0;
    }
    await ctx.store.addTrainingStep({ step: this.step, metrics });
    await ctx.log({ event: "step", step: this.step, ...metrics });
    ctx.emit({ type: "step", step: this.step, metrics });
    return metrics;
  }

  private async validate(ctx: AlgorithmContext<Task>, val: Task[]): Promise<void> {
    const r = await this.evaluate(ctx, val, "val");
    this.validation.push({ step: this.step, accuracy: r.accuracy, rewardMean: r.rewardMean });
    await ctx.store.addTrainingStep({
      step: this.step,
      metrics: { valAccuracy: r.accuracy, valReward: r.rewardMean },
    });
    await ctx.log({ event: "validation", step: this.step, accuracy: r.accuracy, rewardMean: r.rewardMean });
    ctx.emit({
      type: "validation",
      step: this.step,
      accuracy: r.accuracy,
      rewardMean: r.rewardMean,
      rollouts: r.rollouts,
      results: r.results,
    });
  }

  /** Saves a checkpoint now (also done by fit per checkpointEvery). */
  async checkpoint(ctx: AlgorithmContext<Task>): Promise<{ dir: string }> {
    const { checkpointDir } = this.options;
    const model = requireModel(ctx);
    if (!checkpointDir) throw new Error("no checkpointDir configured");
    if (!this.optimizer) throw new Error("nothing to checkpoint before training starts");
    // Batches enqueued ahead are not in the checkpoint: a resumed run draws their tasks again.
    const cursor = this.cursor - this.pending.size * this.config.tasksPerStep;
    const info = await saveCheckpoint(
      checkpointDir,
      model,
      this.optimizer,
      { step: this.step, extra: { cursor, baseline: this.baseline.value } },
      this.options.adapter,
    );
    await ctx.log({ event: "checkpoint", step: this.step, dir: info.dir });
    ctx.emit({ type: "checkpoint", step: this.step, dir: info.dir });
    return info;
  }

  /** The resource the trained adapter's versions are published as. */
  get resourceName(): string {
    return this.options.adapter === undefined ? "adapter" : `adapter:${this.options.adapter}`;
  }

  /** The adapter now serving becomes resource "adapter" (or "adapter:<name>") version N; rollouts record N. */
  private async publishAdapter(ctx: AlgorithmContext<Task>, model: Model): Promise<void> {
    const record = await ctx.store.addResources(this.resourceName, { step: this.step, model: basename(model.dir) });
    const lora = model.adapterNamed(this.options.adapter);
    if (lora) lora.version = record.version;
  }
}

function requireModel<T extends JsonValue>(ctx: AlgorithmContext<T>): Model {
  if (!ctx.model) throw new Error("LightningRL trains a local model: give the Trainer a model");
  return ctx.model;
}
