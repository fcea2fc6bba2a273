// SFT on the GPU: the loss sftGradients returns is the mean NLL of the masked tokens computed
// independently from model.logits (f64 log-softmax on the CPU), its gradient is that of the
// loss (a finite difference along the gradient direction), and a few hundred full-weight AdamW
// steps memorise a small set of sequences.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { Optimizer } from "../../src/trainer/optimizer.ts";
import { type SftSample, sftGradients } from "../../src/trainer/sft.ts";
import { useGpu } from "../helpers/gpu.ts";
import { ints } from "../helpers/random.ts";

const gpu = useGpu();
let dir: string;
let model: Model;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-sft-"));
  await writeTinyModel(dir, { hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 5 });
  model = await loadModel(dir, { gpu: gpu(), maxSlots: 4, maxSeqLen: 64 });
});

afterAll(() => {
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** Mean NLL of the masked tokens from full logits, accumulated in f64. */
async function referenceNll(samples: SftSample[]): Promise<number> {
  const V = model.config.vocabSize;
  let sum = 0;
  let count = 0;
  for (const s of samples) {
    const logits = await model.logits(s.tokens);
    for (let t = 1; t < s.tokens.length; t++) {
      if (!s.lossMask[t]) continue;
      const row = logits.subarray((t - 1) * V, t * V);
      let max = -Infinity;
      for (const x of row) max = Math.max(max, x);
      let z = 0;
      for (const x of row) z += Math.exp(x - max);
      sum -= row[s.tokens[t]] - max - Math.log(z);
      count++;
    }
  }
  return sum / count;
}

function randomSamples(seed: number, lengths: number[], promptLength: number): SftSample[] {
  const V = model.config.vocabSize;
  return lengths.map((n, i) => ({
    tokens: Array.from(ints(n, seed + i, V)),
    lossMask: Array.from({ length: n }, (_, t) => (t >= Math.min(promptLength, n - 1) ? 1 : 0)),
  }));
}

it("returns the mean NLL of the masked tokens, as model.logits gives it", async () => {
  const samples = randomSamples(11, [1 + 6, 17, 9], 3);
  const optimizer = Optimizer.forAllWeights(model.transformer, { lr: 0 });
  try {
    const { loss, tokens } = await sftGradients(model.transformer, samples, optimizer.sink);
    expect(tokens).toBe(4 + 14 + 6);
    // f32 GPU log-softmax over a 512-word vocabulary vs f64: a few ulps of ~6 nats.
    expect(loss).toBeCloseTo(await referenceNll(samples), 4);
    const weighted = await sftGradients(model.transformer, samples, optimizer.sink, { weight: 0.25 });
    expect(weighted.loss).toBeCloseTo(loss * 0.25, 5);
    optimizer.zeroGrad();
  } finally {
    optimizer.dispose();
  }
});

it("rejects malformed samples with clear errors", async () => {
  const sink = { full: new Map() };
  await expect(sftGradients(model.transformer, [{ tokens: [1, 2], lossMask: [0] }], sink)).rejects.toThrow(
    /one per token/,
  );
  await expect(sftGradients(model.transformer, [{ tokens: [1, 2], lossMask: [1, 1] }], sink)).rejects.toThrow(
    /first token/,
  );
  await expect(sftGradients(model.transformer, [{ tokens: [1, 2], lossMask: [0, 0] }], sink)).rejects.toThrow(
    /nothing to learn/,
  );
});

it("one optimizer step on the SFT gradient lowers the independently computed NLL", async () => {
  // The first AdamW step moves every weight by ≈ lr·sign(g): with the right gradient the loss
  // drops by ≈ lr·Σ|g| ≫ 1e-3; a sign error or a gradient of the wrong rows would raise it.
  const samples = randomSamples(23, [12, 10], 4);
  const before = await referenceNll(samples);
  const optimizer = Optimizer.forAllWeights(model.transformer, { lr: 1e-3, maxGradNorm: 0 });
  try {
    await sftGradients(model.transformer, samples, optimizer.sink);
    await optimizer.apply();
    const after = await referenceNll(samples);
    expect(after).toBeLessThan(before - 1e-3);
  } finally {
    optimizer.dispose();
  }
});

it("a few hundred full-weight SFT steps memorise a small set of sequences", async () => {
  const samples = randomSamples(101, [12, 12, 10, 14], 2);
  const optimizer = Optimizer.forAllWeights(model.transformer, { lr: 1e-2, maxGradNorm: 1 });
  try {
    const first = await sftGradients(model.transformer, samples, optimizer.sink);
    await optimizer.apply();
    let last = first.loss;
    for (let step = 0; step < 200; step++) {
      last = (await sftGradients(model.transformer, samples, optimizer.sink)).loss;
      await optimizer.apply();
    }
    expect(first.loss).toBeGreaterThan(4);
    expect(last).toBeLessThan(0.1);
    // Greedy next-token prediction now reproduces every trained token.
    const V = model.config.vocabSize;
    for (const s of samples) {
      const logits = await model.logits(s.tokens);
      for (let t = 2; t < s.tokens.length; t++) {
        const row = logits.subarray((t - 1) * V, t * V);
        let best = 0;
        for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
        expect(best).toBe(s.tokens[t]);
      }
    }
  } finally {
    optimizer.dispose();
  }
}, 240_000);
