// The composition root: where a model, a store, an agent and an algorithm are wired into a
// running training job. `startAgents` serves the model on a loopback port (the full app: proxy,
// recorder, store API) unless given a server URL, and runs the agent there with an in-process
// Runner whose attempts finish only after their call records are written; `train` is the one-call
// API on top (agents + Trainer + the algorithm named by its options). src/trainer/ stays a pure
// learner over the store because everything that needs the server or the runner is here.

import { basename } from "node:path";
import { type RunningServer, serveApp } from "./http/serve.ts";
import type { Model } from "./model/model.ts";
import { LocalBackend } from "./proxy/local.ts";
import { flushingBeforeFinish } from "./proxy/recorder.ts";
import { Runner, type RunnerOptions } from "./runner/runner.ts";
import type { Agent } from "./runner/types.ts";
import { createApp } from "./server.ts";
import type { JsonValue, Store } from "./store/types.ts";
import type { Algorithm, FitResult, TrainerEvent } from "./trainer/algorithm.ts";
import { type AlgorithmSetup, createAlgorithm } from "./trainer/registry.ts";
import { Trainer } from "./trainer/trainer.ts";

export interface AgentsOptions<Task extends JsonValue = JsonValue> {
  store: Store;
  agent: Agent<Task>;
  /** The model to serve; needed unless `serverUrl` names a running server. */
  model?: Model;
  /** The OpenAI endpoint agents call; default: a loopback server started here for `model`. */
  serverUrl?: string;
  /** Model name agents get in ctx.llm.model. Default: the model directory's name. */
  modelName?: string;
  /** Concurrent agents. Default 8. */
  concurrency?: number;
  workerId?: string;
  /** The judge behind agents' `ctx.judge` (default: the served model with the default rubric). */
  judge?: RunnerOptions["judge"];
}

export interface RunningAgents {
  /** The server agents call. */
  url: string;
  stop(): Promise<void>;
}

/** Starts an in-process runner on `store` (and a server for `model` unless `serverUrl` is given). */
export async function startAgents<Task extends JsonValue>(options: AgentsOptions<Task>): Promise<RunningAgents> {
  const { model, store } = options;
  let url = options.serverUrl;
  let runnerStore = store;
  let server: RunningServer | null = null;
  const modelName = options.modelName ?? (model ? basename(model.dir) : undefined);
  if (!url) {
    if (!model) throw new Error("startAgents needs a model to serve, or the serverUrl of a running server");
    const { app, recorder } = createApp({ store, backend: new LocalBackend(model, { modelId: basename(model.dir) }) });
    server = await serveApp(app, "127.0.0.1", 0);
    url = server.url;
    runnerStore = flushingBeforeFinish(store, recorder);
  }
  if (!modelName) throw new Error("startAgents needs modelName (the model agents ask the server for)");
  const runner = new Runner({
    store: runnerStore,
    agent: options.agent as Agent,
    serverUrl: url,
    model: modelName,
    concurrency: options.concurrency ?? 8,
    workerId: options.workerId ?? `trainer-${process.pid}`,
    judge: options.judge,
  });
  runner.start();
  return {
    url,
    async stop() {
      await runner.stop();
      await server?.close();
    },
  };
}

/** Runs `fn` with agents running, and stops them afterwards (also when `fn` throws). */
export async function withAgents<Task extends JsonValue, T>(
  options: AgentsOptions<Task>,
  fn: (agents: RunningAgents) => Promise<T>,
): Promise<T> {
  const agents = await startAgents(options);
  try {
    return await fn(agents);
  } finally {
    await agents.stop();
  }
}

export interface TrainOptions<Task extends JsonValue = JsonValue>
  extends Omit<AgentsOptions<Task>, "agent">,
    Omit<AlgorithmSetup, "algorithm"> {
  /** Runs agents in this process; without one, remote workers (`fulgur worker`) must serve the store. */
  agent?: Agent<Task>;
  /** An algorithm, or the `"algorithm"` block of a config (LightningRL options, or `name` picks another). */
  algorithm?: Algorithm<Task> | AlgorithmSetup["algorithm"];
  data: { train: Task[]; val?: Task[] };
  steps: number;
  logFile?: string;
  onEvent?: (event: TrainerEvent<Task>) => void;
}

/**
 * Trains in one call: starts the agents (when `agent` is given), runs the algorithm for `steps`
 * steps and stops them. An algorithm built here from options is closed afterwards; the trained
 * adapter stays on the model (`model.saveAdapter(dir)` saves it).
 */
export async function train<Task extends JsonValue>(options: TrainOptions<Task>): Promise<FitResult> {
  const given = options.algorithm && typeof (options.algorithm as Algorithm<Task>).fit === "function";
  const algorithm = given
    ? (options.algorithm as Algorithm<Task>)
    : createAlgorithm<Task>({ ...options, algorithm: options.algorithm as AlgorithmSetup["algorithm"] });
  const trainer = new Trainer<Task>({
    store: options.store,
    model: options.model,
    algorithm,
    logFile: options.logFile,
    onEvent: options.onEvent,
  });
  const runFit = () => trainer.fit(options.data, options.steps);
  // A named adapter's agents are served by it: model "<base>:<adapter>".
  const modelName =
    options.modelName ??
    (options.adapter !== undefined && options.model ? `${basename(options.model.dir)}:${options.adapter}` : undefined);
  try {
    return options.agent ? await withAgents({ ...options, modelName, agent: options.agent }, runFit) : await runFit();
  } finally {
    if (!given) await trainer.close();
  }
}
