// Random-init models at real shapes: the real config's dimensions survive, the files are
// deterministic in the seed, the loader reads back exactly what randomTensor generates, and the
// GPU model's logits are finite with sane spread.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { f16ToF32, f32ToF16 } from "../../src/gpu/tensor.ts";
import { CHATML_ADDED_TOKENS, trainByteLevelBpe } from "../../src/model/bpe.ts";
import { loadCheckpoint } from "../../src/model/loader.ts";
import { loadModel } from "../../src/model/model.ts";
import { randomTensor, writeRandomModel } from "../../src/model/random-init.ts";
import { TINY_CORPUS } from "../../src/model/tiny-corpus.ts";
import { loadReferenceModel, referenceForward } from "../reference/transformer.ts";

const root = mkdtempSync(join(tmpdir(), "fulgur-random-init-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
// Trained once: BPE training dominates a small model's write time.
const tokenizer = trainByteLevelBpe(TINY_CORPUS, { vocabSize: 512, specialTokens: CHATML_ADDED_TOKENS });
const fixture = (name: string) =>
  JSON.parse(readFileSync(join(import.meta.dirname, "..", "fixtures", "configs", name), "utf8"));

describe("writeRandomModel", () => {
  it("keeps the real config's shapes, is deterministic in the seed, and loads back exactly", async () => {
    const real = fixture("qwen2.5-0.5b-instruct.json");
    const a = await writeRandomModel(join(root, "a"), real, {
      seed: 7,
      layers: 1,
      vocabSize: 1000,
      dtype: "F32",
      tokenizer,
    });
    const same = { layers: 1, vocabSize: 1000, dtype: "F32", tokenizer } as const;
    await writeRandomModel(join(root, "b"), real, { ...same, seed: 7 });
    await writeRandomModel(join(root, "c"), real, { ...same, seed: 8 });
    expect(a.config).toMatchObject({ hiddenSize: 896, intermediateSize: 4864, numHeads: 14, numKvHeads: 2 });
    expect(a.config).toMatchObject({ numLayers: 1, vocabSize: 1000, ropeTheta: 1e6, tieWordEmbeddings: true });
    const bytes = (m: string) => readFileSync(join(root, m, "model.safetensors"));
    expect(bytes("a").equals(bytes("b"))).toBe(true);
    expect(bytes("a").equals(bytes("c"))).toBe(false);
    expect(a.weightBytes).toBe(a.parameters * 4);

    const ck = await loadCheckpoint(a.dir);
    try {
      const name = "model.layers.0.mlp.down_proj.weight";
      const data = await ck.get(name);
      expect(data).toEqual(randomTensor(name, [896, 4864], 7, 0.02));
      let sum = 0;
      let sq = 0;
      for (const v of data) {
        sum += v;
        sq += v * v;
      }
      expect(Math.abs(sum / data.length)).toBeLessThan(1e-3);
      expect(Math.sqrt(sq / data.length)).toBeCloseTo(0.02, 3);
      expect(Array.from(await ck.get("model.layers.0.input_layernorm.weight")).every((v) => v === 1)).toBe(true);
      expect(Array.from(await ck.get("model.layers.0.self_attn.q_proj.bias")).every((v) => v === 0)).toBe(true);
    } finally {
      await ck.close();
    }
  }, 600_000);

  it("writes F16 weights the loader widens to the rounded values", async () => {
    const real = fixture("llama-3.2-1b-instruct.json");
    const m = await writeRandomModel(join(root, "llama16"), real, { seed: 3, layers: 1, vocabSize: 700, tokenizer });
    expect(m.config).toMatchObject({ architecture: "LlamaForCausalLM", hiddenSize: 2048, numKvHeads: 8, headDim: 64 });
    expect(m.config.ropeScaling?.type).toBe("llama3");
    const ck = await loadCheckpoint(m.dir);
    try {
      const name = "model.layers.0.self_attn.k_proj.weight";
      const expected = randomTensor(name, [512, 2048], 3, 0.02).map((v) => f16ToF32(f32ToF16(v)));
      expect(await ck.get(name)).toEqual(expected);
    } finally {
      await ck.close();
    }
  }, 600_000);

  it("gives finite, non-degenerate logits on the GPU", async () => {
    const real = fixture("qwen2.5-0.5b-instruct.json");
    const m = await writeRandomModel(join(root, "gpu"), real, { seed: 1, layers: 2, vocabSize: 600, tokenizer });
    const model = await loadModel(m.dir, { maxSlots: 1, maxSeqLen: 64 });
    try {
      const logits = await model.logits([1, 50, 200, 7, 129]);
      expect(logits.length).toBe(5 * 600);
      expect(logits.every(Number.isFinite)).toBe(true);
      const row = logits.subarray(4 * 600, 5 * 600);
      const spread = Math.max(...row) - Math.min(...row);
      expect(spread).toBeGreaterThan(1e-3);
      expect(spread).toBeLessThan(100);
    } finally {
      model.dispose();
    }
  }, 600_000);

  it("Gemma 3 1B's real shapes (head_dim 256, 4:1 GQA, f16 weights) match the f64 reference, windowed", async () => {
    // Two layers of gemma-3-1b-it, one local (window 4, shorter than the 7 tokens) and one global.
    const real = { ...fixture("gemma-3-1b-it.json"), sliding_window: 4, sliding_window_pattern: 2 };
    const m = await writeRandomModel(join(root, "gemma"), real, { seed: 2, layers: 2, vocabSize: 600, tokenizer });
    expect(m.config.headDim).toBe(256);
    expect(m.config.gemma3?.slidingLayers).toEqual([true, false]);
    const model = await loadModel(m.dir, { maxSlots: 1, maxSeqLen: 64 });
    try {
      const tokens = [1, 50, 200, 7, 129, 3, 77];
      const got = await model.logits(tokens);
      const ck = await loadCheckpoint(m.dir);
      const want = referenceForward(await loadReferenceModel(ck), tokens);
      await ck.close();
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < want.length; i++) {
        worst = Math.max(worst, Math.abs(got[i] - want[i]));
        scale = Math.max(scale, Math.abs(want[i]));
      }
      expect(scale).toBeGreaterThan(1e-3);
      // f32 sums over 6912-long rows against f64: ~1e-6 relative; 1e-3 leaves room.
      expect(worst / scale).toBeLessThan(1e-3);
    } finally {
      model.dispose();
    }
  }, 1_200_000);
});
