// The embedding and LM head stored int8 (`quantizeHead`): the model computes exactly the f64
// reference with those widened values in place (tied and untied heads), serving's logits (gemv_q,
// rows in launches of 8) and training's logprobs (vocabulary blocks widened one at a time) read
// the same values, greedy decode follows the reference, a LoRA update runs on it, full training
// refuses it, and the resident weights shrink.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { quantizeInt8Rows } from "../../src/gpu/kernels/quant.ts";
import { Scope } from "../../src/gpu/scope.ts";
import { packSequences, uploadBatch } from "../../src/model/batch.ts";
import { headLogprobs } from "../../src/model/head.ts";
import { loadCheckpoint } from "../../src/model/loader.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { policyGradients } from "../../src/trainer/grads.ts";
import { Optimizer } from "../../src/trainer/optimizer.ts";
import { relErr } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { rng } from "../helpers/random.ts";
import { refDequantInt8 } from "../reference/quant.ts";
import { loadReferenceModel, type ReferenceModel, referenceForward } from "../reference/transformer.ts";

const gpu = useGpu();
const smallBindings = useGpu({ maxBindingSize: 64 * 1024 });
const noSubgroups = useGpu({ disableFeatures: ["subgroups"] });
const root = mkdtempSync(join(tmpdir(), "fulgur-qhead-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const spec = {
  architecture: "Qwen3ForCausalLM" as const,
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  intermediate: 96,
  lmHeadStd: 0.3,
  perturbNorms: true,
  seed: 41,
};

/** The reference model with the embedding and head replaced by their int8 widening. */
async function int8Reference(dir: string): Promise<ReferenceModel> {
  const ck = await loadCheckpoint(dir);
  const ref = await loadReferenceModel(ck);
  await ck.close();
  const { vocabSize: vocab, hiddenSize: dim } = ref.config;
  for (const name of ["model.embed_tokens.weight", "lm_head.weight"]) {
    const w = ref.weights.get(name);
    if (!w) continue;
    const { packed, scales } = quantizeInt8Rows(w, vocab, dim);
    ref.weights.set(name, refDequantInt8(packed, scales, vocab, dim));
  }
  return ref;
}

/** Training's logprobs of `tokens[1..]` (the LM head by widened vocabulary blocks). */
async function trainingLogprobs(m: Model, tokens: number[]): Promise<Float32Array> {
  const scope = new Scope();
  const batch = uploadBatch(m.gpu, packSequences([tokens], m.config.vocabSize), scope);
  const fwd = m.transformer.forward(batch);
  const targets = scope.track(m.gpu.tensor([tokens.length], "u32", [...tokens.slice(1), 0]));
  const lp = await headLogprobs(m.transformer, fwd.normed, targets, 1, scope).logprobs.read();
  fwd.scope.dispose();
  scope.dispose();
  return lp.subarray(0, tokens.length - 1);
}

/** log softmax(row)[token] in f64. */
function logSoftmaxAt(row: ArrayLike<number>, token: number): number {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i]);
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] - m);
  return row[token] - m - Math.log(s);
}

