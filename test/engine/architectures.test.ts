// Every architecture the engine runs, on a random tiny instance written in HF format, against the
// plain-TypeScript f64 reference transformer: training-forward logprobs, LoRA gradients (central
// finite differences of the reference), and cached decoding through the serving engine. Shapes
// are chosen to exercise each architecture's differences: Qwen3's q/k norms with a head_dim that
// is not hidden/heads, Llama 3's rescaled RoPE with an untied head and biases, Mistral's window
// shorter than the sequences, and Gemma 3's (1 + w) sandwich norms, GeGLU, scaled embeddings,
// query_pre_attn_scalar, and local (windowed, own RoPE base) layers next to a global one with
// linear RoPE scaling.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { loadCheckpoint } from "../../src/model/loader.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import type { PeftAdapter } from "../../src/model/peft.ts";
import { saveFullWeights } from "../../src/model/save-weights.ts";
import { type TinyModelSpec, writeTinyModel } from "../../src/model/tiny.ts";
import { policyGradients } from "../../src/trainer/grads.ts";
import { lossAndGrads } from "../../src/trainer/loss-and-grads.ts";
import { Optimizer } from "../../src/trainer/optimizer.ts";
import { useGpu } from "../helpers/gpu.ts";
import { rng } from "../helpers/random.ts";
import { loadReferenceModel, type ReferenceModel, referenceForward } from "../reference/transformer.ts";

