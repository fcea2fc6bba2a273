// Training attention (attention.wgsl, and attention_sg.wgsl with rows shared across subgroup lanes)
// on packed variable-length batches: forward against the f64 reference (awkward lengths, GQA
// ratios 1/2/7, head dims 7/8/64/128/256, windows, huge logits, both kernels), backward
// against hand-derived f64 gradients, and finite-difference checks through the forward kernel.
import { describe, expect, it } from "vitest";
import type { Gpu, Tensor } from "../../src/gpu/index.ts";
import {
  type AttentionOptions,
  attention,
  attentionBackward,
  packedSeqStart,
  validateSeqStart,
} from "../../src/gpu/kernels/attention.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { gradCheck } from "../helpers/gradcheck.ts";
import { normal } from "../helpers/random.ts";
import { attentionBackwardReference, attentionReference } from "../reference/attention.ts";

const gpu = useGpu();
// A cold LLVM compile of one backward pass with head dim 128 takes ~100 s on a 2-core lavapipe
// machine (each row is a fully unrolled private array); a warm Mesa shader cache takes none.
const COLD_COMPILE_MS = 600_000;

interface Case extends AttentionOptions {
  lengths: number[];
  /** Standard deviation of q and k entries (large values give large logits). */
  qkScale?: number;
}

interface Inputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  seqStart: Uint32Array;
  tokens: number;
}

function makeInputs(c: Case, seed: number): Inputs {
  const seqStart = packedSeqStart(c.lengths);
  const tokens = seqStart.length;
  const s = c.qkScale ?? 1;
  return {
    q: normal(tokens * c.nHeads * c.headDim, seed, s),
    k: normal(tokens * c.nKvHeads * c.headDim, seed + 1, s),
    v: normal(tokens * c.nKvHeads * c.headDim, seed + 2),
    seqStart,
    tokens,
  };
}

function upload(g: Gpu, c: Case, x: Inputs): { q: Tensor; k: Tensor; v: Tensor; s: Tensor } {
  return {
    q: g.tensor([x.tokens, c.nHeads, c.headDim], "f32", x.q),
    k: g.tensor([x.tokens, c.nKvHeads, c.headDim], "f32", x.k),
    v: g.tensor([x.tokens, c.nKvHeads, c.headDim], "f32", x.v),
    s: g.tensor([x.tokens], "u32", x.seqStart),
  };
}

function label(c: Case): string {
  const variant =
    (c.headsPerInvocation ? ` ${c.headsPerInvocation} head/invocation` : "") +
    (c.sharedLoads === undefined ? "" : c.sharedLoads ? " shared loads" : " per-lane loads");
  const window = c.window ? ` window ${c.window}` : "";
  return `lengths [${c.lengths}] H${c.nHeads}/KV${c.nKvHeads} D${c.headDim}${c.scale ? ` scale ${c.scale}` : ""}${window}${variant}`;
}

const forwardCases: Case[] = [
  { lengths: [1], nHeads: 2, nKvHeads: 1, headDim: 8 },
  { lengths: [7], nHeads: 4, nKvHeads: 2, headDim: 64 },
  { lengths: [3, 129, 1], nHeads: 14, nKvHeads: 2, headDim: 64 },
  { lengths: [3, 129, 1], nHeads: 2, nKvHeads: 2, headDim: 128 },
  { lengths: [5, 1, 9], nHeads: 4, nKvHeads: 2, headDim: 7 },
  { lengths: [17, 6], nHeads: 3, nKvHeads: 3, headDim: 8, scale: 0.7 },
  // The one-head-per-invocation variant (the GPU default) on the shape software picks 7 for.
  { lengths: [3, 129, 1], nHeads: 14, nKvHeads: 2, headDim: 64, headsPerInvocation: 1 },
  // Sliding windows (Gemma 3's local layers, Mistral): shorter than some sequences, equal to one,
  // longer than all, and a window of 1 (each token sees only itself).
  { lengths: [3, 129, 1], nHeads: 4, nKvHeads: 2, headDim: 64, window: 7 },
  { lengths: [7, 9, 1], nHeads: 4, nKvHeads: 1, headDim: 7, window: 7 },
  { lengths: [5, 2], nHeads: 2, nKvHeads: 2, headDim: 8, window: 1 },
  { lengths: [6], nHeads: 2, nKvHeads: 1, headDim: 8, window: 64 },
  { lengths: [129], nHeads: 14, nKvHeads: 2, headDim: 64, window: 16, headsPerInvocation: 1 },
  // Gemma 3 1B's heads: head_dim 256, 4 query heads on one kv head, windowed.
  { lengths: [9, 1, 4], nHeads: 4, nKvHeads: 1, headDim: 256, window: 7 },
  // Both kernels whatever the adapter's default: attention_sg.wgsl (rows shared by 8 lanes of a
  // subgroup; groups straddle sequences and the padded end) and attention.wgsl (per-lane loads).
  { lengths: [3, 129, 1], nHeads: 14, nKvHeads: 2, headDim: 64, sharedLoads: true },
  { lengths: [3, 129, 1], nHeads: 14, nKvHeads: 2, headDim: 64, sharedLoads: false },
  { lengths: [5, 1, 9], nHeads: 4, nKvHeads: 2, headDim: 7, window: 3, sharedLoads: false },
];

