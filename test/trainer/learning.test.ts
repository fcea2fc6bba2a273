// A CI-sized RL run with a known answer: a one-token bandit where a reward of 1 goes to any
// token in the lower quarter of the vocabulary. Sample groups from the live engine, compute GRPO
// advantages, backprop the PPO loss into the LoRA adapter, step AdamW — and serving, which reads
// the same adapter tensors, must pick rewarded tokens far more often right away.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { computeAdvantages } from "../../src/trainer/advantages.ts";
import { policyGradients } from "../../src/trainer/grads.ts";
import { Optimizer } from "../../src/trainer/optimizer.ts";
import { useGpu } from "../helpers/gpu.ts";

const gpu = useGpu();
let dir: string;
let model: Model;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-learn-"));
  await writeTinyModel(dir, {
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    intermediate: 48,
    seed: 21,
    tie: false,
    lmHeadStd: 0.5,
  });
  model = await loadModel(dir, { gpu: gpu(), maxSlots: 16, maxSeqLen: 64 });
});

afterAll(() => {
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

it("GRPO on a bandit raises the reward, and serving uses each update immediately", async () => {
  const V = model.config.vocabSize;
  const reward = (token: number) => (token < V / 4 ? 1 : 0);
  const prompt = model.tokenizer.encode("pick a token:");
  const lora = model.createAdapter({ rank: 4, alpha: 8, seed: 1 });
  const optimizer = Optimizer.forLora(lora, { lr: 0.02, maxGradNorm: 1 });
  const sampleGroup = (step: number) =>
    Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        model.generateOne(prompt, { temperature: 1, maxTokens: 1, ignoreEos: true, seed: step * 100 + i }),
      ),
    );
  const before = (await sampleGroup(1000)).reduce((a, g) => a + reward(g.tokens[0]), 0) / 16;
  for (let step = 0; step < 15; step++) {
    const group = await sampleGroup(step);
    const { advantages } = computeAdvantages(
      group.map((g) => ({ group: "bandit", reward: reward(g.tokens[0]) })),
      { kind: "grpo" },
    );
    if (advantages[0] === null) continue;
    const samples = group.map((g, i) => ({
      tokens: [...prompt, g.tokens[0]],
      lossMask: [...prompt.map(() => 0), 1],
      advantage: advantages[i]!,
      oldLogprobs: [...prompt.map(() => 0), g.logprobs[0]],
    }));
    await policyGradients(model.transformer, samples, { temperature: 1, clipLow: 0.2, clipHigh: 0.28 }, optimizer.sink);
    const stats = await optimizer.apply();
    expect(stats.skipped).toBe(false);
    expect(stats.gradNorm).toBeGreaterThan(0);
  }
  const after = (await sampleGroup(2000)).reduce((a, g) => a + reward(g.tokens[0]), 0) / 16;
  expect(before).toBeLessThan(0.6);
  expect(after).toBeGreaterThan(0.85);
  expect(after - before).toBeGreaterThan(0.3);
  // The base policy (adapter off) is unchanged: the engine's adapter switch proves the update
  // lives only in the adapter the engine serves.
  model.engine.useAdapter = false;
  const base = (await sampleGroup(2000)).reduce((a, g) => a + reward(g.tokens[0]), 0) / 16;
  model.engine.useAdapter = true;
  expect(base).toBeLessThan(0.6);
  optimizer.dispose();
});
