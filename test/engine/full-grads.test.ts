// Full-parameter training gradients (every weight, for small models) against central finite
// differences of the f64 reference transformer: the loss is the mean negative log-likelihood of
// the masked tokens, which is the PPO loss at ratio 1 with advantage 1.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadCheckpoint } from "../../src/model/loader.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { policyGradients } from "../../src/trainer/grads.ts";
import { Optimizer } from "../../src/trainer/optimizer.ts";
import { useGpu } from "../helpers/gpu.ts";
import { rng } from "../helpers/random.ts";
import { loadReferenceModel, type ReferenceModel, referenceForward } from "../reference/transformer.ts";

const gpu = useGpu();
let dir: string;
let model: Model;
let reference: ReferenceModel;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-full-"));
  // Llama with biases everywhere and an untied head, so every kind of weight gets a gradient.
  await writeTinyModel(dir, {
    architecture: "LlamaForCausalLM",
    hidden: 16,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    intermediate: 24,
    seed: 8,
    tie: false,
    attentionBias: true,
    mlpBias: true,
    perturbNorms: true,
    lmHeadStd: 0.3,
  });
  model = await loadModel(dir, { gpu: gpu() });
  const checkpoint = await loadCheckpoint(dir);
  reference = await loadReferenceModel(checkpoint);
  await checkpoint.close();
});

afterAll(() => {
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

function referenceNll(sequences: number[][], masks: number[][]): number {
  const V = reference.config.vocabSize;
  let sum = 0;
  let n = 0;
  sequences.forEach((tokens, s) => {
    const logits = referenceForward(reference, tokens);
    for (let t = 1; t < tokens.length; t++) {
      if (!masks[s][t]) continue;
      const row = logits.subarray((t - 1) * V, t * V);
      let m = Number.NEGATIVE_INFINITY;
      for (const x of row) m = Math.max(m, x);
      let z = 0;
      for (const x of row) z += Math.exp(x - m);
      sum -= row[tokens[t]] - m - Math.log(z);
      n++;
    }
  });
  return sum / n;
}

it("every weight's gradient matches finite differences of the reference", async () => {
  const r = rng(3);
  const V = model.config.vocabSize;
  const sequences = [6, 9].map((len) => Array.from({ length: len }, () => Math.floor(r() * V)));
  const masks = sequences.map((s) => s.map((_, i) => (i >= 2 ? 1 : 0)));
  // oldLogprobs = current logprobs makes every ratio 1: the loss is the masked mean NLL.
  const current = await Promise.all(
    sequences.map(async (tokens) => {
      const logits = await model.logits(tokens);
      return tokens.map((tok, t) => {
        if (t === 0) return 0;
        const row = logits.subarray((t - 1) * V, t * V);
        let m = Number.NEGATIVE_INFINITY;
        for (const x of row) m = Math.max(m, x);
        let z = 0;
        for (const x of row) z += Math.exp(x - m);
        return row[tok] - m - Math.log(z);
      });
    }),
  );
  const optimizer = Optimizer.forAllWeights(model.transformer, { lr: 0 });
  const samples = sequences.map((tokens, s) => ({ tokens, lossMask: masks[s], advantage: 1, oldLogprobs: current[s] }));
  const result = await policyGradients(
    model.transformer,
    samples,
    { temperature: 1, clipLow: 0.2, clipHigh: 0.2 },
    optimizer.sink,
  );
  expect(result.loss).toBeCloseTo(-1, 4); // −mean(ratio·A) with ratio 1, A 1
  const full = optimizer.sink.full!;
  const names = [
    "model.embed_tokens.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.k_proj.bias",
    "model.layers.1.self_attn.v_proj.weight",
    "model.layers.1.self_attn.o_proj.bias",
    "model.layers.0.post_attention_layernorm.weight",
    "model.layers.1.mlp.gate_proj.weight",
    "model.layers.0.mlp.up_proj.bias",
    "model.layers.1.mlp.down_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
  ];
  expect(new Set(optimizer.names)).toEqual(new Set(full.keys()));
  for (const name of names) {
    const grad = await full.get(name)!.read();
    const w = reference.weights.get(name)!;
    let scale = 0;
    for (const g of grad) scale = Math.max(scale, Math.abs(g));
    expect(scale, name).toBeGreaterThan(0);
    for (let probe = 0; probe < 3; probe++) {
      // Probe the largest-gradient coordinate first, then random ones.
      const i =
        probe === 0
          ? grad.indexOf(grad.reduce((a, b) => (Math.abs(b) > Math.abs(a) ? b : a)))
          : Math.floor(r() * w.length);
      const wide = Float64Array.from(w);
      reference.weights.set(name, wide);
      const eps = 1e-4;
      wide[i] += eps;
      const plus = referenceNll(sequences, masks);
      wide[i] -= 2 * eps;
      const minus = referenceNll(sequences, masks);
      reference.weights.set(name, w);
      const fd = (plus - minus) / (2 * eps);
      // d(mean NLL) = −d(loss at ratio 1) … both are the gradient of the same function.
      expect(Math.abs(grad[i] - fd), `${name}[${i}]: gpu ${grad[i]} vs fd ${fd}`).toBeLessThan(
        2e-3 * scale + 0.02 * Math.abs(fd),
      );
    }
  }
  optimizer.dispose();
});