describe("attention forward", () => {
  for (const [n, c] of forwardCases.entries()) {
    it(`matches the f64 reference: ${label(c)}`, { timeout: COLD_COMPILE_MS }, async () => {
      const g = gpu();
      const x = makeInputs(c, 100 + n);
      const t = upload(g, c, x);
      const { out, lse } = attention(t.q, t.k, t.v, t.s, c);
      const ref = attentionReference(x.q, x.k, x.v, x.seqStart, c);
      // f32 dot products of length ≤ 128 and a convex combination of O(1) values: errors are a
      // few ulps of the O(1) outputs, so 2e-5 absolute is ~100 ulps of headroom.
      expectClose(await out.read(), ref.out, { atol: 2e-5, rtol: 1e-4 }, `out ${label(c)}`);
      expectClose(await lse.read(), ref.lse, { atol: 2e-5, rtol: 1e-5 }, `lse ${label(c)}`);
      for (const u of [...Object.values(t), out, lse]) u.dispose();
    });
  }

  it("stays finite and exact with huge logits (|scaled score| in the hundreds)", async () => {
    const g = gpu();
    const c: Case = { lengths: [40, 3], nHeads: 4, nKvHeads: 2, headDim: 64, qkScale: 12 };
    const x = makeInputs(c, 7);
    const t = upload(g, c, x);
    const { out, lse } = attention(t.q, t.k, t.v, t.s, c);
    const ref = attentionReference(x.q, x.k, x.v, x.seqStart, c);
    let maxLse = 0;
    for (const l of ref.lse) maxLse = Math.max(maxLse, Math.abs(l));
    expect(maxLse, "the test must actually produce logits that overflow exp()").toBeGreaterThan(100);
    const got = await out.read();
    expect(got.every(Number.isFinite)).toBe(true);
    // Scores near ±1000 carry f32 rounding of ~1e-4 absolute, which moves near-tied softmax
    // weights by the same relative amount: 2e-3 absolute on O(1) outputs.
    expectClose(got, ref.out, { atol: 2e-3, rtol: 1e-3 }, "out (huge logits)");
    expectClose(await lse.read(), ref.lse, { atol: 1e-3, rtol: 1e-5 }, "lse (huge logits)");
  });

  it("masks keys outside the window: changing them leaves the output untouched", async () => {
    const g = gpu();
    const c: Case = { lengths: [10], nHeads: 2, nKvHeads: 1, headDim: 8, window: 4 };
    const x = makeInputs(c, 5);
    const t = upload(g, c, x);
    const before = await attention(t.q, t.k, t.v, t.s, c).out.read();
    const k2 = Float32Array.from(x.k);
    const v2 = Float32Array.from(x.v);
    for (let i = 0; i < 8; i++) {
      k2[i] += 5; // token 0's key and value: outside the window of tokens 4..9
      v2[i] -= 3;
    }
    t.k.write(k2);
    t.v.write(v2);
    const after = await attention(t.q, t.k, t.v, t.s, c).out.read();
    const seen = 4 * 2 * 8;
    expect(Array.from(after.subarray(seen))).toEqual(Array.from(before.subarray(seen)));
    expect(Array.from(after.subarray(0, seen))).not.toEqual(Array.from(before.subarray(0, seen)));
  });

  it("keeps sequences apart: changing one sequence leaves the others' outputs untouched", async () => {
    const g = gpu();
    const c: Case = { lengths: [4, 6], nHeads: 2, nKvHeads: 1, headDim: 8 };
    const x = makeInputs(c, 3);
    const t = upload(g, c, x);
    const before = await attention(t.q, t.k, t.v, t.s, c).out.read();
    const k2 = Float32Array.from(x.k);
    for (let i = 0; i < 4 * 8; i++) k2[i] += 5; // first sequence's keys only
    t.k.write(k2);
    const after = await attention(t.q, t.k, t.v, t.s, c).out.read();
    const firstSeq = 4 * 2 * 8;
    expect(Array.from(after.subarray(firstSeq))).toEqual(Array.from(before.subarray(firstSeq)));
    expect(Array.from(after.subarray(0, firstSeq))).not.toEqual(Array.from(before.subarray(0, firstSeq)));
  });
});