const gpu = useGpu();
const root = mkdtempSync(join(tmpdir(), "fulgur-arch-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const small = { hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 40, perturbNorms: true, lmHeadStd: 0.3 };
const CASES: [label: string, spec: TinyModelSpec][] = [
  ["Qwen2ForCausalLM", { ...small, architecture: "Qwen2ForCausalLM", seed: 21 }],
  // head_dim 12 ≠ 32/4: q/k are 48 wide, o_proj maps 48 → 32; 6 rotated pairs (the scalar RoPE path).
  ["Qwen3ForCausalLM", { ...small, architecture: "Qwen3ForCausalLM", headDim: 12, seed: 22 }],
  [
    "LlamaForCausalLM (llama3 rope scaling, untied, biases)",
    {
      ...small,
      architecture: "LlamaForCausalLM",
      headDim: 16,
      tie: false,
      attentionBias: true,
      mlpBias: true,
      ropeTheta: 500000,
      ropeScaling: {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 16,
      },
      seed: 23,
    },
  ],
  // A window of 6 keys, shorter than every sequence below, so the masking is exercised.
  ["MistralForCausalLM", { ...small, architecture: "MistralForCausalLM", kvHeads: 1, slidingWindow: 6, seed: 24 }],
  [
    "Gemma3ForCausalLM (local window 5 + global layer, linear rope scaling)",
    {
      ...small,
      architecture: "Gemma3ForCausalLM",
      // Like gemma-3-1b: one kv head, head_dim ≠ hidden/heads, tied head; pattern 2 makes layer 0
      // local (window 5, RoPE base 1e4) and layer 1 global (base 1e6 with linear scaling 8).
      kvHeads: 1,
      headDim: 16,
      slidingWindow: 5,
      slidingWindowPattern: 2,
      ropeTheta: 1e6,
      ropeLocalTheta: 1e4,
      ropeScaling: { rope_type: "linear", factor: 8 },
      queryPreAttnScalar: 24,
      seed: 26,
    },
  ],
];

/** log-softmax of row t of logits [T × V] at `token`. */
function logprob(logits: ArrayLike<number>, V: number, t: number, token: number): number {
  let m = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < V; j++) m = Math.max(m, logits[t * V + j]);
  let z = 0;
  for (let j = 0; j < V; j++) z += Math.exp(logits[t * V + j] - m);
  return logits[t * V + token] - m - Math.log(z);
}

/** Mean NLL of the masked tokens under the reference (the PPO loss at ratio 1, advantage 1, negated). */
function referenceNll(ref: ReferenceModel, seqs: number[][], promptLen: number, lora?: PeftAdapter): number {
  const V = ref.config.vocabSize;
  let sum = 0;
  let n = 0;
  for (const tokens of seqs) {
    const logits = referenceForward(ref, tokens, lora);
    for (let t = promptLen; t < tokens.length; t++) {
      sum -= logprob(logits, V, t - 1, tokens[t]);
      n++;
    }
  }
  return sum / n;
}

for (const [label, spec] of CASES) {
  describe(label, () => {
    let model: Model;
    let ref: ReferenceModel;
    const dir = join(root, label.split(" ")[0]);

    it("loads, and its training forward gives the reference's logprobs", async () => {
      await writeTinyModel(dir, spec);
      model = await loadModel(dir, { gpu: gpu(), maxSlots: 2, maxSeqLen: 64 });
      const ck = await loadCheckpoint(dir);
      ref = await loadReferenceModel(ck);
      await ck.close();
      expect(model.config.architecture).toBe(spec.architecture);
      const V = model.config.vocabSize;
      const r = rng(1);
      const tokens = Array.from({ length: 24 }, () => Math.floor(r() * V));
      const got = await model.logits(tokens);
      const want = referenceForward(ref, tokens);
      let worst = 0;
      for (let t = 1; t < tokens.length; t++) {
        worst = Math.max(worst, Math.abs(logprob(got, V, t - 1, tokens[t]) - logprob(want, V, t - 1, tokens[t])));
      }
      // f32 sums over ≤ 48 terms against f64: logprobs of O(5) agree to ~1e-5; 1e-3 leaves room.
      expect(worst).toBeLessThan(1e-3);
      if (spec.slidingWindow) {
        // The window matters at 24 tokens: attending the whole prefix moves the logits far more
        // than the GPU's rounding, so a kernel that ignored the window would fail above.
        const unwindowed = referenceForward(
          { config: { ...ref.config, slidingWindow: 1 << 20 }, weights: ref.weights },
          tokens,
        );
        let off = 0;
        let err = 0;
        for (let i = 0; i < want.length; i++) {
          off = Math.max(off, Math.abs(unwindowed[i] - want[i]));
          err = Math.max(err, Math.abs(got[i] - want[i]));
        }
        expect(off).toBeGreaterThan(20 * err);
      }
      if (spec.ropeScaling) {
        // The rescaled frequencies matter at these positions: plain RoPE is far further off than
        // the GPU's rounding, so a kernel that ignored the scaling would fail above.
        const plain = referenceForward({ config: { ...ref.config, ropeScaling: null }, weights: ref.weights }, tokens);
        let off = 0;
        let err = 0;
        for (let i = 0; i < plain.length; i++) {
          off = Math.max(off, Math.abs(plain[i] - want[i]));
          err = Math.max(err, Math.abs(got[i] - want[i]));
        }
        expect(off).toBeGreaterThan(20 * err);
      }
    });

    it("LoRA gradients match finite differences of the reference", async () => {
      const lora = model.createAdapter({ rank: 2, alpha: 4, seed: 5 });
      const r = rng(7);
      for (const { tensor } of lora.parameters()) {
        tensor.write(Array.from({ length: tensor.size }, () => (r() - 0.5) * 0.3));
      }
      const V = model.config.vocabSize;
      const promptLen = 3;
      const seqs = [9, 6].map((n) => Array.from({ length: n }, () => Math.floor(r() * V)));
      // oldLogprobs = the current ones: every ratio is 1 and the loss is −mean over masked tokens
      // of exp(lp − old), whose gradient is −mean ∇lp = ∇(mean NLL).
      const batch = await Promise.all(
        seqs.map(async (tokens) => {
          const logits = await model.logits(tokens);
          return {
            tokens,
            lossMask: tokens.map((_, i) => (i >= promptLen ? 1 : 0)),
            advantage: 1,
            oldLogprobs: tokens.map((tok, t) => (t >= promptLen ? logprob(logits, V, t - 1, tok) : 0)),
          };
        }),
      );
      const { grads } = await lossAndGrads(model, batch, { temperature: 1, clipLow: 0.2, clipHigh: 0.2 });
      const peft = await lora.toPeft();
      let scale = 0;
      for (const g of grads.values()) for (const v of g) scale = Math.max(scale, Math.abs(v));
      expect(scale).toBeGreaterThan(0);
      const keys = [...peft.tensors.keys()].sort();
      expect([...grads.keys()].sort()).toEqual(keys);
      const eps = 1e-4;
      // Every target module of both layers, one coordinate each (q/k go through Qwen3's norms).
      for (const key of keys) {
        const t = peft.tensors.get(key)!;
        const g = grads.get(key)!;
        const i = g.indexOf(g.reduce((a, b) => (Math.abs(b) > Math.abs(a) ? b : a)));
        const wide = Float64Array.from(t.data);
        const at = (v: number) => {
          wide[i] = v;
          const tensors = new Map(peft.tensors);
          tensors.set(key, { shape: t.shape, data: wide as unknown as Float32Array });
          return referenceNll(ref, seqs, promptLen, { config: peft.config, tensors });
        };
        const fd = (at(t.data[i] + eps) - at(t.data[i] - eps)) / (2 * eps);
        expect(Math.abs(g[i] - fd), `${key}[${i}]: gpu ${g[i]} vs fd ${fd}`).toBeLessThan(
          2e-3 * scale + 0.02 * Math.abs(fd),
        );
      }
      model.removeAdapter();
    });

    it("cached decoding serves the reference's greedy tokens and logprobs", async () => {
      const V = model.config.vocabSize;
      const r = rng(3);
      const prompts = [11, 4].map((n) => Array.from({ length: n }, () => Math.floor(r() * V)));
      const out = await model.generate(prompts, { temperature: 0, maxTokens: 8, ignoreEos: true });
      for (const [p, prompt] of prompts.entries()) {
        const full = [...prompt, ...out[p].tokens];
        const logits = referenceForward(ref, full);
        for (let i = 0; i < out[p].tokens.length; i++) {
          const t = prompt.length - 1 + i;
          const row = logits.subarray(t * V, (t + 1) * V);
          const sorted = Array.from(row).sort((a, b) => b - a);
          // Greedy picks the reference's argmax unless the top two are within f32 noise.
          if (sorted[0] - sorted[1] > 1e-3)
            expect(out[p].tokens[i], `prompt ${p} token ${i}`).toBe(row.indexOf(sorted[0]));
          expect(Math.abs(out[p].logprobs[i] - logprob(logits, V, t, out[p].tokens[i]))).toBeLessThan(1e-3);
        }
      }
    });

    const fullChecks: Partial<Record<string, string[]>> = {
      Qwen3ForCausalLM: ["model.layers.0.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight"],
      // Every (1 + w) norm of the sandwich, the final norm, and the √hidden-scaled tied embedding.
      Gemma3ForCausalLM: [
        "model.layers.0.self_attn.q_norm.weight",
        "model.layers.1.self_attn.k_norm.weight",
        "model.layers.0.post_attention_layernorm.weight",
        "model.layers.1.pre_feedforward_layernorm.weight",
        "model.layers.0.post_feedforward_layernorm.weight",
        "model.layers.1.input_layernorm.weight",
        "model.norm.weight",
        "model.embed_tokens.weight",
      ],
    };
    const fullNames = fullChecks[spec.architecture ?? ""];
    if (fullNames) {
      it(`full training: ${fullNames.length} norm/embedding gradients match finite differences`, async () => {
        const V = model.config.vocabSize;
        const r = rng(9);
        const promptLen = 2;
        const seqs = [8, 5].map((n) => Array.from({ length: n }, () => Math.floor(r() * V)));
        const optimizer = Optimizer.forAllWeights(model.transformer, { lr: 0 });
        const samples = await Promise.all(
          seqs.map(async (tokens) => {
            const logits = await model.logits(tokens);
            return {
              tokens,
              lossMask: tokens.map((_, i) => (i >= promptLen ? 1 : 0)),
              advantage: 1,
              oldLogprobs: tokens.map((tok, t) => (t >= promptLen ? logprob(logits, V, t - 1, tok) : 0)),
            };
          }),
        );
        await policyGradients(
          model.transformer,
          samples,
          { temperature: 1, clipLow: 0.2, clipHigh: 0.2 },
          optimizer.sink,
        );
        for (const name of fullNames) {
          const grad = await optimizer.sink.full!.get(name)!.read();
          const w = ref.weights.get(name)!;
          let scale = 0;
          for (const g of grad) scale = Math.max(scale, Math.abs(g));
          expect(scale, name).toBeGreaterThan(0);
          for (const i of [grad.indexOf(grad.reduce((a, b) => (Math.abs(b) > Math.abs(a) ? b : a))), 5]) {
            const wide = Float64Array.from(w);
            ref.weights.set(name, wide);
            wide[i] += 1e-4;
            const plus = referenceNll(ref, seqs, promptLen);
            wide[i] -= 2e-4;
            const minus = referenceNll(ref, seqs, promptLen);
            ref.weights.set(name, w);
            const fd = (plus - minus) / 2e-4;
            expect(Math.abs(grad[i] - fd), `${name}[${i}]: gpu ${grad[i]} vs fd ${fd}`).toBeLessThan(
              2e-3 * scale + 0.02 * Math.abs(fd),
            );
          }
        }
        optimizer.dispose();
      });
    }

    if (spec.architecture === "Gemma3ForCausalLM") {
      it("saves every weight (the four norms per layer included) and reloads to the same logits", async () => {
        const out = join(root, "gemma-saved");
        // Another seed's directory, whose weights saveFullWeights must replace, every one of them.
        await writeTinyModel(out, { ...spec, seed: 1000 });
        await saveFullWeights(model.transformer, out);
        const reloaded = await loadModel(out, { gpu: gpu(), maxSlots: 1, maxSeqLen: 32 });
        try {
          const tokens = [3, 1, 4, 1, 5, 9, 2, 6];
          const got = await reloaded.logits(tokens);
          const want = await model.logits(tokens);
          // Same f32 weights and kernels: equal up to rounding (a lost norm would be off by O(1)).
          let worst = 0;
          for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
          expect(worst).toBeLessThan(1e-5);
        } finally {
          reloaded.dispose();
        }
      });
    }

    it("frees its weights", () => {
      model.dispose();
    });
  });
}

describe("LlamaForCausalLM on the GPU vs PyTorch", () => {
  // Its 11 positions are too few for the llama3 rescaling to move logits past 1e-3 (the tiny Llama
  // case above is what catches a kernel that ignores it); this pins everything else against torch.
  it("matches torch_forward.py's logits for the Llama fixture (biases, GQA 4:1, untied)", async () => {
    const dir = fileURLToPath(new URL("../fixtures/torch-reference/llama", import.meta.url));
    const fixture = JSON.parse(readFileSync(join(dir, "logits.json"), "utf8"));
    const model = await loadModel(dir, { gpu: gpu() });
    try {
      expect(model.config.ropeScaling?.type).toBe("llama3");
      const got = await model.logits(fixture.tokens);
      const want: number[] = fixture.logits.flat();
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < want.length; i++) {
        worst = Math.max(worst, Math.abs(got[i] - want[i]));
        scale = Math.max(scale, Math.abs(want[i]));
      }
      expect(worst / scale).toBeLessThan(1e-3);
    } finally {
      model.dispose();
    }
  });
});
