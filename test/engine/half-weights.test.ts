// Frozen base weights in f16 from a bf16 checkpoint (the default load on an adapter with
// shader-f16): the conversion is exact wherever f16 can hold the value, the logits stay within
// f32-rounding of the f64 reference, and a tensor with values beyond f16's range stays f32.
//
// Why the tolerance is tight: bf16 keeps 8 significant bits, f16 keeps 11, so every bf16 value in
// f16's normal range [2^-14, 65504] is exactly an f16 value. Only magnitudes below 2^-14 (f16
// subnormals, spacing 2^-24) round, by at most 2^-25 each, and magnitudes above 65504 would
// overflow (those tensors are kept in f32). The matmuls accumulate in f32 either way, so the
// f16-loaded model computes the bf16 checkpoint's function to the same f32 rounding as an f32 load.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { f16ToF32, f32ToF16 } from "../../src/gpu/tensor.ts";
import { loadCheckpoint } from "../../src/model/loader.ts";
import { loadModel } from "../../src/model/model.ts";
import { type TensorToWrite, writeSafetensors } from "../../src/model/safetensors-write.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { denseVocabMatrix, denseWeight, F16_MAX } from "../../src/model/weights.ts";
import { relErr } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { rng } from "../helpers/random.ts";
import { loadReferenceModel, referenceForward } from "../reference/transformer.ts";