const backwardCases: Case[] = [
  { lengths: [1], nHeads: 2, nKvHeads: 1, headDim: 8 },
  { lengths: [3, 129, 1], nHeads: 14, nKvHeads: 2, headDim: 64 },
  { lengths: [9, 33], nHeads: 4, nKvHeads: 4, headDim: 128 },
  { lengths: [5, 1, 9], nHeads: 4, nKvHeads: 2, headDim: 7, scale: 0.5 },
  { lengths: [3, 129, 1], nHeads: 14, nKvHeads: 2, headDim: 64, headsPerInvocation: 1 },
  { lengths: [3, 129, 1], nHeads: 4, nKvHeads: 2, headDim: 64, window: 7 },
  { lengths: [7, 9, 1], nHeads: 4, nKvHeads: 1, headDim: 7, window: 7, scale: 0.5 },
  { lengths: [5, 2], nHeads: 2, nKvHeads: 2, headDim: 8, window: 1 },
  { lengths: [9, 1, 4], nHeads: 4, nKvHeads: 1, headDim: 256, window: 7 },
  { lengths: [3, 129, 1], nHeads: 14, nKvHeads: 2, headDim: 64, sharedLoads: true },
  { lengths: [3, 129, 1], nHeads: 14, nKvHeads: 2, headDim: 64, sharedLoads: false },
  { lengths: [5, 1, 9], nHeads: 4, nKvHeads: 2, headDim: 7, window: 3, sharedLoads: false },
];

