// The seam between the learner and what it learns: an `Algorithm` (LightningRL, SFT, prompt
// optimisation, ...) enqueues tasks as rollouts in the Store, waits for whoever runs agents on
// that store (an in-process runner started by the composition root, or remote workers) to
// finish them, reads their calls and rewards back, and changes resources (adapter weights,
// prompt templates). It never starts a server or an agent itself, so `src/trainer/` depends on
// the store and the model only.

import type { Model } from "../model/model.ts";
import type { EnqueueRolloutInput, JsonValue, Rollout, RolloutMode, Store } from "../store/types.ts";

/** What an algorithm reports while it runs (the dashboard and progress lines read these). */
export type TrainerEvent<Task = JsonValue> =
  | { type: "step"; step: number; metrics: Record<string, number> }
  | {
      type: "validation";
      step: number;
      accuracy: number;
      rewardMean: number;
      rollouts: number;
      /** Each validation rollout's task and reward (null when it did not succeed). */
      results: EvalResult<Task>["results"];
    }
  | { type: "checkpoint"; step: number; dir: string }
  | { type: "rollouts"; step: number; done: number; total: number }
  /** Rollouts for training step `forStep` were enqueued (asynchronous training enqueues ahead). */
  | { type: "enqueued"; step: number; forStep: number; rollouts: number }
  /** An update (gradients + optimizer step) of step `step` started or ended. */
  | { type: "update"; step: number; phase: "start" | "end" }
  /** Validation by held-out loss (SFT), instead of accuracy. */
  | { type: "validationLoss"; step: number; loss: number };

export interface EvalResult<Task = JsonValue> {
  accuracy: number;
  rewardMean: number;
  rollouts: number;
  failed: number;
  /** Per rollout: its task and final reward (null when it did not succeed). */
  results: { task: Task; reward: number | null }[];
}

export interface FitResult {
  steps: number;
  history: Record<string, number>[];
  validation: { step: number; accuracy: number; rewardMean: number }[];
  checkpoint: string | null;
  /** Algorithm-specific results for the final report (SFT: parameters, final loss, validation losses). */
  summary?: Record<string, JsonValue>;
}

/** What the learner hands an algorithm: the store agents work on, and the local model if any. */
export interface AlgorithmContext<Task extends JsonValue = JsonValue> {
  store: Store;
  /** The local model whose adapter/weights the algorithm may train (absent when serving upstream). */
  model?: Model;
  /** Appends one JSON record to the run's log (no-op without a log file). */
  log(record: Record<string, unknown>): Promise<void>;
  /** Progress and metrics for listeners (CLI progress line, demo table). */
  emit(event: TrainerEvent<Task>): void;
}

export interface Algorithm<Task extends JsonValue = JsonValue> {
  /** Short name for logs and configs ("lightningrl", "sft", "apo"). */
  readonly name: string;
  /** Runs `steps` steps on `train`, validating on `val` where the algorithm validates. */
  fit(ctx: AlgorithmContext<Task>, data: { train: Task[]; val?: Task[] }, steps: number): Promise<FitResult>;
  /** Releases GPU state (optimizer moments, ...). */
  close?(): Promise<void>;
}

export interface RolloutRequest<Task> {
  task: Task;
  /** GRPO group (or any grouping the algorithm wants to read back). */
  group: string;
}

export interface RunRolloutsOptions {
  /** Resources the rollouts pin (`{ name: "adapter" }` = its latest version when claimed). */
  resources?: EnqueueRolloutInput["resources"];
  maxAttempts?: number;
  /** Per-attempt timeout; waiting for the whole batch gives up after 3×. Default 120 s. */
  timeoutMs?: number;
  /** Told each time the count of finished rollouts is known. */
  onFinished?: (done: number, total: number) => void;
}

/**
 * Enqueues the requests as rollouts and waits for agents to finish them; rollouts that do not
 * finish in time are cancelled (so no worker keeps running them) and left out of the answer.
 */
export async function runRollouts<Task extends JsonValue>(
  store: Store,
  requests: RolloutRequest<Task>[],
  mode: RolloutMode,
  options: RunRolloutsOptions = {},
): Promise<Rollout[]> {
  return (await startRollouts(store, requests, mode, options)).finished;
}

/** Rollouts enqueued and running; `finished` settles like runRollouts' answer. */
export interface PendingRollouts {
  ids: string[];
  finished: Promise<Rollout[]>;
  /** Cancels those not yet ended (asynchronous training abandons batches it will not use). */
  cancel(): Promise<void>;
}

/** Enqueues the requests and returns once they are in the store, without waiting for agents. */
export async function startRollouts<Task extends JsonValue>(
  store: Store,
  requests: RolloutRequest<Task>[],
  mode: RolloutMode,
  options: RunRolloutsOptions = {},
): Promise<PendingRollouts> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const enqueued = await store.enqueueRollouts(
    requests.map((r) => ({
      input: r.task,
      mode,
      groupId: r.group,
      resources: options.resources,
      config: { maxAttempts: options.maxAttempts ?? 2, timeoutMs },
    })),
  );
  const ids = enqueued.map((r) => r.id);
  const cancelOpen = async (done: Set<string>) => {
    for (const id of ids) if (!done.has(id)) await store.cancelRollout(id).catch(() => {});
  };
  const finished = (async () => {
    const ended = await store.waitForRollouts(ids, { timeoutMs: timeoutMs * 3 });
    options.onFinished?.(ended.length, ids.length);
    if (ended.length < ids.length) await cancelOpen(new Set(ended.map((r) => r.id)));
    return ended;
  })();
  // A batch nobody awaits (abandoned by an error) must not surface as an unhandled rejection.
  finished.catch(() => {});
  return { ids, finished, cancel: () => cancelOpen(new Set()) };
}

export interface EvaluateOptions {
  mode?: RolloutMode;
  /** A rollout with reward ≥ this counts as correct. Default 1. */
  successThreshold?: number;
  /** Group id prefix (default `${mode}`). */
  group?: string;
  run?: RunRolloutsOptions;
}

/** Accuracy and mean reward over `tasks`, one rollout each, run by whoever serves the store. */
export async function evaluateTasks<Task extends JsonValue>(
  store: Store,
  tasks: Task[],
  options: EvaluateOptions = {},
): Promise<EvalResult<Task>> {
  const mode = options.mode ?? "val";
  const group = options.group ?? mode;
  const rollouts = await runRollouts(
    store,
    tasks.map((task, i) => ({ task, group: `${group}-${i}` })),
    mode,
    options.run,
  );
  const threshold = options.successThreshold ?? 1;
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
