// sampling.wgsl against the f64 sort-based reference: the exact token for each (seed, step),
// greedy/argmax, support restriction under top-k/top-p, logprobs and top-N alternatives,
// determinism across batch composition, and the empirical distribution over 10 000 draws.
import { describe, expect, it } from "vitest";
import { sample, samplingWorkgroupSize } from "../../src/gpu/kernels/sampling.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { normal } from "../helpers/random.ts";
import {
  type RefSamplingParams,
  refArgmax,
  refKeptSet,
  refRowLogprobs,
  refSampleToken,
  refSamplingProbs,
  refTopLogprobs,
} from "../reference/sampling.ts";

const gpu = useGpu();

/** Logprob tolerance: f32 rounding of (x − max)/T and log S, a few ulps of max|z| + log vocab. */
const LOGPROB_TOL = { atol: 2e-5, rtol: 1e-6 };

const settings: Omit<RefSamplingParams, "seed" | "step">[] = [
  { temperature: 0, topK: 0, topP: 1 },
  { temperature: 0.8, topK: 0, topP: 1 },
  { temperature: 1.3, topK: 5, topP: 1 },
  { temperature: 0.7, topK: 0, topP: 0.9 },
  { temperature: 1, topK: 50, topP: 0.8 },
  { temperature: 1, topK: 1, topP: 1 },
];

describe("tokens and logprobs match the reference", () => {
  for (const [rows, vocab] of [
    [1, 1],
    [7, 7],
    [5, 129],
    [3, 5000],
    [2, 151936],
  ] as const) {
    it(`[${rows}, ${vocab}] under greedy, temperature, top-k, top-p and both`, async () => {
      const g = gpu();
      const x = normal(rows * vocab, rows * 13 + vocab, 2);
      const logits = g.tensor([rows, vocab], "f32", x);
      const n = Math.min(5, vocab);
      for (const s of settings) {
        const params = Array.from({ length: rows }, (_, r) => ({ ...s, seed: 11 + r, step: 3 }));
        const res = sample(logits, params, { topLogprobs: n });
        const tokens = await res.tokens.readInts();
        const logprobs = await res.logprobs.read();
        const topTokens = await res.topTokens!.readInts();
        const topLogprobs = await res.topLogprobs!.read();
        for (let r = 0; r < rows; r++) {
          const row = x.subarray(r * vocab, (r + 1) * vocab);
          const label = `row ${r} ${JSON.stringify(s)}`;
          // Exact: the kernel and the reference draw the same uniform and walk the same order;
          // only a uniform within f32 rounding of a CDF boundary could differ (not these seeds).
          expect(tokens[r], label).toBe(refSampleToken(row, params[r], samplingWorkgroupSize(vocab)));
          expect(refKeptSet(row, params[r]).has(tokens[r]), label).toBe(true);
          expectClose([logprobs[r]], [refRowLogprobs(row, s.temperature)[tokens[r]]], LOGPROB_TOL, `${label} logprob`);
          const top = refTopLogprobs(row, s.temperature, n);
          expect(Array.from(topTokens.subarray(r * n, (r + 1) * n)), label).toEqual(top.tokens);
          expectClose(topLogprobs.subarray(r * n, (r + 1) * n), top.logprobs, LOGPROB_TOL, `${label} top`);
        }
        for (const t of [res.tokens, res.logprobs, res.topTokens!, res.topLogprobs!]) t.dispose();
      }
      logits.dispose();
    });
  }

  it("greedy and top-k = 1 pick the argmax (lowest index on ties), also at vocab 151936", async () => {
    const g = gpu();
    const vocab = 151936;
    const x = normal(3 * vocab, 77, 3);
    x[vocab + 100] = 50;
    x[vocab + 90_000] = 50; // tie: the lower index wins
    x[2 * vocab + vocab - 1] = 60; // the very last column
    const logits = g.tensor([3, vocab], "f32", x);
    const want = [0, 1, 2].map((r) => refArgmax(x.subarray(r * vocab, (r + 1) * vocab)));
    expect(want.slice(1)).toEqual([100, vocab - 1]);
    const greedy = await sample(logits, { temperature: 0 }).tokens.readInts();
    expect(Array.from(greedy)).toEqual(want);
    for (const seed of [1, 2, 3]) {
      const top1 = await sample(logits, { temperature: 1.5, topK: 1, seed }).tokens.readInts();
      // Top-k keeps every tie of the k-th value, so the tied row may pick either maximum.
      expect([top1[0], top1[2]]).toEqual([want[0], want[2]]);
      expect([100, 90_000]).toContain(top1[1]);
    }
  });
});