describe("attention backward", () => {
  for (const [n, c] of backwardCases.entries()) {
    it(`matches hand-derived f64 gradients: ${label(c)}`, { timeout: COLD_COMPILE_MS }, async () => {
      const g = gpu();
      const x = makeInputs(c, 200 + n);
      const t = upload(g, c, x);
      const dOutData = normal(x.tokens * c.nHeads * c.headDim, 300 + n);
      const dOut = g.tensor([x.tokens, c.nHeads, c.headDim], "f32", dOutData);
      const { out, lse } = attention(t.q, t.k, t.v, t.s, c);
      const grads = attentionBackward(dOut, t.q, t.k, t.v, out, lse, t.s, c);
      const ref = attentionBackwardReference(dOutData, x.q, x.k, x.v, x.seqStart, c);
      // Sums of up to (129 keys × 7 heads) f32 products of O(1) terms: absolute error grows like
      // √n·ulp·|term|, well under 1e-4 for these sizes; 1e-3 relative covers larger gradients.
      const tol = { atol: 1e-4, rtol: 1e-3 };
      expectClose(await grads.dq.read(), ref.dq, tol, `dq ${label(c)}`);
      expectClose(await grads.dk.read(), ref.dk, tol, `dk ${label(c)}`);
      expectClose(await grads.dv.read(), ref.dv, tol, `dv ${label(c)}`);
    });
  }

  const small: Case[] = [
    { lengths: [3, 4], nHeads: 4, nKvHeads: 2, headDim: 8 },
    { lengths: [5], nHeads: 2, nKvHeads: 1, headDim: 7 },
    { lengths: [7, 3], nHeads: 4, nKvHeads: 2, headDim: 8, window: 3 },
    { lengths: [3, 4], nHeads: 4, nKvHeads: 2, headDim: 8, sharedLoads: false },
  ];
  for (const c of small) {
    it(`passes finite-difference checks for q, k and v: ${label(c)}`, async () => {
      const g = gpu();
      const x = makeInputs(c, 400);
      const t = upload(g, c, x);
      const r = normal(x.tokens * c.nHeads * c.headDim, 401);
      const dOut = g.tensor([x.tokens, c.nHeads, c.headDim], "f32", r);
      const { out, lse } = attention(t.q, t.k, t.v, t.s, c);
      const grads = attentionBackward(dOut, t.q, t.k, t.v, out, lse, t.s, c);
      // Loss Σ out·R through the GPU forward kernel with one input replaced.
      const lossWith = (which: "q" | "k" | "v") => async (data: Float32Array) => {
        const probe = g.tensor(t[which].shape, "f32", data);
        const ins = { ...t, [which]: probe };
        const res = attention(ins.q, ins.k, ins.v, ins.s, c);
        const o = await res.out.read();
        probe.dispose();
        res.out.dispose();
        res.lse.dispose();
        let loss = 0;
        for (let i = 0; i < o.length; i++) loss += o[i] * r[i];
        return loss;
      };
      const opts = { samples: 24, eps: 1e-2, tol: 2e-2 };
      await gradCheck(x.q, await grads.dq.read(), lossWith("q"), opts, `dq ${label(c)}`);
      await gradCheck(x.k, await grads.dk.read(), lossWith("k"), opts, `dk ${label(c)}`);
      await gradCheck(x.v, await grads.dv.read(), lossWith("v"), opts, `dv ${label(c)}`);
    });
  }
});

describe("attention input checks", () => {
  it("rejects bad head configurations and shapes with clear messages", () => {
    const g = gpu();
    const q = g.tensor([3, 4, 8]);
    const k = g.tensor([3, 2, 8]);
    const s = g.tensor([3], "u32", packedSeqStart([3]));
    const opts = { nHeads: 4, nKvHeads: 2, headDim: 8 };
    expect(() => attention(q, k, k, s, { ...opts, nKvHeads: 3 })).toThrow(/must divide nHeads/);
    expect(() => attention(q, k, k, s, { ...opts, headDim: 512 })).toThrow(/exceeds the supported 256/);
    expect(() => attention(q, g.tensor([3, 1, 8]), k, s, opts)).toThrow(
      /k has shape \[3, 1, 8\], expected \[3, 2, 8\]/,
    );
    expect(() => attention(q, k, k, g.tensor([3]), opts)).toThrow(/seqStart must be u32/);
    expect(() => attention(q, k, k, s, { ...opts, scale: Number.NaN })).toThrow(/finite/);
    expect(() => attention(q, k, k, s, { ...opts, headsPerInvocation: 3 })).toThrow(/must divide the group size 2/);
    expect(() => attention(q, k, k, s, { ...opts, window: 0 })).toThrow(/window must be a positive integer/);
    expect(() => attention(q, k, k, s, { ...opts, window: 2.5 })).toThrow(/window must be a positive integer/);
    const { out } = attention(q, k, k, s, opts);
    expect(() => attentionBackward(out, q, k, k, out, g.tensor([3, 4]), s, opts)).toThrow(/lse has shape/);
  });

  it("builds and validates packed seqStart arrays", () => {
    expect(Array.from(packedSeqStart([2, 1, 3]))).toEqual([0, 0, 2, 3, 3, 3]);
    expect(() => packedSeqStart([2, 0])).toThrow(/≥ 1/);
    expect(() => validateSeqStart([0, 0, 1])).toThrow(/seqStart\[2\] = 1/);
    expect(() => validateSeqStart([1])).toThrow(/seqStart\[0\]/);
    validateSeqStart(packedSeqStart([4, 1, 2]));
  });
});