const gpu = useGpu();
const root = mkdtempSync(join(tmpdir(), "fulgur-half-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const spec = {
  architecture: "Qwen3ForCausalLM" as const,
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  intermediate: 96,
  tie: false,
  lmHeadStd: 0.3,
  perturbNorms: true,
  dtype: "BF16" as const,
  seed: 31,
};

describe("bf16 checkpoint, f16 frozen weights", () => {
  it("f32ToF16 is exact on every bf16 value in f16's normal range, and rounds subnormals by ≤ 2^-25", () => {
    // All 2^16 bf16 bit patterns: the claim the tolerance below rests on.
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let bits = 0; bits < 1 << 16; bits++) {
      u[0] = bits << 16;
      const v = f[0];
      if (!Number.isFinite(v)) continue;
      const back = f16ToF32(f32ToF16(v));
      const a = Math.abs(v);
      if (a >= 2 ** -14 && a <= F16_MAX) expect(back).toBe(v);
      else if (a < 2 ** -14) expect(Math.abs(back - v)).toBeLessThanOrEqual(2 ** -25);
      else expect(Math.abs(back)).toBe(Number.POSITIVE_INFINITY);
    }
  });

  it("loads linear weights as f16 by default and matches the f64 reference as closely as an f32 load", async () => {
    const g = gpu();
    const dir = join(root, "bf16");
    await writeTinyModel(dir, spec);
    const ck = await loadCheckpoint(dir);
    expect(ck.info("model.layers.0.self_attn.q_proj.weight").dtype).toBe("BF16");
    const ref = await loadReferenceModel(ck);
    await ck.close();
    const auto = await loadModel(dir, { gpu: g });
    const full = await loadModel(dir, { gpu: g, dtype: "f32" });
    try {
      const q = denseWeight(auto.transformer.weights.layers[0].proj.q_proj, "test");
      expect(q.dtype).toBe(g.features.shaderF16 ? "f16" : "f32");
      expect(denseVocabMatrix(auto.transformer.weights.lmHead, "lm_head", "test").dtype).toBe(q.dtype);
      expect(denseVocabMatrix(auto.transformer.weights.embed, "embed", "test").dtype).toBe(q.dtype);
      expect(denseWeight(full.transformer.weights.layers[0].proj.q_proj, "test").dtype).toBe("f32");
      expect(auto.transformer.weights.keptF32).toEqual([]);
      // Exactness on the device: what the GPU holds is the checkpoint's value wherever
      // |w| ≥ 2^-14 (f16 normal), within 2^-25 below it.
      const onGpu = await denseWeight(auto.transformer.weights.layers[1].proj.down_proj, "test").read();
      const stored = ref.weights.get("model.layers.1.mlp.down_proj.weight")!;
      let inexact = 0;
      for (let i = 0; i < stored.length; i++) {
        if (Math.abs(stored[i]) >= 2 ** -14) expect(onGpu[i]).toBe(stored[i]);
        else {
          expect(Math.abs(onGpu[i] - stored[i])).toBeLessThanOrEqual(2 ** -25);
          if (onGpu[i] !== stored[i]) inexact++;
        }
      }
      // N(0, 0.02) puts ~0.2% of weights below 2^-14; the test sees some of them.
      if (q.dtype === "f16") expect(inexact).toBeGreaterThan(0);

      const r = rng(2);
      const tokens = Array.from({ length: 20 }, () => Math.floor(r() * auto.config.vocabSize));
      const want = referenceForward(ref, tokens);
      const half = await auto.logits(tokens);
      const single = await full.logits(tokens);
      // The f32 load's error is f32 accumulation over ≤ 96-term sums (measured 3.4e-7 relative);
      // the f16 load adds only the subnormal roundings (≤ 2^-25 on ~0.2% of weights; measured
      // 3.6e-7). 1e-5 relative bounds both with margin, while storing the weights with one bit
      // less than bf16 (2^-9 relative) would already move logits by ~1e-3.
      expect(relErr(single, want)).toBeLessThan(1e-5);
      expect(relErr(half, want)).toBeLessThan(1e-5);
      // Decoding through the KV cache with f16 weights agrees too.
      const [gen] = await auto.generate([tokens.slice(0, 8)], { temperature: 0, maxTokens: 4, ignoreEos: true });
      const seq = [...tokens.slice(0, 8), ...gen.tokens];
      const seqLogits = referenceForward(ref, seq);
      const V = auto.config.vocabSize;
      for (let i = 0; i < gen.tokens.length; i++) {
        const row = seqLogits.subarray((7 + i) * V, (8 + i) * V);
        let m = Number.NEGATIVE_INFINITY;
        for (const x of row) m = Math.max(m, x);
        let z = 0;
        for (const x of row) z += Math.exp(x - m);
        expect(Math.abs(gen.logprobs[i] - (row[gen.tokens[i]] - m - Math.log(z)))).toBeLessThan(1e-3);
      }
    } finally {
      auto.dispose();
      full.dispose();
    }
  });

  it("stores a tied embedding (and so the LM head) in f16 and still matches the f64 reference", async () => {
    const g = gpu();
    const dir = join(root, "bf16-tied");
    await writeTinyModel(dir, { ...spec, tie: true, seed: 32 });
    const ck = await loadCheckpoint(dir);
    const ref = await loadReferenceModel(ck);
    await ck.close();
    const auto = await loadModel(dir, { gpu: g });
    try {
      const w = auto.transformer.weights;
      expect(w.lmHead).toBe(w.embed);
      expect(denseVocabMatrix(w.embed, "embed", "test").dtype).toBe(g.features.shaderF16 ? "f16" : "f32");
      const r = rng(3);
      const tokens = Array.from({ length: 20 }, () => Math.floor(r() * auto.config.vocabSize));
      // The embedding gather and the head GEMV/GEMM both read the f16 table exactly (bf16 values).
      expect(relErr(await auto.logits(tokens), referenceForward(ref, tokens))).toBeLessThan(1e-5);
      const [gen] = await auto.generate([tokens.slice(0, 8)], { temperature: 0, maxTokens: 4, ignoreEos: true });
      const seq = [...tokens.slice(0, 8), ...gen.tokens];
      const V = auto.config.vocabSize;
      const want = referenceForward(ref, seq).subarray(7 * V, 8 * V);
      let [best, bestAt] = [Number.NEGATIVE_INFINITY, -1];
      want.forEach((x, i) => {
        if (x > best) [best, bestAt] = [x, i];
      });
      expect(gen.tokens[0]).toBe(bestAt);
    } finally {
      auto.dispose();
    }
  });

  it("keeps a tensor with values beyond f16's range in f32, warns, and stays exact", async () => {
    const g = gpu();
    if (!g.features.shaderF16) return;
    const dir = join(root, "overflow");
    await writeTinyModel(dir, spec);
    const big = "model.layers.0.mlp.up_proj.weight";
    // Rewrite the checkpoint (still BF16) with one weight far past 65504.
    const ck = await loadCheckpoint(dir);
    const tensors: Record<string, TensorToWrite> = {};
    for await (const [name, shape, data] of ck.tensors()) {
      if (name === big) data[5] = 1.5e5;
      tensors[name] = { dtype: "BF16", shape, data };
    }
    await ck.close();
    await writeSafetensors(join(dir, "model.safetensors"), tensors);

    const warnings: string[] = [];
    const model = await loadModel(dir, { gpu: g, onWarning: (m) => warnings.push(m) });
    try {
      const w = model.transformer.weights;
      expect(w.keptF32).toEqual([big]);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/up_proj\.weight holds values beyond f16's ±65504 .*keeping it in f32/);
      expect(denseWeight(w.layers[0].proj.up_proj, "test").dtype).toBe("f32");
      expect(denseWeight(w.layers[0].proj.gate_proj, "test").dtype).toBe("f16");
      const ck2 = await loadCheckpoint(dir);
      const ref = await loadReferenceModel(ck2);
      await ck2.close();
      expect(ref.weights.get(big)![5]).toBe(149504); // 1.5e5 rounded to bf16's 8 bits
      const tokens = [3, 1, 4, 1, 5, 9, 2, 6];
      const got = await model.logits(tokens);
      expect(got.every(Number.isFinite)).toBe(true);
      expect(relErr(got, referenceForward(ref, tokens))).toBeLessThan(1e-5);
    } finally {
      model.dispose();
    }
    // Forcing f16 is still refused nowhere silently: the same policy applies.
    const forced = await loadModel(dir, { gpu: g, dtype: "f16", onWarning: () => {} });
    expect(forced.transformer.weights.keptF32).toEqual([big]);
    forced.dispose();
  });

  it("full-weight training refuses f16 weights and names the fix", async () => {
    const g = gpu();
    if (!g.features.shaderF16) return;
    const dir = join(root, "bf16");
    const model = await loadModel(dir, { gpu: g });
    const { Optimizer } = await import("../../src/trainer/optimizer.ts");
    try {
      expect(() => Optimizer.forAllWeights(model.transformer, { lr: 1e-3 })).toThrow(/load the model with dtype "f32"/);
    } finally {
      model.dispose();
    }
  });
});
