// logprobs.wgsl against the f64 references: log-softmax, target logprobs, entropy and their
// backward passes, over awkward shapes (1, 7, 129 rows/columns), mid-size (5000) and Qwen-size
// (151936) vocabularies, temperatures ≠ 1, large-magnitude and −inf logits; finite-difference
// gradient checks through the forward kernels; and the errors users get for bad input.
import { describe, expect, it } from "vitest";
import { acquireGpu } from "../../src/gpu/index.ts";
import {
  entropy,
  entropyBackward,
  logSoftmax,
  tokenLogprobs,
  tokenLogprobsBackward,
} from "../../src/gpu/kernels/logprobs.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { gradCheck } from "../helpers/gradcheck.ts";
import { ints, normal } from "../helpers/random.ts";
import {
  refEntropy,
  refEntropyBackward,
  refLogSoftmax,
  refTokenLogprobs,
  refTokenLogprobsBackward,
} from "../reference/logprobs.ts";

const gpu = useGpu();

/**
 * Forward tolerance: the kernel rounds z = x/T, z − max and the sums in f32. Outputs are
 * differences of values of size max|z| (plus log S ≤ log vocab), so the error is a few ulps of
 * that: 8 · 2^-23 · (max|z| + log vocab + 1). For |z| ≈ 5 that is ~1e-5; for logits of ±10^4 it
 * is ~1e-2, the resolution f32 logits carry there at all.
 */
function forwardTol(x: Float32Array, temperature: number, vocab: number): { atol: number; rtol: number } {
  let big = 0;
  for (const v of x) if (Number.isFinite(v)) big = Math.max(big, Math.abs(v / temperature));
  return { atol: 8 * 2 ** -23 * (big + Math.log(vocab) + 1), rtol: 0 };
}

interface Case {
  rows: number;
  vocab: number;
  temperature: number;
  /** Scale of the normal logits. */
  scale: number;
  offset?: number;
}

const cases: Case[] = [
  { rows: 1, vocab: 1, temperature: 1, scale: 1 },
  { rows: 7, vocab: 7, temperature: 0.7, scale: 3 },
  { rows: 129, vocab: 129, temperature: 1.5, scale: 2 },
  { rows: 7, vocab: 5000, temperature: 0.6, scale: 4 },
  { rows: 2, vocab: 151936, temperature: 0.8, scale: 3 },
  { rows: 1, vocab: 151933, temperature: 1, scale: 3 },
  // Large magnitudes: exp would overflow without the max subtraction.
  { rows: 3, vocab: 1031, temperature: 1, scale: 1000, offset: 5000 },
  { rows: 2, vocab: 4096, temperature: 0.5, scale: 200, offset: -20000 },
];

