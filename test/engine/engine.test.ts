// The transformer engine end to end on the real device: a random tiny Qwen2-shaped checkpoint
// written in HF format, loaded from disk, checked against the plain-TypeScript reference.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCheckpoint } from "../../src/model/loader.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { readPeftAdapter } from "../../src/model/peft.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { relErr } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { referenceLogits } from "../reference/transformer.ts";

const gpu = useGpu();
let dir: string;
let model: Model;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-engine-"));
  await writeTinyModel(dir, {
    hidden: 64,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    intermediate: 96,
    seed: 11,
    perturbNorms: true,
  });
  model = await loadModel(dir, { gpu: gpu(), maxSlots: 4, maxSeqLen: 128 });
});

afterAll(() => {
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

// Logits are O(1); a relErr of 1e-3 covers f32 sums over 64–96 terms.
describe("engine", () => {
  it("logits match the reference transformer", async () => {
    const tokens = model.tokenizer.encode("The quick brown fox jumps over the lazy dog 12 + 30 = 42");
    const got = await model.logits(tokens);
    const checkpoint = await loadCheckpoint(dir);
    const want = await referenceLogits(checkpoint, tokens);
    await checkpoint.close();
    expect(got.length).toBe(tokens.length * model.config.vocabSize);
    expect(relErr(got, want)).toBeLessThan(1e-3);
  });

  it("a LoRA adapter changes logits exactly as the reference says, and saves to PEFT", async () => {
    const lora = model.createAdapter({ rank: 4, alpha: 8, seed: 3 });
    // B starts at zero; give it values so the adapter matters.
    for (const { name, tensor } of lora.parameters()) {
      if (name.includes("lora_B")) tensor.write(Array.from({ length: tensor.size }, (_, i) => Math.sin(i) * 0.05));
    }
    const tokens = model.tokenizer.encode("adapters move between frameworks");
    const withAdapter = await model.logits(tokens);
    const without = await model.logits(tokens, { adapter: false });
    const adapterDir = join(dir, "adapter");
    await model.saveAdapter(adapterDir);
    const peft = await readPeftAdapter(adapterDir, model.config);
    const checkpoint = await loadCheckpoint(dir);
    expect(relErr(withAdapter, await referenceLogits(checkpoint, tokens, peft))).toBeLessThan(1e-3);
    expect(relErr(without, await referenceLogits(checkpoint, tokens))).toBeLessThan(1e-3);
    await checkpoint.close();
    expect(relErr(withAdapter, without)).toBeGreaterThan(1e-3);
    // Loading it back is bit-exact.
    const saved = await lora.toPeft();
    await model.loadAdapter(adapterDir);
    const again = await model.adapter!.toPeft();
    for (const [k, t] of saved.tensors) expect(Array.from(again.tensors.get(k)!.data)).toEqual(Array.from(t.data));
    model.removeAdapter();
  });

  it("greedy generation equals the argmax of logits, and KV-cache decode equals recomputation", async () => {
    const prompt = model.tokenizer.encode("count: 1 2 3");
    const [g] = await model.generate([prompt], { temperature: 0, maxTokens: 12, ignoreEos: true });
    expect(g.tokens.length).toBe(12);
    const full = [...prompt, ...g.tokens];
    const logits = await model.logits(full);
    const V = model.config.vocabSize;
    for (let i = 0; i < g.tokens.length; i++) {
      const row = logits.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
      let best = 0;
      for (let j = 1; j < V; j++) if (row[j] > row[best]) best = j;
      expect(g.tokens[i], `token ${i}`).toBe(best);
      // logprob under T=1 of the chosen token, recomputed from full logits
      let m = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < V; j++) m = Math.max(m, row[j]);
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp(row[j] - m);
      expect(g.logprobs[i]).toBeCloseTo(row[best] - m - Math.log(s), 3);
    }
  });

  it("batched generation equals unbatched, and a seed makes sampling reproducible", async () => {
    const prompts = ["alpha", "beta gamma delta", "x"].map((t) => model.tokenizer.encode(t));
    const params = { temperature: 0.9, topP: 0.95, maxTokens: 10, seed: 42, ignoreEos: true };
    const batched = await model.generate(prompts, params);
    for (let i = 0; i < prompts.length; i++) {
      const [alone] = await model.generate([prompts[i]], params);
      expect(alone.tokens).toEqual(batched[i].tokens);
      for (let j = 0; j < alone.logprobs.length; j++) expect(alone.logprobs[j]).toBeCloseTo(batched[i].logprobs[j], 4);
    }
    const [other] = await model.generate([prompts[1]], { ...params, seed: 7 });
    expect(other.tokens).not.toEqual(batched[1].tokens);
  });

  it("chunks long prompts over several steps without changing the result", async () => {
    const small = await loadModel(dir, { gpu: gpu(), maxSlots: 4, maxSeqLen: 128, maxStepTokens: 8 });
    const prompt = model.tokenizer.encode("a prompt long enough to need several prefill chunks of eight tokens");
    expect(prompt.length).toBeGreaterThan(16);
    const [chunked] = await small.generate([prompt], { temperature: 0, maxTokens: 6, ignoreEos: true });
    const [whole] = await model.generate([prompt], { temperature: 0, maxTokens: 6, ignoreEos: true });
    expect(small.engine.scheduler.stats.steps).toBeGreaterThan(Math.ceil(prompt.length / 8));
    small.dispose();
    expect(chunked.tokens).toEqual(whole.tokens);
    for (let i = 0; i < 6; i++) expect(chunked.logprobs[i]).toBeCloseTo(whole.logprobs[i], 4);
  });

  it("chunks LM-head logprobs when a batch's logits exceed one binding", async () => {
    const { acquireGpu } = await import("../../src/gpu/device.ts");
    const { Scope } = await import("../../src/gpu/scope.ts");
    const { headLogprobs } = await import("../../src/model/head.ts");
    const { packSequences, uploadBatch } = await import("../../src/model/batch.ts");
    const small = await acquireGpu({ maxBindingSize: 64 * 1024 });
    try {
      const tight = await loadModel(dir, { gpu: small });
      const tokens = model.tokenizer.encode(
        "enough tokens to need more than one chunk of LM-head rows, really quite a few more",
      );
      const targets = [...tokens.slice(1), 0];
      const run = async (m: Model) => {
        const scope = new Scope();
        const batch = uploadBatch(m.gpu, packSequences([tokens], m.config.vocabSize), scope);
        const fwd = m.transformer.forward(batch);
        const t = scope.track(m.gpu.tensor([targets.length], "u32", targets));
        const lp = await headLogprobs(m.transformer, fwd.normed, t, 0.8, scope).logprobs.read();
        fwd.scope.dispose();
        scope.dispose();
        return lp;
      };
      const V = model.config.vocabSize;
      expect(tokens.length * V * 4).toBeGreaterThan(64 * 1024); // the small device must chunk
      expect(relErr(await run(tight), await run(model))).toBeLessThan(1e-5);
      tight.dispose();
    } finally {
      small.destroy();
    }
  });

  it("loads linear weights as f16 (f32 accumulation) and stays close to f32", async () => {
    if (!gpu().features.shaderF16) return;
    const half = await loadModel(dir, { gpu: gpu(), dtype: "f16" });
    const tokens = model.tokenizer.encode("half precision weights");
    const a = await half.logits(tokens);
    const b = await model.logits(tokens);
    half.dispose();
    // f16 rounds each weight by ≤ 2^-11 relative; over 64–96-term dot products of O(0.02)
    // weights that moves O(1) logits by well under 1%.
    expect(relErr(a, b)).toBeLessThan(1e-2);
    expect(relErr(a, b)).toBeGreaterThan(0);
  });

  it("more requests than slots queue and all finish; bad requests are rejected clearly", async () => {
    const prompts = Array.from({ length: 9 }, (_, i) => model.tokenizer.encode(`request ${i}`));
    const out = await model.generate(prompts, { temperature: 0, maxTokens: 5, ignoreEos: true });
    expect(out.map((g) => g.tokens.length)).toEqual(Array(9).fill(5));
    expect(out.every((g) => g.finishReason === "length")).toBe(true);
    await expect(model.generate([[]])).rejects.toThrow(/prompt is empty/);
    await expect(model.generate([Array(200).fill(1)])).rejects.toThrow(/at most 128 tokens/);
    await expect(model.generate([[1, 2]], { topP: 0 })).rejects.toThrow(/top_p/);
  });
});
