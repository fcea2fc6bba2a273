// `Trainer`: the learner over the Store. It hands an `Algorithm` (LightningRL, SFT, or any
// registered one) the store, the local model and a log, and runs it; the algorithm enqueues
// rollouts and learns from what comes back. Who runs the agents — an in-process runner and server
// started by the composition root (src/compose.ts), or remote `fulgur worker`s — is not its
// concern: this module never imports the server, the proxy or the runner.

import { appendFile, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import type { Model } from "../model/model.ts";
import type { JsonValue, RolloutMode, Store } from "../store/types.ts";
import {
  type Algorithm,
  type AlgorithmContext,
  type EvalResult,
  evaluateTasks,
  type FitResult,
  type TrainerEvent,
} from "./algorithm.ts";

export type { AlgorithmConfig } from "./config.ts";
export type { EvalResult, FitResult, TrainerEvent };

export interface TrainerOptions<Task extends JsonValue = JsonValue> {
  store: Store;
  /** The local model the algorithm trains (absent for algorithms that train none). */
  model?: Model;
  algorithm: Algorithm<Task>;
  /** Append one JSON object per event. */
  logFile?: string;
  onEvent?: (event: TrainerEvent<Task>) => void;
}

export class Trainer<Task extends JsonValue = JsonValue> {
  readonly options: TrainerOptions<Task>;
  readonly algorithm: Algorithm<Task>;
  private logged: Promise<void> = Promise.resolve();

  constructor(options: TrainerOptions<Task>) {
    this.options = options;
    this.algorithm = options.algorithm;
  }

  /** What the algorithm works with. */
  get context(): AlgorithmContext<Task> {
    return {
      store: this.options.store,
      model: this.options.model,
      log: (record) => this.log(record),
      emit: (event) => this.options.onEvent?.(event),
    };
  }

  /** Runs the algorithm for `steps` steps on `train`, validating on `val`. */
  async fit(data: { train: Task[]; val?: Task[] }, steps: number): Promise<FitResult> {
    try {
      return await this.algorithm.fit(this.context, data, steps);
    } finally {
      await this.logged;
    }
  }

  /** Accuracy and mean reward on `tasks` (one rollout each), as served now. */
  async evaluate(tasks: Task[], mode: RolloutMode = "val", successThreshold = 1): Promise<EvalResult<Task>> {
    return evaluateTasks(this.options.store, tasks, {
      mode,
      successThreshold,
      run: { onFinished: (done, total) => this.options.onEvent?.({ type: "rollouts", step: 0, done, total }) },
    });
  }

  /** Releases the algorithm's GPU state. */
  async close(): Promise<void> {
    await this.algorithm.close?.();
    await this.logged;
  }

  /** Appends to the log file in call order (writes are chained, never interleaved). */
  private log(record: Record<string, unknown>): Promise<void> {
    const file = this.options.logFile;
    if (!file) return Promise.resolve();
    const line = `${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`;
    const written = this.logged.then(async () => {
      await mkdir(dirname(file), { recursive: true });
      await appendFile(file, line);
    });
    this.logged = written.catch(() => {});
    return written;
  }
}