describe("quantizeHead: int8 embedding and LM head", () => {
  for (const tie of [true, false]) {
    it(`computes the reference with the widened head, serving and training alike (tied: ${tie})`, async () => {
      const g = gpu();
      const dir = join(root, `tie-${tie}`);
      await writeTinyModel(dir, { ...spec, tie });
      const ref = await int8Reference(dir);
      const model = await loadModel(dir, { gpu: g, quantizeHead: true, dtype: "f32", maxSlots: 2, maxSeqLen: 64 });
      try {
        const w = model.transformer.weights;
        expect("kind" in w.embed && w.embed.kind).toBe("int8-rows");
        expect("kind" in w.lmHead && w.lmHead.kind).toBe("int8-rows");
        expect(w.lmHead === w.embed).toBe(tie);
        const r = rng(tie ? 5 : 6);
        const V = model.config.vocabSize;
        const tokens = Array.from({ length: 21 }, () => Math.floor(r() * V));
        // 21 rows: serving's logits run as launches of 8, 8 and 5 rows.
        const want = referenceForward(ref, tokens);
        expect(relErr(await model.logits(tokens), want)).toBeLessThan(1e-5);
        const lp = await trainingLogprobs(model, tokens);
        for (let t = 0; t + 1 < tokens.length; t++) {
          expect(Math.abs(lp[t] - logSoftmaxAt(want.subarray(t * V, (t + 1) * V), tokens[t + 1]))).toBeLessThan(1e-4);
        }
        // Greedy decode (the engine's GEMV path through the packed head) follows the reference,
        // and the logprobs it reports are training's for the same tokens.
        const prompt = tokens.slice(0, 6);
        const [gen] = await model.generate([prompt], { temperature: 0, maxTokens: 4, ignoreEos: true });
        const seq = [...prompt, ...gen.tokens];
        const full = referenceForward(ref, seq);
        const seqLp = await trainingLogprobs(model, seq);
        gen.tokens.forEach((tok, i) => {
          const row = full.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
          let best = 0;
          for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
          expect(tok).toBe(best);
          expect(Math.abs(gen.logprobs[i] - seqLp[prompt.length - 1 + i])).toBeLessThan(1e-4);
        });
      } finally {
        model.dispose();
      }
    });
  }

  it("shards a head wider than one binding by rows and still computes the reference", async () => {
    const g = smallBindings();
    const dir = join(root, "wide");
    // 1,100 × 64 int8 bytes = 70 KB > 64 KiB: two row shards (1,024 + 76).
    await writeTinyModel(dir, { ...spec, tie: true, vocabSize: 1100 });
    const ref = await int8Reference(dir);
    const model = await loadModel(dir, { gpu: g, dtype: "f32", quantizeHead: true, maxSlots: 1, maxSeqLen: 64 });
    try {
      const head = model.transformer.weights.lmHead;
      expect("kind" in head && head.shards.map((s) => [s.rowStart, s.m.rows])).toEqual([
        [0, 1024],
        [1024, 76],
      ]);
      const V = model.config.vocabSize;
      // Ids on both sides of the shard boundary.
      const tokens = [3, 1023, 1024, 1099, 500, 1050, 7, 1030, 2, 1098, 1000];
      const want = referenceForward(ref, tokens);
      expect(relErr(await model.logits(tokens), want)).toBeLessThan(1e-5);
      const lp = await trainingLogprobs(model, tokens);
      for (let t = 0; t + 1 < tokens.length; t++) {
        expect(Math.abs(lp[t] - logSoftmaxAt(want.subarray(t * V, (t + 1) * V), tokens[t + 1]))).toBeLessThan(1e-4);
      }
    } finally {
      model.dispose();
    }
  });

  it("keeps the head dense, with a warning, on an adapter without subgroups", async () => {
    const g = noSubgroups();
    const dir = join(root, "nosg");
    await writeTinyModel(dir, { ...spec, tie: true });
    const warnings: string[] = [];
    const model = await loadModel(dir, {
      gpu: g,
      quantizeHead: true,
      onWarning: (m) => warnings.push(m),
      maxSlots: 1,
      maxSeqLen: 64,
    });
    try {
      expect("kind" in model.transformer.weights.embed).toBe(false);
      expect(warnings.join("\n")).toMatch(/quantizeHead: .*subgroups.*keeping the embedding and LM head dense/);
      const [gen] = await model.generate([[1, 2, 3]], { temperature: 0, maxTokens: 2, ignoreEos: true });
      expect(gen.tokens.length).toBe(2);
    } finally {
      model.dispose();
    }
  });

  it("trains a LoRA adapter over it, refuses full training, and holds a quarter of the f32 head", async () => {
    const g = gpu();
    const dir = join(root, "train");
    await writeTinyModel(dir, { ...spec, tie: true });
    const b0 = g.pool.stats().liveBytes;
    const dense = await loadModel(dir, { gpu: g, dtype: "f32", maxSlots: 1, maxSeqLen: 64 });
    const b1 = g.pool.stats().liveBytes;
    const model = await loadModel(dir, { gpu: g, dtype: "f32", quantizeHead: true, maxSlots: 1, maxSeqLen: 64 });
    const b2 = g.pool.stats().liveBytes;
    try {
      const { vocabSize: V, hiddenSize: D } = model.config;
      // The tied head was V·D·4 bytes; int8 keeps V·D + 4·V. Everything else is the same size.
      expect(b1 - b0 - (b2 - b1)).toBe(V * D * 4 - (V * D + 4 * V));
      expect(() => Optimizer.forAllWeights(model.transformer, { lr: 1e-3 })).toThrow(/int8-quantised \(frozen\)/);
      const lora = model.createAdapter({ rank: 4, alpha: 8, seed: 2 });
      const optimizer = Optimizer.forLora(lora, { lr: 1e-3 });
      const ppo = { temperature: 1, clipLow: 0.2, clipHigh: 0.28 };
      const r = rng(9);
      const samples = [1, -1].map((advantage) => {
        const tokens = Array.from({ length: 12 }, () => Math.floor(r() * V));
        const lossMask = tokens.map((_, t) => (t >= 6 ? 1 : 0));
        return { tokens, lossMask, advantage, oldLogprobs: lossMask.map((m) => -m * Math.log(V)) };
      });
      const result = await policyGradients(model.transformer, samples, ppo, optimizer.sink);
      expect(Number.isFinite(result.loss)).toBe(true);
      const step = await optimizer.apply();
      expect(step.skipped).toBe(false);
      expect(step.gradNorm).toBeGreaterThan(0);
    } finally {
      model.dispose();
      dense.dispose();
    }
  });
});
