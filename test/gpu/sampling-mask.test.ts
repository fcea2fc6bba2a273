// sampling.wgsl with per-row token masks (structured output) against the f64 reference: the
// token, the masked and unmasked logprobs and the top-N alternatives on random shapes and masks
// (vocab 1, 7, 33, 129, 5000), masked and unmasked rows mixed in one call, nothing outside the mask
// ever drawn, the masked distribution over 10 000 draws, and the mask checks of the launcher.
import { describe, expect, it } from "vitest";
import { maskWords, sample, samplingWorkgroupSize } from "../../src/gpu/kernels/sampling.ts";
import { mulberry32 } from "../../src/random.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { normal } from "../helpers/random.ts";
import {
  refAllowed,
  refMaskRow,
  refRowLogprobs,
  refSampleToken,
  refSamplingProbs,
  refTopLogprobs,
} from "../reference/sampling.ts";

const gpu = useGpu();
const LOGPROB_TOL = { atol: 2e-5, rtol: 1e-6 };

/** A random mask allowing each token with probability `density`, and at least one token. */
function randomMask(vocab: number, density: number, seed: number): Uint32Array {
  const rand = mulberry32(seed);
  const mask = new Uint32Array(maskWords(vocab));
  const set = (c: number) => {
    mask[c >>> 5] |= 1 << (c & 31);
  };
  for (let c = 0; c < vocab; c++) if (rand() < density) set(c);
  set(Math.floor(rand() * vocab));
  return mask;
}

const settings = [
  { temperature: 0, topK: 0, topP: 1 },
  { temperature: 0.8, topK: 0, topP: 1 },
  { temperature: 1.3, topK: 5, topP: 1 },
  { temperature: 0.7, topK: 0, topP: 0.9 },
  { temperature: 1, topK: 3, topP: 0.8 },
];

describe("masked rows match the reference", () => {
  for (const [rows, vocab] of [
    [1, 1],
    [4, 7],
    [5, 33],
    [6, 129],
    [3, 5000],
  ] as const) {
    it(`[${rows}, ${vocab}]: tokens, masked and unmasked logprobs, top-N`, async () => {
      const g = gpu();
      const x = normal(rows * vocab, rows * 31 + vocab, 2);
      const logits = g.tensor([rows, vocab], "f32", x);
      // Row 0 unmasked; the others from one allowed token to most of the vocabulary.
      const densities = [0, 0.02, 0.5, 0.9, 0.2, 0.05];
      const masks = Array.from({ length: rows }, (_, r) =>
        r === 0 && rows > 1 ? null : randomMask(vocab, densities[r], 100 + r),
      );
      const n = Math.min(6, vocab);
      for (const s of settings) {
        for (const step of [0, 5]) {
          const params = Array.from({ length: rows }, (_, r) => ({ ...s, seed: 7 + r, step }));
          const res = sample(logits, params, { topLogprobs: n, masks });
          const tokens = await res.tokens.readInts();
          const logprobs = await res.logprobs.read();
          const unmasked = await res.unmaskedLogprobs!.read();
          const topTokens = await res.topTokens!.readInts();
          const topLps = await res.topLogprobs!.read();
          for (let r = 0; r < rows; r++) {
            const raw = x.subarray(r * vocab, (r + 1) * vocab);
            const mask = masks[r];
            const row = mask ? refMaskRow(raw, mask) : raw;
            const label = `row ${r} ${JSON.stringify(s)} step ${step}`;
            expect(tokens[r], label).toBe(refSampleToken(row, params[r], samplingWorkgroupSize(vocab)));
            if (mask) expect(refAllowed(mask, tokens[r]), label).toBe(true);
            expectClose([logprobs[r]], [refRowLogprobs(row, s.temperature)[tokens[r]]], LOGPROB_TOL, `${label} lp`);
            expectClose([unmasked[r]], [refRowLogprobs(raw, s.temperature)[tokens[r]]], LOGPROB_TOL, `${label} raw`);
            const top = refTopLogprobs(row, s.temperature, n);
            expect(Array.from(topTokens.subarray(r * n, (r + 1) * n)), label).toEqual(top.tokens);
            expectClose(topLps.subarray(r * n, (r + 1) * n), top.logprobs, LOGPROB_TOL, `${label} top`);
          }
          for (const t of [res.tokens, res.logprobs, res.unmaskedLogprobs!, res.topTokens!, res.topLogprobs!]) {
            t.dispose();
          }
        }
      }
      logits.dispose();
      // vocab ≥ 2048 compiles the kernel's 256-wide variant: minutes on a busy lavapipe.
    }, 600_000);
  }

  it("an unmasked row samples the same token with or without masks on other rows", async () => {
    const g = gpu();
    const vocab = 300;
    const x = normal(3 * vocab, 9, 1);
    const logits = g.tensor([3, vocab], "f32", x);
    const params = [0, 1, 2].map((r) => ({ temperature: 1, topP: 0.95, seed: 40 + r, step: 2 }));
    const plain = await sample(logits, params).tokens.readInts();
    const mixed = await sample(logits, params, {
      masks: [randomMask(vocab, 0.1, 3), null, randomMask(vocab, 0.3, 4)],
    }).tokens.readInts();
    expect(mixed[1]).toBe(plain[1]);
  });
});

describe("the masked distribution over 10 000 draws", () => {
  it("never draws a masked token and matches softmax over the allowed set", async () => {
    const g = gpu();
    const draws = 10_000;
    const vocab = 40;
    const row = normal(vocab, 77, 1.5);
    const mask = randomMask(vocab, 0.25, 8);
    const x = new Float32Array(draws * vocab);
    for (let r = 0; r < draws; r++) x.set(row, r * vocab);
    const logits = g.tensor([draws, vocab], "f32", x);
    const params = Array.from({ length: draws }, (_, r) => ({ temperature: 1.1, seed: r, step: 1 }));
    const tokens = await sample(logits, params, { masks: Array(draws).fill(mask) }).tokens.readInts();
    const probs = refSamplingProbs(refMaskRow(row, mask), { temperature: 1.1, topK: 0, topP: 1, seed: 0, step: 0 });
    const counts = new Array(vocab).fill(0);
    for (const t of tokens) counts[t]++;
    let stat = 0;
    let df = -1;
    for (let c = 0; c < vocab; c++) {
      if (!refAllowed(mask, c)) {
        expect(counts[c], `masked token ${c}`).toBe(0);
        continue;
      }
      const e = probs[c] * draws;
      if (e < 5) continue;
      stat += (counts[c] - e) ** 2 / e;
      df++;
    }
    expect(df).toBeGreaterThan(1);
    // χ² upper quantile at 1e-4 (Wilson–Hilferty), as in sampling.test.ts.
    const k = 2 / (9 * df);
    expect(stat).toBeLessThan(df * (1 - k + 3.719 * Math.sqrt(k)) ** 3);
    logits.dispose();
  });
});

describe("mask validation", () => {
  it("rejects masks of the wrong count or size, and masks that allow nothing", () => {
    const g = gpu();
    const logits = g.tensor([2, 40]);
    const ok = randomMask(40, 0.5, 1);
    expect(() => sample(logits, {}, { masks: [ok] })).toThrow(/got 1 masks for 2 rows/);
    expect(() => sample(logits, {}, { masks: [ok, new Uint32Array(1)] })).toThrow(/row 1's mask has 1 words/);
    // Bits past the vocabulary do not count as allowed tokens.
    expect(() => sample(logits, {}, { masks: [null, Uint32Array.of(0, 0xffffff00)] })).toThrow(/allows no token/);
  });
});
