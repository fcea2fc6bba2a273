// The Trainer end to end: a real agent (the openai SDK against the trainer's own server) on a
// task with a known answer, GRPO updates into the serving adapter, validation, metrics in the
// store and a JSONL log, adapter versions recorded per call, and checkpoint → resume with the
// identical optimizer state.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, expect, it } from "vitest";
import { train, withAgents } from "../../src/compose.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import type { AgentContext } from "../../src/runner/types.ts";
import { openStore } from "../../src/store/libsql.ts";
import type { Store } from "../../src/store/types.ts";
import { LightningRL } from "../../src/trainer/lightning-rl.ts";
import { Trainer, type TrainerEvent } from "../../src/trainer/trainer.ts";
import { useGpu } from "../helpers/gpu.ts";

const gpu = useGpu();
let dir: string;
let model: Model;
let store: Store;
let allowed: Set<string>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-trainer-"));
  await writeTinyModel(join(dir, "tiny"), {
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    intermediate: 48,
    seed: 21,
    tie: false,
    lmHeadStd: 0.5,
  });
  model = await loadModel(join(dir, "tiny"), { gpu: gpu(), maxSlots: 16, maxSeqLen: 256 });
  store = await openStore(`file:${join(dir, "store.db")}`);
  // The "right answers": any single token from the lower half of the vocabulary.
  const V = model.config.vocabSize;
  allowed = new Set(Array.from({ length: Math.floor(V / 2) }, (_, i) => model.tokenizer.decode([i])));
});

afterAll(async () => {
  await store?.close();
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** An ordinary openai-SDK agent: one call, reward 1 when the answer is an allowed token. */
async function agent(task: { prompt: string }, ctx: AgentContext): Promise<number> {
  const client = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey, maxRetries: 0 });
  const res = await client.chat.completions.create({
    model: ctx.llm.model,
    messages: [{ role: "user", content: task.prompt }],
    max_tokens: 1,
    temperature: 1,
  });
  return allowed.has(res.choices[0].message.content ?? "") ? 1 : 0;
}

it("trains an agent with GRPO, validates, logs, and resumes from a checkpoint identically", async () => {
  const tasks = Array.from({ length: 6 }, (_, i) => ({ prompt: `pick a token #${i}` }));
  // Validation samples at temperature 1, so use enough tasks that its noise is small.
  const val = Array.from({ length: 32 }, (_, i) => ({ prompt: `pick a token #${i % 6}` }));
  const checkpointDir = join(dir, "ckpt");
  const logFile = join(dir, "log", "train.jsonl");
  type Task = (typeof val)[number];
  const algorithm = new LightningRL<Task>({
    lora: { rank: 4, alpha: 8, seed: 1 },
    optimizer: { lr: 0.005 },
    algorithm: { samplesPerTask: 8, tasksPerStep: 3 },
    valEvery: 6,
    checkpointDir,
    checkpointEvery: 3,
  });
  const trainer = new Trainer<Task>({
    model,
    store,
    algorithm,
    logFile,
    onEvent: (e) => {
      if (e.type === "validation") validations.push(e);
    },
  });
  const validations: Extract<TrainerEvent<Task>, { type: "validation" }>[] = [];
  // The learner and the agents are separate: the composition root runs them around fit.
  const result = await withAgents({ model, store, agent }, () => trainer.fit({ train: tasks, val }, 6));
  // Each validation event lists every rollout's task and reward, consistent with its mean.
  expect(validations.map((v) => v.step)).toEqual([0, 6]);
  for (const v of validations) {
    expect(v.results.map((r) => r.task.prompt).sort()).toEqual(val.map((t) => t.prompt).sort());
    const rewarded = v.results.filter((r) => r.reward !== null);
    const mean = rewarded.reduce((a, r) => a + r.reward!, 0) / rewarded.length;
    expect(mean).toBeCloseTo(v.rewardMean, 9);
  }
  expect(result.steps).toBe(6);
  const [before, after] = [result.validation[0], result.validation[result.validation.length - 1]];
  expect(before.step).toBe(0);
  expect(after.step).toBe(6);
  expect(after.rewardMean, JSON.stringify(result.validation)).toBeGreaterThan(before.rewardMean + 0.15);
  expect(after.rewardMean).toBeGreaterThan(0.85);
  if (process.env.FULGUR_TEST_VERBOSE) console.log(result.validation);

  const steps = await store.listTrainingSteps();
  expect(steps.filter((s) => "rewardMean" in s.metrics).map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6]);
  expect(steps.some((s) => "valAccuracy" in s.metrics)).toBe(true);
  const log = readFileSync(logFile, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(log.filter((l) => l.event === "step").length).toBe(6);

  // Each call records the adapter version that produced it; versions advance with updates.
  const trainRollouts = await store.listRollouts({ mode: "train", limit: 1000 });
  const versions = new Set<string | null>();
  for (const r of trainRollouts) {
    for (const t of await store.getTransitions({ rolloutId: r.id })) versions.add(t.adapterVersion);
  }
  expect(versions.size).toBeGreaterThan(2);

  // Resume from the step-6 checkpoint in a new trainer: same step, same optimizer state.
  const saved = await algorithm.optimizer!.state();
  await trainer.close();
  model.removeAdapter();
  // The one-call API: agents + Trainer + LightningRL built from options, closed afterwards.
  const r2 = await train({
    model,
    store,
    agent,
    checkpointDir,
    resume: true,
    optimizer: { lr: 0.02 },
    data: { train: tasks },
    steps: 7,
  });
  expect(r2.steps).toBe(7);
  model.removeAdapter();
  const { restoreCheckpoint, latestCheckpoint } = await import("../../src/trainer/checkpoint.ts");
  const info = (await latestCheckpoint(checkpointDir))!;
  expect(info.step).toBe(7);
  const six = {
    ...info,
    dir: join(checkpointDir, "step-000006"),
    adapterDir: join(checkpointDir, "step-000006", "adapter"),
    step: 6,
  };
  const { Optimizer } = await import("../../src/trainer/optimizer.ts");
  const restored = await restoreCheckpoint(six, model, () => Optimizer.forLora(model.adapter!, { lr: 0.02 }));
  const state = await restored.optimizer.state();
  expect(state.step).toBe(saved.step);
  for (const [k, v] of saved.m) expect(Array.from(state.m.get(k)!)).toEqual(Array.from(v));
  for (const [k, v] of saved.v) expect(Array.from(state.v.get(k)!)).toEqual(Array.from(v));
  restored.optimizer.dispose();
});
