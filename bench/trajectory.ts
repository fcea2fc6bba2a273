// Trajectory aggregation vs per-call samples on real multi-turn rollouts: agents run against the
// real server on the built-in model (models/fulgur-calc) through the real Runner, their calls are
// recorded in a real libSQL store, and one LoRA PPO update (forward + backward over every
// micro-batch + AdamW) is timed on the samples `buildSamples` makes from the same rollouts with
// `trajectory: "call"` and with `"aggregate"`, alternating, in the same run. Two agents: the demo's
// calculator agent (examples/calculator-agent.ts: tool call, tool result, answer) and a 4-turn
// chat agent (the answer and three follow-up user turns). Reports per agent and layout: sequences,
// tokens computed, trained tokens, calls merged, update time (median), trained tokens/s, and the
// aggregate/call ratios; plus the loss of both layouts (equal when every call merged).
//   npx tsx bench/trajectory.ts [--quick]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { agent as calculatorAgent } from "../examples/calculator-agent.ts";
import { makeTasks } from "../src/demo/tasks.ts";
import { acquireGpu } from "../src/gpu/index.ts";
import { serveApp } from "../src/http/serve.ts";
import { loadModel, type Model } from "../src/model/model.ts";
import { LocalBackend } from "../src/proxy/local.ts";
import { flushingBeforeFinish } from "../src/proxy/recorder.ts";
import { Runner } from "../src/runner/runner.ts";
import type { Agent, AgentContext } from "../src/runner/types.ts";
import { createApp } from "../src/server.ts";
import { openStore } from "../src/store/libsql.ts";
import type { JsonValue, Rollout, Store } from "../src/store/types.ts";
import { runRollouts } from "../src/trainer/algorithm.ts";
import { policyGradients } from "../src/trainer/grads.ts";
import { Optimizer } from "../src/trainer/optimizer.ts";
import { buildSamples, microBatches, type TrainingSample } from "../src/trainer/samples.ts";
import { emit } from "./lib.ts";

const here = dirname(fileURLToPath(import.meta.url));
const MODEL_DIR = join(here, "..", "models", "fulgur-calc");
const PPO = { clipLow: 0.2, clipHigh: 0.28 };
const TOKEN_BUDGET = 4096;

/** Four turns of plain chat: each follow-up sends the whole history back (no tools). */
async function chatAgent(task: { question: string }, ctx: AgentContext): Promise<number> {
  const client = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey, maxRetries: 0 });
  const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: task.question }];
  let words = 0;
  for (let turn = 0; turn < 4; turn++) {
    const res = await client.chat.completions.create({ model: ctx.llm.model, messages, max_tokens: 24 });
    const message = res.choices[0].message;
    words += (message.content ?? "").split(/\s+/).filter(Boolean).length;
    messages.push(
      { role: "assistant", content: message.content ?? "" },
      { role: "user", content: ["Explain.", "And then?", "Check it."][turn] ?? "Ok." },
    );
  }
  // Any reward with spread inside a group (the update needs non-zero advantages).
  return words % 3;
}

/** One update (all micro-batches + AdamW) on `samples`; returns its wall time and loss. */
async function update(model: Model, optimizer: Optimizer, samples: TrainingSample[]) {
  const started = performance.now();
  const total = samples.reduce((n, s) => n + s.lossMask.reduce((a, b) => a + b, 0), 0);
  let loss = 0;
  for (const micro of microBatches(samples, TOKEN_BUDGET)) {
    const tokens = micro.reduce((n, s) => n + s.lossMask.reduce((a, b) => a + b, 0), 0);
    const r = await policyGradients(
      model.transformer,
      micro,
      { ...PPO, temperature: micro[0].temperature, weight: tokens / total },
      optimizer.sink,
    );
    loss += r.loss;
  }
  await optimizer.apply();
  return { ms: performance.now() - started, loss };
}

