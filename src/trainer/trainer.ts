// `Trainer`: LightningRL end to end. Each step enqueues a batch of tasks as GRPO groups (n
// rollouts per task), lets agents run them (an in-process Runner, or remote workers on the same
// store), turns the finished rollouts' LLM calls into single-turn samples, backpropagates the
// PPO loss into the LoRA adapter in token-budgeted micro-batches, steps AdamW — which updates the
// adapter serving traffic in place — and publishes the new adapter version as a resource.
// Validation, checkpoints (resumable), metrics to the store (dashboard) and a JSONL log.

import { appendFile, mkdir } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { type RunningServer, serveApp } from "../http/serve.ts";
import type { LoraSpec } from "../model/lora.ts";
import type { Model } from "../model/model.ts";
import { LocalBackend } from "../proxy/local.ts";
import { flushingBeforeFinish } from "../proxy/recorder.ts";
import { Runner } from "../runner/runner.ts";
import type { Agent } from "../runner/types.ts";
import type { JsonValue, Rollout, RolloutMode, Store } from "../store/types.ts";

export type { EvalResult, FitResult, TrainerEvent };

import { type AdvantageEstimator, RunningBaseline } from "./advantages.ts";
import { type EvalResult, type FitResult, runRollouts, type TrainerEvent } from "./algorithm.ts";
import { latestCheckpoint, restoreCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import type { CreditAssignment } from "./credit.ts";
import { policyGradients } from "./grads.ts";
import { Optimizer, type OptimizerConfig } from "./optimizer.ts";
import { buildSamples, microBatches } from "./samples.ts";

export interface AlgorithmConfig {
  advantage?: "grpo" | "rloo" | "reinforce";
  /** GRPO: divide by the group's reward std (default true). */
  normalizeStd?: boolean;
  /** Rollouts per task (the GRPO group size). Default 4. */
  samplesPerTask?: number;
  /** Tasks per training step. Default 8. */
  tasksPerStep?: number;
  clipLow?: number;
  clipHigh?: number;
  /** k3 KL to the adapter-off policy (0 = off). */
  klCoef?: number;
  /** Entropy bonus coefficient (0 = off); the entropy is logged either way. */
  entropyCoef?: number;
  aggregation?: "token" | "sequence";
  credit?: CreditAssignment;
  /** Temperature assumed for calls that recorded none. Default 1. */
  temperature?: number;
  /** Most tokens per micro-batch (gradient accumulation beyond). Default 4096. */
  tokenBudget?: number;
  /** Recompute activations in backward to save memory. */
  recompute?: boolean;
  /** Multi-agent: train only these agents' calls (metadata.agent / OpenAI `user`). */
  agents?: string[];
}

export interface TrainerOptions<Task extends JsonValue = JsonValue> {
  model: Model;
  store: Store;
  /** Run agents in this process; without one, remote workers (`fulgur worker`) must serve the store. */
  agent?: Agent<Task>;
  /** The OpenAI endpoint agents call; default: a server the trainer starts for its model. */
  serverUrl?: string;
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
  /** Concurrent agents of the in-process runner. Default 8. */
  concurrency?: number;
  /** Validate every k steps (and before the first and after the last). 0 = never. Default 5. */
  valEvery?: number;
  /** A rollout with reward ≥ this counts as correct for accuracy. Default 1. */
  successThreshold?: number;
  checkpointDir?: string;
  checkpointEvery?: number;
  /** Continue from the newest checkpoint in checkpointDir. */
  resume?: boolean;
  /** Append one JSON object per event. */
  logFile?: string;
  rolloutTimeoutMs?: number;
  maxAttempts?: number;
  seed?: number;
  onEvent?: (event: TrainerEvent<Task>) => void;
}

export class Trainer<Task extends JsonValue = JsonValue> {
  readonly options: TrainerOptions<Task>;
  optimizer: Optimizer | null = null;
  step = 0;
  private server: RunningServer | null = null;
  private runner: Runner | null = null;
  private readonly baseline = new RunningBaseline();
  private cursor = 0;
  private readonly validation: FitResult["validation"] = [];

  constructor(options: TrainerOptions<Task>) {
    this.options = options;
  }

  private get algo(): Required<Omit<AlgorithmConfig, "agents" | "credit">> & AlgorithmConfig {
    const a = this.options.algorithm ?? {};
    return {
      advantage: a.advantage ?? "grpo",
      normalizeStd: a.normalizeStd ?? true,
      samplesPerTask: a.samplesPerTask ?? 4,
      tasksPerStep: a.tasksPerStep ?? 8,
      clipLow: a.clipLow ?? 0.2,
      clipHigh: a.clipHigh ?? 0.28,
      klCoef: a.klCoef ?? 0,
      entropyCoef: a.entropyCoef ?? 0,
      aggregation: a.aggregation ?? "token",
      temperature: a.temperature ?? 1,
      tokenBudget: a.tokenBudget ?? 4096,
      recompute: a.recompute ?? false,
      agents: a.agents,
      credit: a.credit,
    };
  }

  /** Trains for `steps` steps on `train`, validating on `val`. */
  async fit(data: { train: Task[]; val?: Task[] }, steps: number): Promise<FitResult> {
    if (data.train.length === 0) throw new Error("fit needs at least one training task");
    const history: Record<string, number>[] = [];
    await this.prepare();
    const { valEvery = 5, checkpointEvery = 0 } = this.options;
    let checkpoint: string | null = null;
    try {
      if (data.val && valEvery > 0 && this.step === 0) await this.validate(data.val);
      while (this.step < steps) {
        const metrics = await this.trainStep(data.train);
        history.push(metrics);
        const last = this.step === steps;
        if (data.val && valEvery > 0 && (this.step % valEvery === 0 || last)) await this.validate(data.val);
        if (this.options.checkpointDir && ((checkpointEvery > 0 && this.step % checkpointEvery === 0) || last)) {
          checkpoint = (await this.checkpoint()).dir;
        }
      }
    } finally {
      await this.stopAgents();
    }
    return { steps: this.step, history, validation: this.validation, checkpoint };
  }

  /** Accuracy and mean reward of the current policy on `tasks` (one rollout each, mode val). */
  async evaluate(tasks: Task[], mode: RolloutMode = "val"): Promise<EvalResult<Task>> {
    await this.startAgents();
    const rollouts = await this.runRollouts(
      tasks.map((task, i) => ({ task, group: `${mode}-${this.step}-${i}` })),
      mode,
    );
    const threshold = this.options.successThreshold ?? 1;
    const ok = rollouts.filter((r) => r.status === "succeeded" && r.finalReward !== null);
    const correct = ok.filter((r) => r.finalReward! >= threshold).length;
    return {
      accuracy: tasks.length ? correct / tasks.length : 0,
      rewardMean: ok.length ? ok.reduce((a, r) => a + r.finalReward!, 0) / ok.length : 0,
      rollouts: rollouts.length,
      failed: rollouts.length - ok.length,
      results: rollouts.map((r) => ({
        task: r.input as Task,
        reward: r.status === "succeeded" ? r.finalReward : null,
      })),
    };
  }

  /** Frees the optimizer state and stops the agents and internal server. */
  async close(): Promise<void> {
    await this.stopAgents();
    this.optimizer?.dispose();
    this.optimizer = null;
  }

  /** Creates or restores the adapter and optimizer; publishes the starting adapter version. */
  private async prepare(): Promise<void> {
    if (this.optimizer) return;
    const { model, checkpointDir, resume, adapter } = this.options;
    if (adapter !== undefined && this.options.lora === "full") throw new Error('a named adapter cannot train "full"');
    const make = () =>
      this.options.lora === "full"
        ? Optimizer.forAllWeights(model.transformer, this.optimizerConfig())
        : Optimizer.forLora(model.adapterNamed(adapter)!, this.optimizerConfig());
    const found = resume && checkpointDir ? await latestCheckpoint(checkpointDir) : null;
    if (found) {
      if (this.options.lora === "full")
        throw new Error("resuming full-weight training is not supported; use a LoRA adapter");
      const { optimizer, state } = await restoreCheckpoint(found, model, make, adapter);
      this.optimizer = optimizer;
      this.step = state.step;
      this.cursor = Number(state.extra.cursor ?? 0);
      if (typeof state.extra.baseline === "number") this.baseline.value = state.extra.baseline;
      await this.log({ event: "resumed", step: this.step, checkpoint: found.dir });
    } else {
      if (this.options.lora !== "full" && !model.adapterNamed(adapter)) {
        model.createAdapter(this.options.lora ?? { rank: 16, alpha: 32, seed: this.options.seed }, adapter);
      }
      this.optimizer = make();
    }
    await this.publishAdapter();
  }

  private optimizerConfig(): OptimizerConfig {
    return { lr: 1e-3, weightDecay: 0, ...this.options.optimizer };
  }

  private async trainStep(train: Task[]): Promise<Record<string, number>> {
    const algo = this.algo;
    const started = performance.now();
    const tasks = Array.from({ length: algo.tasksPerStep }, () => train[this.cursor++ % train.length]);
    const requests = tasks.flatMap((task, i) =>
      Array.from({ length: algo.samplesPerTask }, () => ({ task, group: `train-${this.step + 1}-${i}` })),
    );
    const rollouts = await this.runRollouts(requests, "train");
    const rolloutMs = performance.now() - started;
    const estimator: AdvantageEstimator =
      algo.advantage === "reinforce"
        ? { kind: "reinforce", baseline: this.baseline }
        : algo.advantage === "rloo"
          ? { kind: "rloo" }
          : { kind: "grpo", normalizeStd: algo.normalizeStd };
    const batch = await buildSamples(this.options.store, rollouts, {
      advantage: estimator,
      credit: algo.credit,
      agents: algo.agents,
      // A named adapter learns from its own calls; the default one, next to named ones, from the rest.
      adapter: this.options.adapter ?? (this.options.model.adapters.size > 0 ? null : undefined),
      defaultTemperature: algo.temperature,
    });
    const trainStarted = performance.now();
    const optimizer = this.optimizer!;
    const totalTokens = batch.samples.reduce((n, s) => n + s.lossMask.reduce((a, b) => a + b, 0), 0);
    let loss = 0;
    let clipped = 0;
    let kl = 0;
    let entropy = 0;
    let tokens = 0;
    for (const micro of microBatches(batch.samples, algo.tokenBudget)) {
      const microTokens = micro.reduce((n, s) => n + s.lossMask.reduce((a, b) => a + b, 0), 0);
      if (microTokens === 0) continue;
      const r = await policyGradients(
        this.options.model.transformer,
        micro,
        {
          ...algo,
          temperature: micro[0].temperature,
          weight: microTokens / totalTokens,
          lora: this.options.model.adapterNamed(this.options.adapter),
        },
        optimizer.sink,
      );
      loss += r.loss;
      clipped += r.metrics.clipFraction * microTokens;
      kl += r.metrics.kl * (microTokens / totalTokens);
      entropy += r.metrics.entropy * (microTokens / totalTokens);
      tokens += micro.reduce((n, s) => n + s.tokens.length, 0);
    }
    let gradNorm = 0;
    let skipped = 0;
    if (totalTokens > 0) {
      const stats = await optimizer.apply();
      gradNorm = stats.gradNorm;
      skipped = stats.skipped ? 1 : 0;
    }
    this.step++;
    await this.publishAdapter();
    const trainMs = performance.now() - trainStarted;
    const metrics: Record<string, number> = {
      rewardMean: batch.metrics.rewardMean,
      loss,
      clipFraction: totalTokens ? clipped / totalTokens : 0,
      kl,
      entropy,
      gradNorm: Number.isFinite(gradNorm) ? gradNorm : 0,
      skippedUpdate: skipped,
      samples: batch.samples.length,
      trainedTokens: totalTokens,
      tokensPerSecond: tokens / Math.max(trainMs / 1000, 1e-6),
      rollouts: batch.metrics.rollouts,
      failedRollouts: batch.metrics.failedRollouts,
      droppedGroups: batch.metrics.droppedGroups,
      rolloutSeconds: rolloutMs / 1000,
      updateSeconds: trainMs / 1000,
      adapterVersion: this.options.model.adapterNamed(this.options.adapter)?.version ?? 0,
    };
    await this.options.store.addTrainingStep({ step: this.step, metrics });
    await this.log({ event: "step", step: this.step, ...metrics });
    this.options.onEvent?.({ type: "step", step: this.step, metrics });
    return metrics;
  }

  private async validate(val: Task[]): Promise<void> {
    const r = await this.evaluate(val, "val");
    this.validation.push({ step: this.step, accuracy: r.accuracy, rewardMean: r.rewardMean });
    await this.options.store.addTrainingStep({
      step: this.step,
      metrics: { valAccuracy: r.accuracy, valReward: r.rewardMean },
    });
    await this.log({ event: "validation", step: this.step, accuracy: r.accuracy, rewardMean: r.rewardMean });
    this.options.onEvent?.({
      type: "validation",
      step: this.step,
      accuracy: r.accuracy,
      rewardMean: r.rewardMean,
      rollouts: r.rollouts,
      results: r.results,
    });
  }

  /** Saves a checkpoint now (also done by fit per checkpointEvery). */
  async checkpoint(): Promise<{ dir: string }> {
    const { checkpointDir, model } = this.options;
    if (!checkpointDir) throw new Error("no checkpointDir configured");
    if (!this.optimizer) throw new Error("nothing to checkpoint before training starts");
    const info = await saveCheckpoint(
      checkpointDir,
      model,
      this.optimizer,
      { step: this.step, extra: { cursor: this.cursor, baseline: this.baseline.value } },
      this.options.adapter,
    );
    await this.log({ event: "checkpoint", step: this.step, dir: info.dir });
    this.options.onEvent?.({ type: "checkpoint", step: this.step, dir: info.dir });
    return info;
  }

  /** The resource the trained adapter's versions are published as. */
  private get resourceName(): string {
    return this.options.adapter === undefined ? "adapter" : `adapter:${this.options.adapter}`;
  }

  /** The adapter now serving becomes resource "adapter" (or "adapter:<name>") version N; rollouts record N. */
  private async publishAdapter(): Promise<void> {
    const { model, store } = this.options;
    const record = await store.addResources(this.resourceName, { step: this.step, model: basename(model.dir) });
    const lora = model.adapterNamed(this.options.adapter);
    if (lora) lora.version = record.version;
  }

  private async runRollouts(requests: { task: Task; group: string }[], mode: RolloutMode): Promise<Rollout[]> {
    await this.startAgents();
    return runRollouts(this.options.store, requests, mode, {
      // Rollouts pin the adapter resource once training publishes one (evaluation alone does not).
      resources: this.optimizer ? { name: this.resourceName } : undefined,
      maxAttempts: this.options.maxAttempts ?? 2,
      timeoutMs: this.options.rolloutTimeoutMs ?? 120_000,
      onFinished: (done, total) => this.options.onEvent?.({ type: "rollouts", step: this.step, done, total }),
    });
  }

  private async startAgents(): Promise<void> {
    const { agent, model, store } = this.options;
    if (!agent || this.runner) return;
    let url = this.options.serverUrl;
    let runnerStore = store;
    if (!url) {
      const { createApp } = await import("../server.ts");
      const { app, recorder } = createApp({
        store,
        backend: new LocalBackend(model, { modelId: basename(model.dir) }),
      });
      this.server = await serveApp(app, "127.0.0.1", 0);
      url = this.server.url;
      runnerStore = flushingBeforeFinish(store, recorder);
    }
    this.runner = new Runner({
      store: runnerStore,
      agent: agent as Agent,
      serverUrl: url,
      // A named adapter's agent is served by it: model "<base>:<adapter>".
      model:
        this.options.adapter === undefined ? basename(model.dir) : `${basename(model.dir)}:${this.options.adapter}`,
      concurrency: this.options.concurrency ?? 8,
      workerId: `trainer-${process.pid}`,
    });
    this.runner.start();
  }

  private async stopAgents(): Promise<void> {
    await this.runner?.stop();
    this.runner = null;
    await this.server?.close();
    this.server = null;
  }

  private async log(record: Record<string, unknown>): Promise<void> {
    const file = this.options.logFile;
    if (!file) return;
    await mkdir(dirname(file), { recursive: true });
    await appendFile(file, `${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
  }
}