describe("determinism", () => {
  it("the same seed gives the same tokens, whatever the batch around a row", async () => {
    const g = gpu();
    const vocab = 3000;
    const x = normal(6 * vocab, 5, 0.7);
    const rowParams = (r: number) => ({ temperature: 1, topP: 0.95, seed: 1000 + r, step: 42 });
    const all = g.tensor([6, vocab], "f32", x);
    const batch = await sample(
      all,
      [0, 1, 2, 3, 4, 5].map((r) => rowParams(r)),
    ).tokens.readInts();
    const again = await sample(
      all,
      [0, 1, 2, 3, 4, 5].map((r) => rowParams(r)),
    ).tokens.readInts();
    expect(Array.from(again)).toEqual(Array.from(batch));
    // Rows 4, 1 alone and reordered, next to unrelated rows with other settings.
    const mixed = new Float32Array(3 * vocab);
    mixed.set(x.subarray(4 * vocab, 5 * vocab), 0);
    mixed.set(normal(vocab, 99), vocab);
    mixed.set(x.subarray(1 * vocab, 2 * vocab), 2 * vocab);
    const res = await sample(g.tensor([3, vocab], "f32", mixed), [
      rowParams(4),
      { temperature: 0.3, topK: 7, seed: 5 },
      rowParams(1),
    ]).tokens.readInts();
    expect([res[0], res[2]]).toEqual([batch[4], batch[1]]);
  });

  it("different seeds and steps give different tokens", async () => {
    const g = gpu();
    const [rows, vocab] = [64, 1000];
    const logits = g.tensor([rows, vocab], "f32", normal(rows * vocab, 8, 0.5));
    const draw = async (seed: (r: number) => number, step: number) =>
      sample(
        logits,
        Array.from({ length: rows }, (_, r) => ({ seed: seed(r), step })),
      ).tokens.readInts();
    const a = await draw((r) => r, 0);
    const b = await draw((r) => r + 7777, 0);
    const c = await draw((r) => r, 1);
    // Near-flat rows: two independent draws agree with probability ~1/600 per row.
    const differ = (u: ArrayLike<number>, v: ArrayLike<number>) => Array.from(u).filter((t, i) => t !== v[i]).length;
    expect(differ(a, b)).toBeGreaterThan(58);
    expect(differ(a, c)).toBeGreaterThan(58);
  });
});

/**
 * Upper χ² quantile at tail probability 1e-4 (Wilson–Hilferty, z = 3.719): a correct sampler
 * exceeds it with probability 1e-4, while a biased one (e.g. one cell off by 10 %) overshoots it.
 */
function chiSquareCritical(df: number): number {
  const z = 3.719;
  const k = 2 / (9 * df);
  return df * (1 - k + z * Math.sqrt(k)) ** 3;
}

/** χ² statistic of observed counts vs expected probabilities, pooling cells expecting < 5. */
function chiSquare(counts: number[], probs: ArrayLike<number>, draws: number): { stat: number; df: number } {
  let stat = 0;
  let cells = 0;
  let pooledObs = 0;
  let pooledExp = 0;
  for (let i = 0; i < counts.length; i++) {
    const e = probs[i] * draws;
    if (e < 5) {
      pooledObs += counts[i];
      pooledExp += e;
      continue;
    }
    stat += (counts[i] - e) ** 2 / e;
    cells++;
  }
  if (pooledExp > 0) {
    stat += (pooledObs - pooledExp) ** 2 / Math.max(pooledExp, 1e-9);
    cells++;
  }
  return { stat, df: cells - 1 };
}

describe("empirical distribution over 10 000 draws", () => {
  const draws = 10_000;
  const vocab = 12;
  const row = normal(vocab, 2024, 1.2);

  for (const s of [
    { temperature: 0.8, topK: 0, topP: 1 },
    { temperature: 1.5, topK: 4, topP: 1 },
    { temperature: 1, topK: 0, topP: 0.7 },
    { temperature: 1.2, topK: 6, topP: 0.8 },
  ]) {
    it(`matches softmax(logits/T) restricted as asked: ${JSON.stringify(s)}`, async () => {
      const g = gpu();
      const x = new Float32Array(draws * vocab);
      for (let r = 0; r < draws; r++) x.set(row, r * vocab);
      const logits = g.tensor([draws, vocab], "f32", x);
      const params = Array.from({ length: draws }, (_, r) => ({ ...s, seed: r, step: 9 }));
      const tokens = await sample(logits, params).tokens.readInts();
      const probs = refSamplingProbs(row, { ...s, seed: 0, step: 0 });
      const counts = new Array(vocab).fill(0);
      for (const t of tokens) counts[t]++;
      // Support: nothing outside the kept set, every kept token with ≥ 2 % mass seen.
      const kept = refKeptSet(row, { ...s, seed: 0, step: 0 });
      for (let i = 0; i < vocab; i++) {
        if (!kept.has(i)) expect(counts[i], `token ${i} outside the kept set`).toBe(0);
        else if (probs[i] > 0.02) expect(counts[i], `token ${i} p=${probs[i]}`).toBeGreaterThan(0);
      }
      const { stat, df } = chiSquare(counts, probs, draws);
      expect(df).toBeGreaterThan(0);
      expect(stat, `χ²=${stat} df=${df} counts ${counts}`).toBeLessThan(chiSquareCritical(df));
      logits.dispose();
    });
  }
});

describe("input validation", () => {
  it("rejects bad parameters with clear messages", () => {
    const g = gpu();
    const logits = g.tensor([2, 30]);
    expect(() => sample(g.tensor([2, 30], "u32"), {})).toThrow(/logits must be f32/);
    expect(() => sample(g.tensor([60]), {})).toThrow(/\[rows ≥ 1, vocab ≥ 1\]/);
    expect(() => sample(logits, { temperature: -1 })).toThrow(/row 0: temperature must be finite and ≥ 0/);
    expect(() => sample(logits, [{}, { topP: 0 }])).toThrow(/row 1: topP must be in \(0, 1\]/);
    expect(() => sample(logits, { topK: 1.5 })).toThrow(/topK must be an integer/);
    expect(() => sample(logits, { seed: -1 })).toThrow(/seed and step must be u32/);
    expect(() => sample(logits, [{}])).toThrow(/got 1 parameter sets for 2 rows/);
    expect(() => sample(logits, {}, { topLogprobs: 21 })).toThrow(/topLogprobs must be an integer in \[0, 20\]/);
    expect(() => sample(g.tensor([1, 5]), {}, { topLogprobs: 6 })).toThrow(/exceeds the vocabulary size 5/);
  });
});