async function benchAgent(
  name: string,
  model: Model,
  store: Store,
  url: string,
  recorderStore: Store,
  agent: Agent,
  tasks: JsonValue[],
  group: number,
  repeats: number,
) {
  const runner = new Runner({
    store: recorderStore,
    agent,
    serverUrl: url,
    model: basename(model.dir),
    concurrency: 8,
    workerId: `bench-${name}`,
  });
  runner.start();
  let rollouts: Rollout[];
  try {
    rollouts = await runRollouts(
      store,
      tasks.flatMap((task, i) => Array.from({ length: group }, () => ({ task, group: `${name}-${i}` }))),
      "train",
      { timeoutMs: 300_000 },
    );
  } finally {
    await runner.stop();
  }
  const options = { advantage: { kind: "grpo" as const } };
  const layouts = {
    call: await buildSamples(store, rollouts, { ...options, trajectory: "call" }),
    aggregate: await buildSamples(store, rollouts, { ...options, trajectory: "aggregate" }),
  };
  const calls = layouts.call.metrics.transitions;
  // lr 0: AdamW does all its work but the adapter stays put, so every repeat (and both layouts)
  // sees the same policy and the two losses are comparable.
  const optimizer = Optimizer.forLora(model.adapter!, { lr: 0, weightDecay: 0 });
  const times: Record<string, number[]> = { call: [], aggregate: [] };
  const losses: Record<string, number> = {};
  try {
    // Warm-up (pipelines, pool), then alternate so drift on a shared machine hits both alike.
    for (const layout of ["call", "aggregate"] as const) await update(model, optimizer, layouts[layout].samples);
    for (let i = 0; i < repeats; i++) {
      for (const layout of ["call", "aggregate"] as const) {
        const r = await update(model, optimizer, layouts[layout].samples);
        times[layout].push(r.ms);
        if (i === 0) losses[layout] = r.loss;
      }
    }
  } finally {
    optimizer.dispose();
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const summary: Record<string, { ms: number; trained: number; computed: number }> = {};
  for (const layout of ["call", "aggregate"] as const) {
    const samples = layouts[layout].samples;
    const trained = samples.reduce((n, s) => n + s.lossMask.reduce((a, b) => a + b, 0), 0);
    const computed = samples.reduce((n, s) => n + s.tokens.length, 0);
    const ms = median(times[layout]);
    summary[layout] = { ms, trained, computed };
    const extra = { agent: name, layout, rollouts: rollouts.length, calls, repeats };
    emit({ bench: "trajectory", metric: "sequences", value: samples.length, unit: "count", ...extra });
    emit({
      bench: "trajectory",
      metric: "merged_calls",
      value: layouts[layout].metrics.mergedCalls,
      unit: "count",
      ...extra,
    });
    emit({ bench: "trajectory", metric: "computed_tokens", value: computed, unit: "tokens", ...extra });
    emit({ bench: "trajectory", metric: "trained_tokens", value: trained, unit: "tokens", ...extra });
    emit({ bench: "trajectory", metric: "update_ms", value: ms, unit: "ms", ...extra });
    emit({
      bench: "trajectory",
      metric: "trained_tokens_per_s",
      value: trained / (ms / 1000),
      unit: "tokens/s",
      ...extra,
    });
    emit({ bench: "trajectory", metric: "loss", value: losses[layout], unit: "loss", ...extra });
  }
  const { call, aggregate } = summary;
  emit({
    bench: "trajectory",
    metric: "aggregate_vs_call_speedup",
    value: call.ms / aggregate.ms,
    unit: "ratio",
    agent: name,
    computedTokensRatio: aggregate.computed / call.computed,
    trainedTokensPerSecondRatio: aggregate.trained / aggregate.ms / (call.trained / call.ms),
    lossDiff: Math.abs(losses.aggregate - losses.call),
    mergedFraction: layouts.aggregate.metrics.mergedCalls / Math.max(calls, 1),
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes("--quick");
  const gpu = await acquireGpu();
  const dir = mkdtempSync(join(tmpdir(), "fulgur-bench-trajectory-"));
  const model = await loadModel(MODEL_DIR, { gpu, maxSlots: 32, maxSeqLen: 512 });
  model.createAdapter({ rank: 16, alpha: 32, seed: 1 });
  const store = await openStore(`file:${join(dir, "store.db")}`);
  const { app, recorder } = createApp({ store, backend: new LocalBackend(model, { modelId: basename(model.dir) }) });
  const server = await serveApp(app, "127.0.0.1", 0);
  try {
    const tasks = makeTasks(7, quick ? 4 : 8, "bench") as unknown as JsonValue[];
    const group = 4;
    const repeats = quick ? 2 : 3;
    const recording = flushingBeforeFinish(store, recorder);
    await benchAgent(
      "calculator",
      model,
      store,
      server.url,
      recording,
      calculatorAgent as Agent,
      tasks,
      group,
      repeats,
    );
    await benchAgent("chat-4-turn", model, store, server.url, recording, chatAgent as Agent, tasks, group, repeats);
  } finally {
    await server.close();
    await store.close();
    model.dispose();
    gpu.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
