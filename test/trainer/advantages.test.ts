// Advantage estimators, credit assignment, micro-batching and the KL term, checked by hand.
import { describe, expect, it } from "vitest";
import { computeAdvantages, RunningBaseline } from "../../src/trainer/advantages.ts";
import { creditReturns } from "../../src/trainer/credit.ts";
import { ppoLoss } from "../../src/trainer/ppo.ts";
import { microBatches, type TrainingSample } from "../../src/trainer/samples.ts";

describe("advantages", () => {
  const episodes = [
    { group: "a", reward: 1 },
    { group: "a", reward: 0 },
    { group: "a", reward: 0 },
    { group: "b", reward: 1 },
    { group: "b", reward: 1 },
    { group: "c", reward: 0.5 },
  ];

  it("GRPO centres on the group mean, divides by the unbiased std, and drops flat groups", () => {
    const r = computeAdvantages(episodes, { kind: "grpo", eps: 0 });
    const mean = 1 / 3;
    const std = Math.sqrt(((1 - mean) ** 2 + 2 * mean ** 2) / 2);
    expect(r.advantages[0]).toBeCloseTo((1 - mean) / std, 10);
    expect(r.advantages[1]).toBeCloseTo(-mean / std, 10);
    expect(r.advantages.slice(3)).toEqual([null, null, null]); // b is flat, c has one member
    expect(r.droppedGroups).toBe(2);
    expect(r.groups).toBe(3);
    const plain = computeAdvantages(episodes, { kind: "grpo", normalizeStd: false });
    expect(plain.advantages[0]).toBeCloseTo(2 / 3, 10);
  });

  it("RLOO centres on the mean of the other members", () => {
    const r = computeAdvantages(episodes, { kind: "rloo" });
    expect(r.advantages[0]).toBeCloseTo(1 - 0, 10);
    expect(r.advantages[1]).toBeCloseTo(0 - 0.5, 10);
  });

  it("REINFORCE subtracts a running baseline updated after use", () => {
    const baseline = new RunningBaseline(0.5);
    const first = computeAdvantages([{ group: "x", reward: 2 }], { kind: "reinforce", baseline });
    expect(first.advantages).toEqual([2]);
    expect(baseline.value).toBe(2);
    const second = computeAdvantages([{ group: "x", reward: 4 }], { kind: "reinforce", baseline });
    expect(second.advantages).toEqual([2]);
    expect(baseline.value).toBe(3);
  });

  it("rejects non-finite rewards", () => {
    expect(() => computeAdvantages([{ group: "a", reward: Number.NaN }], { kind: "rloo" })).toThrow(/finite/);
  });
});

describe("credit assignment", () => {
  it("gives every call the return, or only the last, or a discounted one", () => {
    expect(creditReturns(2, 3)).toEqual([2, 2, 2]);
    expect(creditReturns(2, 3, "last")).toEqual([0, 0, 2]);
    expect(creditReturns(1, 3, { kind: "discounted", gamma: 0.5 })).toEqual([0.25, 0.5, 1]);
    expect(creditReturns(1, 0)).toEqual([]);
    expect(() => creditReturns(1, 2, { kind: "discounted", gamma: 0 })).toThrow(/gamma/);
  });
});

describe("micro-batches", () => {
  const sample = (len: number, temperature: number): TrainingSample => ({
    tokens: Array(len).fill(1),
    lossMask: Array(len).fill(1),
    oldLogprobs: Array(len).fill(0),
    advantage: 1,
    temperature,
    rolloutId: "r",
  });

  it("respects the token budget and keeps one temperature per batch", () => {
    const batches = microBatches([sample(5, 1), sample(5, 1), sample(5, 0.7), sample(12, 1), sample(3, 1)], 10);
    expect(batches.map((b) => b.map((s) => s.tokens.length))).toEqual([[5, 5], [12], [3], [5]]);
    for (const b of batches) expect(new Set(b.map((s) => s.temperature)).size).toBe(1);
  });
});

describe("k3 KL", () => {
  it("matches exp(ref−lp) − (ref−lp) − 1 and its derivative", () => {
    const lp = Float32Array.from([-1, -2]);
    const ref = Float32Array.from([-1.5, -1.0]);
    const r = ppoLoss(
      {
        logprobs: lp,
        oldLogprobs: lp,
        refLogprobs: ref,
        mask: Float32Array.from([1, 1]),
        advantages: new Float32Array(2),
      },
      { clipLow: 0.2, clipHigh: 0.2, klCoef: 0.1 },
    );
    const k3 = (d: number) => Math.exp(d) - d - 1;
    expect(r.metrics.kl).toBeCloseTo((k3(-0.5) + k3(1)) / 2, 6);
    expect(r.loss).toBeCloseTo(0.1 * r.metrics.kl, 6);
    // d/dlp [e^(ref−lp) − (ref−lp) − 1] = 1 − e^(ref−lp), times klCoef / N.
    expect(r.dLogprobs[0]).toBeCloseTo((0.1 / 2) * (1 - Math.exp(-0.5)), 6);
    expect(r.dLogprobs[1]).toBeCloseTo((0.1 / 2) * (1 - Math.exp(1)), 6);
  });
});
