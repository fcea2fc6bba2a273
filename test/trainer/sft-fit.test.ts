// The SFT algorithm end to end: the learning-rate schedule, forward-only loss = the training loss,
// chat records → masked samples, fitSft learning a fixed reply through a LoRA adapter (and its
// validation loss falling), and full-weight SFT saved with saveFullWeights reloading to the same
// logits.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChatMessage } from "../../src/model/chat-template.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { saveFullWeights } from "../../src/model/save-weights.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { Optimizer } from "../../src/trainer/optimizer.ts";
import { sftGradients } from "../../src/trainer/sft.ts";
import { asChatRecord, chatSample } from "../../src/trainer/sft-data.ts";
import { fitSft, sftLearningRate, sftLoss } from "../../src/trainer/sft-fit.ts";
import { useGpu } from "../helpers/gpu.ts";

const gpu = useGpu();
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-sft-fit-"));
  // An untied head with larger weights: a LoRA adapter on a random model can then move the logits.
  await writeTinyModel(join(dir, "base"), { ...SPEC, seed: 9 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SPEC = { hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, tie: false, lmHeadStd: 0.5 };

const chat = (question: string, answer: string): ChatMessage[] => [
  { role: "user", content: question },
  { role: "assistant", content: answer },
];

describe("sftLearningRate", () => {
  it("warms up linearly, peaks, then follows a cosine down to the floor", () => {
    expect(sftLearningRate(1, 100, 1, 10, 0.1)).toBeCloseTo(0.1, 12);
    expect(sftLearningRate(10, 100, 1, 10, 0.1)).toBeCloseTo(1, 12);
    expect(sftLearningRate(55, 100, 1, 10, 0.1)).toBeCloseTo(0.55, 12); // halfway: (1 + 0.1) / 2
    expect(sftLearningRate(100, 100, 1, 10, 0.1)).toBeCloseTo(0.1, 12);
    for (let s = 11; s < 100; s++)
      expect(sftLearningRate(s + 1, 100, 1, 10, 0.1)).toBeLessThanOrEqual(sftLearningRate(s, 100, 1, 10, 0.1));
    expect(sftLearningRate(1, 1, 2e-3, 0, 0.5)).toBeCloseTo(1e-3, 12);
  });
});

describe("chat records", () => {
  it("validates records and names the bad one", () => {
    expect(() => asChatRecord({}, "train record 3")).toThrow(/train record 3: .*"messages"/);
    expect(() => asChatRecord({ messages: [{ role: "user", content: "hi" }] }, "r")).toThrow(/assistant/);
    expect(() => asChatRecord({ messages: [{ content: "x" }] }, "r")).toThrow(/role/);
    expect(asChatRecord({ messages: chat("a", "b") }, "r").messages).toHaveLength(2);
  });
});

describe("fitSft", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(join(dir, "base"), { gpu: gpu(), maxSlots: 4, maxSeqLen: 128 });
  });
  afterAll(() => model?.dispose());

  it("the forward-only loss is the training loss", async () => {
    const samples = [chatSample(model.tokenizer, chat("Say hi.", "Hi there!"))];
    const optimizer = Optimizer.forAllWeights(model.transformer, { lr: 0 });
    try {
      const withGrads = await sftGradients(model.transformer, samples, optimizer.sink);
      expect(await sftLoss(model, samples)).toBeCloseTo(withGrads.loss, 5);
      optimizer.zeroGrad();
    } finally {
      optimizer.dispose();
    }
  });

  it("learns a fixed reply through a LoRA adapter; held-out loss falls too", async () => {
    const train = ["Say hi.", "Greet me.", "Hello?", "Start."].map((q) =>
      chatSample(model.tokenizer, chat(q, "Hello from Fulgur.")),
    );
    const val = [chatSample(model.tokenizer, chat("Welcome me.", "Hello from Fulgur."))];
    const steps: number[] = [];
    const result = await fitSft(model, train, {
      steps: 60,
      batchSize: 4,
      lr: 2e-2,
      lora: { rank: 4, alpha: 8, seed: 1 },
      val,
      valEvery: 30,
      seed: 3,
      onStep: (m) => steps.push(m.step),
    });
    expect(steps).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(result.validation.map((v) => v.step)).toEqual([0, 30, 60]);
    const first = result.history[0].loss;
    const last = result.history[result.history.length - 1].loss;
    expect(last).toBeLessThan(first * 0.2);
    expect(result.validation[2].loss).toBeLessThan(result.validation[0].loss * 0.5);
    expect(result.parameters).toBe(model.adapter!.parameters().reduce((n, p) => n + p.tensor.size, 0));
    // The adapter now writes the reply greedily.
    const prompt = model.tokenizer.encodeChat([{ role: "user", content: "Say hi." }], { addGenerationPrompt: true });
    const out = await model.generateOne(prompt, { temperature: 0, maxTokens: 12 });
    expect(model.tokenizer.decode(out.tokens, { skipSpecialTokens: true })).toBe("Hello from Fulgur.");
  }, 240_000);

  it("rejects bad options with clear errors", async () => {
    const s = [chatSample(model.tokenizer, chat("a", "b"))];
    await expect(fitSft(model, s, { steps: 0, lora: "full" })).rejects.toThrow(/steps must be a positive integer/);
    await expect(fitSft(model, [], { steps: 1, lora: "full" })).rejects.toThrow(/at least one sample/);
    await expect(fitSft(model, s, { steps: 1, lora: "full", lr: 0 })).rejects.toThrow(/lr must be > 0/);
  });
});

it("full-weight SFT, saved with saveFullWeights, reloads to the same logits", async () => {
  const model = await loadModel(join(dir, "base"), { gpu: gpu(), maxSlots: 2, maxSeqLen: 64 });
  const out = join(dir, "full");
  try {
    const samples = [chatSample(model.tokenizer, chat("Count.", "One two three."))];
    await fitSft(model, samples, { steps: 5, batchSize: 1, lr: 1e-2, lora: "full" });
    await writeTinyModel(out, { ...SPEC, seed: 1234 });
    await saveFullWeights(model.transformer, out);
    const reloaded = await loadModel(out, { gpu: gpu(), maxSlots: 2, maxSeqLen: 64 });
    try {
      const a = await model.logits(samples[0].tokens);
      const b = await reloaded.logits(samples[0].tokens);
      let diff = 0;
      for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
      expect(diff).toBeLessThan(1e-5);
      const base = await loadModel(join(dir, "base"), { gpu: gpu(), maxSlots: 2, maxSeqLen: 64 });
      const c = await base.logits(samples[0].tokens);
      base.dispose();
      let moved = 0;
      for (let i = 0; i < a.length; i++) moved = Math.max(moved, Math.abs(a[i] - c[i]));
      expect(moved).toBeGreaterThan(1e-3);
    } finally {
      reloaded.dispose();
    }
  } finally {
    model.dispose();
  }
}, 120_000);
