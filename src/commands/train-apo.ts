// `fulgur train` with `"algorithm": { "name": "apo", ... }`: prompt optimisation from the command
// line. The composition root for APO: a Fulgur server (a local model, or an upstream
// OpenAI-compatible server) that records the agent's calls, an in-process runner with the
// agent, and `createApo` over the same store; the optimiser LLM is the served model unless the
// config names another endpoint.

import { appendFile, mkdir, writeFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { Progress } from "../progress.ts";
import { Runner } from "../runner/runner.ts";
import { startServer } from "../server.ts";
import type { JsonValue } from "../store/types.ts";
import { type ApoOptions, createApo } from "../trainer/apo.ts";
import type { ChatEndpoint } from "../trainer/apo-llm.ts";
import { importAgent, readTasks } from "./inputs.ts";

export interface ApoTrainConfig {
  /** Local model directory the agent's calls are served from… */
  model?: string;
  /** …or an upstream OpenAI-compatible server (its model id is what the agent asks for). */
  upstream?: { baseURL: string; apiKey?: string; model: string };
  agent: string;
  tasks: { train: string; val?: string };
  /** Rounds of beam search. */
  steps: number;
  store?: string;
  algorithm: Omit<ApoOptions, "llm"> & {
    name: "apo";
    /** The optimiser LLM; default: the served model. `apiKeyEnv` names an environment variable holding the key. */
    llm?: Partial<ChatEndpoint> & { apiKeyEnv?: string };
  };
  concurrency?: number;
  logFile?: string;
  /** Writes { template, version, valReward } of the winner here (JSON). */
  output?: string;
}

/** True when a `fulgur train` config selects APO. */
export function isApoConfig(config: { algorithm?: unknown }): boolean {
  const a = config.algorithm as { name?: unknown } | undefined;
  return a?.name === "apo";
}

/** Runs APO from a parsed config (paths relative to `configPath`'s directory). */
export async function runApoTrain(config: ApoTrainConfig, configPath: string, json = false): Promise<number> {
  const rel = (p: string | undefined) => (p ? resolve(dirname(configPath), p) : undefined);
  for (const key of ["agent", "tasks", "steps"] as const) {
    if (config[key] === undefined) throw new Error(`${configPath}: "${key}" is required`);
  }
  if (!config.model === !config.upstream) {
    throw new Error(`${configPath}: APO needs either "model" (a local model) or "upstream" ({ baseURL, model })`);
  }
  const progress = new Progress({ json });
  const storeUrl = config.store?.startsWith("file:")
    ? `file:${rel(config.store.slice(5))}`
    : (config.store ?? ":memory:");
  const modelDir = rel(config.model);
  const server = await startServer({
    modelDir,
    upstreamUrl: config.upstream?.baseURL,
    upstreamApiKey: config.upstream?.apiKey,
    storeUrl,
    port: 0,
  });
  const modelName = modelDir ? basename(modelDir) : config.upstream!.model;
  const runner = new Runner({
    store: server.store,
    agent: await importAgent(rel(config.agent)!),
    serverUrl: server.url,
    model: modelName,
    concurrency: config.concurrency ?? 8,
    workerId: `apo-${process.pid}`,
  });
  runner.start();
  try {
    const { name: _name, llm, ...options } = config.algorithm;
    const apiKey = llm?.apiKey ?? (llm?.apiKeyEnv ? process.env[llm.apiKeyEnv] : undefined);
    const apo = createApo({
      ...options,
      llm: {
        baseURL: llm?.baseURL ?? `${server.url}/v1`,
        model: llm?.model ?? modelName,
        apiKey,
        timeoutMs: llm?.timeoutMs,
      },
    });
    const train = await readTasks(rel(config.tasks.train)!);
    const val = config.tasks.val ? await readTasks(rel(config.tasks.val)!) : undefined;
    const logFile = rel(config.logFile);
    const result = await apo.fit(
      {
        store: server.store,
        async log(record) {
          if (!logFile) return;
          await mkdir(dirname(logFile), { recursive: true });
          await appendFile(logFile, `${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
        },
        emit(e) {
          if (e.type === "step") {
            progress.event({ event: "step", step: e.step, ...e.metrics });
            progress.update(
              e.step,
              config.steps,
              `best ${e.metrics.bestScore.toFixed(3)} beam ${e.metrics.beamMean.toFixed(3)} candidates ${e.metrics.candidates}`,
            );
          } else if (e.type === "validation") {
            progress.event(
              { event: "validation", step: e.step, accuracy: e.accuracy, rewardMean: e.rewardMean },
              `step ${e.step}: validation accuracy ${(e.accuracy * 100).toFixed(1)}% (mean reward ${e.rewardMean.toFixed(3)})`,
            );
          }
        },
      },
      { train: train as JsonValue[], val },
      config.steps,
    );
    const output = rel(config.output);
    if (output) await writeFile(output, `${JSON.stringify(result.best, null, 2)}\n`);
    progress.clear();
    progress.event(
      {
        event: "done",
        algorithm: "apo",
        steps: result.steps,
        validation: result.validation,
        prompt: result.best,
        output: output ?? null,
      },
      `done: ${result.steps} APO rounds; prompt version ${result.best.version}${
        result.best.valReward === null ? "" : ` (validation reward ${result.best.valReward.toFixed(3)})`
      }:\n${result.best.template}`,
    );
    return 0;
  } finally {
    await runner.stop();
    await server.shutdown();
  }
}
