// lossAndGrads against an independent f64 computation of the same formula: the reference
// transformer's logits, the PPO loss written out plainly, and central finite differences (in f64,
// eps 1e-4) for a sample of LoRA coordinates.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tensor } from "../../src/gpu/tensor.ts";
import { loadCheckpoint } from "../../src/model/loader.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import type { PeftAdapter } from "../../src/model/peft.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import type { PolicySample } from "../../src/trainer/grads.ts";
import { policyGradients } from "../../src/trainer/grads.ts";
import { lossAndGrads } from "../../src/trainer/loss-and-grads.ts";
import { ppoLoss } from "../../src/trainer/ppo.ts";
import { useGpu } from "../helpers/gpu.ts";
import { rng } from "../helpers/random.ts";
import { loadReferenceModel, type ReferenceModel, referenceForward } from "../reference/transformer.ts";

const gpu = useGpu();
let dir: string;
let model: Model;
let reference: ReferenceModel;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-grads-"));
  await writeTinyModel(dir, {
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    intermediate: 48,
    seed: 5,
    perturbNorms: true,
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

/** The loss written out plainly in f64 from reference logits. */
function referenceLoss(peft: PeftAdapter, batch: PolicySample[], T: number, clipLow: number, clipHigh: number): number {
  let num = 0;
  let count = 0;
  const V = reference.config.vocabSize;
  for (const s of batch) {
    const logits = referenceForward(reference, s.tokens, peft);
    for (let t = 1; t < s.tokens.length; t++) {
      if (!s.lossMask[t]) continue;
      const row = logits.subarray((t - 1) * V, t * V);
      let m = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < V; j++) m = Math.max(m, row[j] / T);
      let z = 0;
      for (let j = 0; j < V; j++) z += Math.exp(row[j] / T - m);
      const lp = row[s.tokens[t]] / T - m - Math.log(z);
      const r = Math.exp(lp - s.oldLogprobs[t]);
      const clipped = Math.min(Math.max(r, 1 - clipLow), 1 + clipHigh);
      num += Math.min(r * s.advantage, clipped * s.advantage);
      count++;
    }
  }
  return -num / count;
}

describe("lossAndGrads", () => {
  it("matches an f64 reference loss and finite-difference LoRA gradients", async () => {
    const lora = model.createAdapter({ rank: 2, alpha: 4, seed: 9 });
    const r = rng(77);
    for (const { tensor } of lora.parameters())
      tensor.write(Array.from({ length: tensor.size }, () => (r() - 0.5) * 0.3));
    const V = model.config.vocabSize;
    const mk = (len: number, promptLen: number, adv: number): PolicySample => {
      const tokens = Array.from({ length: len }, () => Math.floor(r() * V));
      return {
        tokens,
        lossMask: tokens.map((_, i) => (i >= promptLen ? 1 : 0)),
        advantage: adv,
        // Behaviour logprobs near the current ones so some ratios fall inside and some outside the clip.
        oldLogprobs: tokens.map((_, i) => (i >= promptLen ? -Math.log(V) + (r() - 0.5) * 0.6 : 0)),
      };
    };
    const batch = [mk(7, 3, 1.3), mk(5, 2, -0.7), mk(9, 4, 0.4)];
    const options = { temperature: 0.8, clipLow: 0.2, clipHigh: 0.28 };
    const { loss, grads } = await lossAndGrads(model, batch, options);
    const peft = await lora.toPeft();
    const want = referenceLoss(peft, batch, options.temperature, options.clipLow, options.clipHigh);
    // f32 GPU vs f64: logits agree to ~1e-5 relative; the loss to well within 1e-4.
    expect(Math.abs(loss - want)).toBeLessThan(1e-4 * Math.max(1, Math.abs(want)));
    expect([...grads.keys()].sort()).toEqual([...peft.tensors.keys()].sort());

    let scale = 0;
    for (const g of grads.values()) for (const v of g) scale = Math.max(scale, Math.abs(v));
    expect(scale).toBeGreaterThan(0);
    const keys = [...peft.tensors.keys()];
    const eps = 1e-4;
    for (let probe = 0; probe < 24; probe++) {
      const key = keys[Math.floor(r() * keys.length)];
      const t = peft.tensors.get(key)!;
      const i = Math.floor(r() * t.data.length);
      const orig = t.data[i];
      // Perturb in f64 through a widened copy so eps is not lost to f32 rounding.
      const wide = Float64Array.from(t.data);
      const at = (v: number) => {
        wide[i] = v;
        const tensors = new Map(peft.tensors);
        tensors.set(key, { shape: t.shape, data: wide as unknown as Float32Array });
        return referenceLoss(
          { config: peft.config, tensors },
          batch,
          options.temperature,
          options.clipLow,
          options.clipHigh,
        );
      };
      const fd = (at(orig + eps) - at(orig - eps)) / (2 * eps);
      const got = grads.get(key)![i];
      // Near a clip boundary the loss has a kink and FD is meaningless; the random inputs avoid it
      // with overwhelming probability. Tolerance: 1e-3 of the largest gradient plus 2% relative.
      expect(Math.abs(got - fd), `${key}[${i}]: gpu ${got} vs fd ${fd}`).toBeLessThan(
        1e-3 * scale + 0.02 * Math.abs(fd),
      );
    }
    model.removeAdapter();
  });

  it("adds the k3 KL to the adapter-off policy: zero for a fresh adapter, positive once it differs", async () => {
    const lora = model.createAdapter({ rank: 2, alpha: 4, seed: 4 });
    const tokens = [5, 9, 17, 2, 11, 40];
    const batch = [{ tokens, lossMask: [0, 0, 1, 1, 1, 1], advantage: 1, oldLogprobs: [0, 0, -6, -6, -6, -6] }];
    const base = { temperature: 1, clipLow: 0.2, clipHigh: 0.28 };
    // B = 0: the adapter changes nothing, so the policy equals the reference and KL is 0.
    const fresh = await lossAndGrads(model, batch, { ...base, klCoef: 0.5 });
    const freshNoKl = await lossAndGrads(model, batch, base);
    expect(fresh.loss).toBeCloseTo(freshNoKl.loss, 6);
    for (const { name, tensor } of lora.parameters()) {
      if (name.includes("lora_B")) tensor.write(Array.from({ length: tensor.size }, (_, i) => Math.cos(i) * 0.2));
    }
    const withKl = await lossAndGrads(model, batch, { ...base, klCoef: 0.5 });
    const noKl = await lossAndGrads(model, batch, base);
    expect(withKl.loss).toBeGreaterThan(noKl.loss);
    model.removeAdapter();
  });

  it("rejects malformed samples and a missing adapter", async () => {
    await expect(
      lossAndGrads(model, [{ tokens: [1, 2], lossMask: [0, 1], advantage: 1, oldLogprobs: [0, 0] }], {
        temperature: 1,
        clipLow: 0.2,
        clipHigh: 0.2,
      }),
    ).rejects.toThrow(/needs a LoRA adapter/);
    model.createAdapter({ rank: 2, alpha: 2 });
    await expect(
      lossAndGrads(model, [{ tokens: [1, 2], lossMask: [1, 1], advantage: 1, oldLogprobs: [0, 0] }], {
        temperature: 1,
        clipLow: 0.2,
        clipHigh: 0.2,
      }),
    ).rejects.toThrow(/first token has no logprob/);
    model.removeAdapter();
  });
});

describe("entropy bonus", () => {
  it("its gradient matches finite differences of −c·mean entropy added to the loss", async () => {
    const lora = model.createAdapter({ rank: 2, alpha: 4, seed: 12 });
    const r = rng(5);
    for (const { tensor } of lora.parameters())
      tensor.write(Array.from({ length: tensor.size }, () => (r() - 0.5) * 0.3));
    const V = model.config.vocabSize;
    const tokens = Array.from({ length: 8 }, () => Math.floor(r() * V));
    const mask = tokens.map((_, i) => (i >= 3 ? 1 : 0));
    const T = 0.9;
    const c = 0.5;
    const entropyLoss = (peft: PeftAdapter) => {
      const logits = referenceForward(reference, tokens, peft);
      let sum = 0;
      let n = 0;
      for (let t = 1; t < tokens.length; t++) {
        if (!mask[t]) continue;
        const row = logits.subarray((t - 1) * V, t * V);
        let m = Number.NEGATIVE_INFINITY;
        for (const x of row) m = Math.max(m, x / T);
        let z = 0;
        for (const x of row) z += Math.exp(x / T - m);
        let h = 0;
        for (const x of row) {
          const lp = x / T - m - Math.log(z);
          h -= Math.exp(lp) * lp;
        }
        sum += h;
        n++;
      }
      return -c * (sum / n);
    };
    const sink = new Map<string, { dA: Tensor; dB: Tensor }>();
    for (const m of lora.modules.values()) sink.set(m.path, { dA: gpu().zeros(m.a.shape), dB: gpu().zeros(m.b.shape) });
    // Advantage 0 removes the policy term; what remains is the entropy bonus alone.
    const res = await policyGradients(
      model.transformer,
      [{ tokens, lossMask: mask, advantage: 0, oldLogprobs: tokens.map(() => 0) }],
      { temperature: T, clipLow: 0.2, clipHigh: 0.2, entropyCoef: c },
      { lora: sink },
    );
    const peft = await lora.toPeft();
    expect(res.loss).toBeCloseTo(entropyLoss(peft), 4);
    expect(res.metrics.entropy).toBeGreaterThan(0);
    const m = [...lora.modules.values()][3];
    const key = `base_model.model.${m.path}.lora_B.weight`;
    const grad = await sink.get(m.path)!.dB.read();
    const t = peft.tensors.get(key)!;
    let scale = 0;
    for (const g of grad) scale = Math.max(scale, Math.abs(g));
    for (let probe = 0; probe < 6; probe++) {
      const i = Math.floor(r() * t.data.length);
      const wide = Float64Array.from(t.data);
      const at = (v: number) => {
        wide[i] = v;
        const tensors = new Map(peft.tensors);
        tensors.set(key, { shape: t.shape, data: wide as unknown as Float32Array });
        return entropyLoss({ config: peft.config, tensors });
      };
      const fd = (at(t.data[i] + 1e-4) - at(t.data[i] - 1e-4)) / 2e-4;
      expect(Math.abs(grad[i] - fd), `${key}[${i}]`).toBeLessThan(1e-3 * scale + 0.02 * Math.abs(fd));
    }
    for (const g of sink.values()) {
      g.dA.dispose();
      g.dB.dispose();
    }
    model.removeAdapter();
  });
});

describe("ppoLoss", () => {
  it("clips per side, zeroes gradients of clipped tokens, and aggregates by token or sequence", () => {
    const lp = Float32Array.from([0, Math.log(2), Math.log(0.5), 0]);
    const old = new Float32Array(4);
    const mask = Float32Array.from([1, 1, 1, 0]);
    const adv = Float32Array.from([1, 1, -1, 1]);
    const r = ppoLoss({ logprobs: lp, oldLogprobs: old, mask, advantages: adv }, { clipLow: 0.2, clipHigh: 0.3 });
    // token 0: r=1 → obj 1; token 1: r=2, A>0 → clipped at 1.3; token 2: r=0.5, A<0 → min(−0.5, −0.8) = −0.8 (clipped)
    expect(r.loss).toBeCloseTo(-(1 + 1.3 - 0.8) / 3, 6);
    expect(Array.from(r.dLogprobs)).toEqual([-1 / 3, 0, 0, 0].map(Math.fround));
    expect(r.metrics.clipFraction).toBeCloseTo(2 / 3, 6);
    const seq = ppoLoss(
      { logprobs: lp, oldLogprobs: old, mask, advantages: adv, sequence: Uint32Array.from([0, 0, 1, 1]) },
      { clipLow: 0.2, clipHigh: 0.3, aggregation: "sequence" },
    );
    expect(seq.loss).toBeCloseTo(-((1 + 1.3) / 2 + -0.8) / 2, 6);
  });
});