describe("forward: log-softmax, token logprobs, entropy", () => {
  for (const c of cases) {
    it(`[${c.rows}, ${c.vocab}] T=${c.temperature} scale ${c.scale}${c.offset ? ` offset ${c.offset}` : ""}`, async () => {
      const g = gpu();
      const n = c.rows * c.vocab;
      const x = normal(n, c.rows * 31 + c.vocab, c.scale).map((v) => v + (c.offset ?? 0));
      const targets = ints(c.rows, c.vocab, c.vocab);
      const logits = g.tensor([c.rows, c.vocab], "f32", x);
      const tgt = g.tensor([c.rows], "u32", targets);
      const tol = forwardTol(x, c.temperature, c.vocab);
      const opts = { temperature: c.temperature };

      const ref = refTokenLogprobs(x, targets, c.rows, c.vocab, c.temperature);
      const { logprobs, lse } = tokenLogprobs(logits, tgt, opts);
      expectClose(await logprobs.read(), ref.logprobs, tol, "logprobs");
      expectClose(await lse.read(), ref.lse, tol, "lse");
      // Entropy is a p-weighted mean of such differences: same absolute bound.
      expectClose(await entropy(logits, opts).read(), refEntropy(x, c.rows, c.vocab, c.temperature), tol, "entropy");
      if (n <= 400_000) {
        const ls = logSoftmax(logits, opts);
        expectClose(await ls.read(), refLogSoftmax(x, c.rows, c.vocab, c.temperature), tol, "logSoftmax");
        ls.dispose();
      }
      for (const t of [logits, tgt, logprobs, lse]) t.dispose();
    });
  }

  it("gives the same results with every tile shape (lavapipe's default and real GPUs')", async () => {
    const g = gpu();
    for (const [rows, vocab] of [
      [3, 5000],
      [1, 151936],
      [2, 333],
    ]) {
      const x = normal(rows * vocab, vocab, 3);
      const targets = ints(rows, 3, vocab);
      const logits = g.tensor([rows, vocab], "f32", x);
      const tgt = g.tensor([rows], "u32", targets);
      const ref = refTokenLogprobs(x, targets, rows, vocab, 0.9);
      const refH = refEntropy(x, rows, vocab, 0.9);
      const tol = forwardTol(x, 0.9, vocab);
      for (const tiling of [
        { workgroupSize: 256, items: 8 },
        { workgroupSize: 64, items: 32 },
        { workgroupSize: 32, items: 1 },
      ] as const) {
        const label = `[${rows}, ${vocab}] ${tiling.workgroupSize}×${tiling.items}`;
        const opts = { temperature: 0.9, tiling };
        const { logprobs, lse } = tokenLogprobs(logits, tgt, opts);
        expectClose(await logprobs.read(), ref.logprobs, tol, `${label} logprobs`);
        expectClose(await entropy(logits, opts).read(), refH, tol, `${label} entropy`);
        const dx = await tokenLogprobsBackward(
          g.tensor([rows], "f32", new Float32Array(rows).fill(1)),
          logits,
          tgt,
          lse,
          opts,
        ).read();
        const refDx = refTokenLogprobsBackward(new Float32Array(rows).fill(1), x, targets, rows, vocab, 0.9);
        expectClose(dx, refDx, { atol: 1e-5, rtol: 1e-5 }, `${label} backward`);
      }
    }
  });

  it("handles −inf logits (masked tokens): they get probability 0 and add no entropy", async () => {
    const g = gpu();
    const vocab = 300;
    const x = normal(2 * vocab, 9, 2);
    for (let i = 0; i < x.length; i += 3) x[i] = Number.NEGATIVE_INFINITY;
    const targets = new Uint32Array([1, vocab - 1]);
    const logits = g.tensor([2, vocab], "f32", x);
    const { logprobs } = tokenLogprobs(logits, g.tensor([2], "u32", targets));
    const tol = forwardTol(x, 1, vocab);
    expectClose(await logprobs.read(), refTokenLogprobs(x, targets, 2, vocab).logprobs, tol, "logprobs");
    expectClose(await entropy(logits).read(), refEntropy(x, 2, vocab), tol, "entropy");
    const ls = await logSoftmax(logits).read();
    expect(ls[0]).toBe(Number.NEGATIVE_INFINITY);
    expect(Number.isFinite(ls[1])).toBe(true);
    const dEnt = await entropyBackward(g.tensor([2], "f32", [1, 1]), logits).read();
    expect(dEnt[0]).toBe(0);
    expect(Array.from(dEnt).every(Number.isFinite)).toBe(true);
  });
});

