// Aggregated trajectories train the same thing as per-call samples: when each call's prompt is
// the previous prompt + response + new tokens, merging the calls into one masked sequence gives
// every trained token the same left context and position, so the PPO loss and every LoRA
// gradient are the same — checked with the real WGSL kernels on a tiny model, with per-call
// advantages, ratios both inside and outside the clip, and per-rollout loss normalisation.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { lossAndGrads } from "../../src/trainer/loss-and-grads.ts";
import { extend, normalizePerRollout, type TrainingSample } from "../../src/trainer/samples.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { rng } from "../helpers/random.ts";

const gpu = useGpu();
let dir: string;
let model: Model;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-trajectory-"));
  await writeTinyModel(dir, { hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48, seed: 8 });
  model = await loadModel(dir, { gpu: gpu() });
});

afterAll(() => {
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * One rollout's calls as per-call samples: call k's prompt is call k−1's prompt + response +
 * `extra` new tokens (tool result, template tokens); odd lengths (1, 7) on purpose.
 */
function rollout(r: () => number, V: number, id: string, turns: { extra: number; response: number; adv: number }[]) {
  const calls: TrainingSample[] = [];
  let history: number[] = [];
  for (const turn of turns) {
    const prompt = [...history, ...Array.from({ length: turn.extra }, () => Math.floor(r() * V))];
    const response = Array.from({ length: turn.response }, () => Math.floor(r() * V));
    calls.push({
      tokens: [...prompt, ...response],
      lossMask: [...prompt.map(() => 0), ...response.map(() => 1)],
      // Behaviour logprobs around the current ones: some ratios inside the clip, some outside.
      oldLogprobs: [...prompt.map(() => 0), ...response.map(() => -Math.log(V) + (r() - 0.5) * 0.8)],
      advantage: turn.adv,
      temperature: 0.9,
      rolloutId: id,
    });
    history = [...prompt, ...response];
  }
  return calls;
}

const copy = (s: TrainingSample): TrainingSample => ({
  ...s,
  tokens: [...s.tokens],
  lossMask: [...s.lossMask],
  oldLogprobs: [...s.oldLogprobs],
});

function aggregate(calls: TrainingSample[]): TrainingSample[] {
  const out: TrainingSample[] = [];
  for (const c of calls.map(copy)) if (!(out.length > 0 && extend(out[out.length - 1], c))) out.push(c);
  return out;
}

describe("aggregated vs per-call samples on the GPU", () => {
  it("give the same loss and LoRA gradients when prompts are exact prefixes", async () => {
    const lora = model.createAdapter({ rank: 2, alpha: 4, seed: 3 });
    const r = rng(41);
    for (const { tensor } of lora.parameters())
      tensor.write(Array.from({ length: tensor.size }, () => (r() - 0.5) * 0.3));
    const V = model.config.vocabSize;
    const perCall = [
      ...rollout(r, V, "a", [
        { extra: 7, response: 3, adv: 1.2 },
        { extra: 5, response: 1, adv: 0.4 },
        { extra: 1, response: 4, adv: -0.3 },
      ]),
      ...rollout(r, V, "b", [
        { extra: 4, response: 6, adv: -0.8 },
        { extra: 2, response: 3, adv: -0.8 },
      ]),
    ];
    const merged = [...aggregate(perCall.slice(0, 3)), ...aggregate(perCall.slice(3))];
    expect(merged.map((s) => s.calls ?? 1)).toEqual([3, 2]);
    const options = { temperature: 0.9, clipLow: 0.2, clipHigh: 0.28 };
    for (const normalise of [false, true]) {
      const a = perCall.map(copy);
      const b = merged.map(copy);
      if (normalise) {
        normalizePerRollout(a);
        normalizePerRollout(b);
      }
      const split = await lossAndGrads(model, a, options);
      const joined = await lossAndGrads(model, b, options);
      // Same trained tokens (8 + 9) in the same contexts: only f32 summation order differs.
      expect(joined.loss).toBeCloseTo(split.loss, 5);
      let scale = 0;
      for (const g of split.grads.values()) for (const v of g) scale = Math.max(scale, Math.abs(v));
      expect(scale).toBeGreaterThan(0);
      for (const [key, g] of split.grads) {
        expectClose(joined.grads.get(key)!, g, { atol: 1e-4 * scale, rtol: 1e-3 }, `${key} (normalise ${normalise})`);
      }
    }
    // Per-rollout normalisation changes the loss when rollouts differ in length (8 vs 6 tokens).
    const uneven = [...perCall.slice(0, 3).map(copy), copy(perCall[3])];
    const token = await lossAndGrads(model, uneven, options);
    normalizePerRollout(uneven);
    const perRollout = await lossAndGrads(model, uneven, options);
    expect(Math.abs(perRollout.loss - token.loss)).toBeGreaterThan(1e-6);
    model.removeAdapter();
  });
});