describe("backward", () => {
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [7, 7, 0.7],
    [3, 129, 1.3],
    [129, 64, 1],
    [2, 5000, 0.9],
    [1, 151936, 1.2],
  ];
  for (const [rows, vocab, temperature] of shapes) {
    it(`matches the reference on [${rows}, ${vocab}] T=${temperature}`, async () => {
      const g = gpu();
      const x = normal(rows * vocab, rows + vocab, 3);
      const targets = ints(rows, vocab + 1, vocab);
      const dOut = normal(rows, rows * 7 + 1);
      const logits = g.tensor([rows, vocab], "f32", x);
      const tgt = g.tensor([rows], "u32", targets);
      const dt = g.tensor([rows], "f32", dOut);
      const opts = { temperature };
      // Gradients are (onehot − p)·d/T or p·(log p + H)·d/T with p ≤ 1: f32 rounding of p
      // (relative ~1e-6 after the exp of an f32 difference) bounds the absolute error.
      const tol = { atol: (4e-6 * Math.max(1, ...Array.from(dOut, Math.abs))) / temperature, rtol: 1e-5 };
      const { lse } = tokenLogprobs(logits, tgt, opts);
      const dx = tokenLogprobsBackward(dt, logits, tgt, lse, opts);
      expectClose(
        await dx.read(),
        refTokenLogprobsBackward(dOut, x, targets, rows, vocab, temperature),
        tol,
        "dLogits(logprob)",
      );
      const de = entropyBackward(dt, logits, opts);
      // log p reaches −40 on these rows, so p·log p loses a little more: 4× the bound.
      expectClose(
        await de.read(),
        refEntropyBackward(dOut, x, rows, vocab, temperature),
        { atol: 4 * tol.atol, rtol: 1e-5 },
        "dLogits(entropy)",
      );
      for (const t of [logits, tgt, dt, lse, dx, de]) t.dispose();
    });
  }

  it("accumulates into an existing gradient (logprob + entropy bonus)", async () => {
    const g = gpu();
    const [rows, vocab] = [5, 257];
    const x = normal(rows * vocab, 3, 2);
    const targets = ints(rows, 4, vocab);
    const dlp = normal(rows, 5);
    const dh = normal(rows, 6, 0.1);
    const logits = g.tensor([rows, vocab], "f32", x);
    const tgt = g.tensor([rows], "u32", targets);
    const { lse } = tokenLogprobs(logits, tgt, { temperature: 0.9 });
    const out = tokenLogprobsBackward(g.tensor([rows], "f32", dlp), logits, tgt, lse, { temperature: 0.9 });
    entropyBackward(g.tensor([rows], "f32", dh), logits, { temperature: 0.9, out, accumulate: true });
    const a = refTokenLogprobsBackward(dlp, x, targets, rows, vocab, 0.9);
    const b = refEntropyBackward(dh, x, rows, vocab, 0.9);
    expectClose(
      await out.read(),
      a.map((v, i) => v + b[i]),
      { atol: 2e-5, rtol: 1e-5 },
      "sum",
    );
  });

  it("passes finite-difference checks through the forward kernels", async () => {
    const g = gpu();
    for (const [rows, vocab, temperature] of [
      [2, 7, 0.8],
      [3, 129, 1.4],
      [1, 1024, 1],
    ] as const) {
      const x = normal(rows * vocab, vocab, 1.5);
      const targets = ints(rows, rows, vocab);
      const weights = normal(rows, 42);
      const tgt = g.tensor([rows], "u32", targets);
      const wt = g.tensor([rows], "f32", weights);
      const weighted = (v: Float32Array) => v.reduce((s, y, r) => s + y * weights[r], 0);
      const logits = g.tensor([rows, vocab], "f32", x);
      const { lse } = tokenLogprobs(logits, tgt, { temperature });
      const dLp = await tokenLogprobsBackward(wt, logits, tgt, lse, { temperature }).read();
      const dH = await entropyBackward(wt, logits, { temperature }).read();
      const lossLp = async (xp: Float32Array) => {
        const t = g.tensor([rows, vocab], "f32", xp);
        const r = tokenLogprobs(t, tgt, { temperature });
        const v = weighted(await r.logprobs.read());
        for (const u of [t, r.logprobs, r.lse]) u.dispose();
        return v;
      };
      const lossH = async (xp: Float32Array) => {
        const t = g.tensor([rows, vocab], "f32", xp);
        const h = entropy(t, { temperature });
        const v = weighted(await h.read());
        t.dispose();
        h.dispose();
        return v;
      };
      // Steer a few probes onto the targets, where the logprob gradient is largest.
      await gradCheck(x, dLp, lossLp, { samples: 12, seed: vocab }, `logprob [${rows}, ${vocab}]`);
      await gradCheck(x, dH, lossH, { samples: 12, seed: vocab + 1 }, `entropy [${rows}, ${vocab}]`);
      const onTarget = Array.from(targets, (t, r) => r * vocab + t);
      for (const i of onTarget) {
        const eps = 1e-2;
        const xp = Float32Array.from(x);
        xp[i] += eps;
        const up = await lossLp(xp);
        xp[i] -= 2 * eps;
        const down = await lossLp(xp);
        expect(Math.abs((up - down) / (2 * eps) - dLp[i]), `target ${i}`).toBeLessThan(2e-2 * Math.abs(dLp[i]) + 1e-3);
      }
    }
  });
});

describe("input validation", () => {
  it("rejects bad dtypes, shapes, temperatures and targets with clear messages", () => {
    const g = gpu();
    const logits = g.tensor([2, 8]);
    const tgt = g.tensor([2], "u32");
    expect(() => tokenLogprobs(g.tensor([2, 8], "u32"), tgt)).toThrow(/logits must be f32/);
    expect(() => entropy(g.tensor([16]))).toThrow(/\[rows ≥ 1, vocab ≥ 1\]/);
    expect(() => logSoftmax(logits, { temperature: 0 })).toThrow(/temperature must be a finite number > 0/);
    expect(() => tokenLogprobs(logits, g.tensor([3], "u32"))).toThrow(/targets has shape \[3\], expected \[2\]/);
    expect(() => tokenLogprobs(logits, g.tensor([2]))).toThrow(/targets must be u32/);
    const lse = g.tensor([2]);
    expect(() => tokenLogprobsBackward(g.tensor([2]), logits, tgt, lse, { accumulate: true })).toThrow(
      /accumulate needs an `out`/,
    );
    expect(() => entropyBackward(g.tensor([2]), logits, { out: g.tensor([2, 7]) })).toThrow(/out must be f32 \[2, 8\]/);
    expect(() => entropy(logits, { tiling: { workgroupSize: 100 as 64, items: 2 } })).toThrow(/tiling needs/);
  });

  it("says how many rows fit when the logits exceed one binding", async () => {
    const small = await acquireGpu({ maxBindingSize: 64 * 1024 });
    try {
      const logits = small.tensor([20, 1000]);
      expect(() => entropy(logits)).toThrow(/exceed one storage binding .*at most 16 rows/);
    } finally {
      small.destroy();
    }
  });
});
