// The LM head by vocabulary blocks (src/gpu/kernels/lmhead.ts) against the f64 reference and
// against the materialised-logits path it replaces: awkward vocabularies (1, 7, 129 and blocks
// that end off the vec4/tile grid), temperatures ≠ 1, a sharded head, an f16 head; finite-
// difference gradients for hidden and W; peak memory that does not grow with the vocabulary.
import { describe, expect, it } from "vitest";
import { acquireGpu, f16ToF32, f32ToF16, type Gpu, ShardedMatrix, type Tensor } from "../../src/gpu/index.ts";
import { headBackwardByBlocks, headBlocks, headLogprobsByBlocks } from "../../src/gpu/kernels/lmhead.ts";
import { entropy, tokenLogprobs } from "../../src/gpu/kernels/logprobs.ts";
import { matmul } from "../../src/gpu/kernels/matmul.ts";
import { quantizeInt8Rows, uploadInt8, uploadInt8Sharded } from "../../src/gpu/kernels/quant.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { gradCheck } from "../helpers/gradcheck.ts";
import { ints, normal } from "../helpers/random.ts";
import { refHeadBackward, refHeadLogprobs } from "../reference/lmhead.ts";
import { refDequantInt8 } from "../reference/quant.ts";

const gpu = useGpu();

interface Case {
  rows: number;
  dim: number;
  vocab: number;
  temperature: number;
  blockCols?: number;
}

// 129 with at most 64 columns per block: blocks of 44, 44 and 41 (the last one scalar, not
// vec4). 1001 with 96: ten vec4 blocks and a 41-column scalar one, each its own partials slots.
const CASES: Case[] = [
  { rows: 3, dim: 8, vocab: 1, temperature: 1 },
  { rows: 7, dim: 12, vocab: 7, temperature: 0.7 },
  { rows: 1, dim: 16, vocab: 129, temperature: 1, blockCols: 64 },
  { rows: 129, dim: 16, vocab: 129, temperature: 1.3 },
  { rows: 9, dim: 20, vocab: 1001, temperature: 1, blockCols: 96 },
];

function setup(g: Gpu, c: Case, seed: number) {
  const hidden = normal(c.rows * c.dim, seed, 1);
  const w = normal(c.vocab * c.dim, seed + 1, 1 / Math.sqrt(c.dim));
  const targets = ints(c.rows, seed + 2, c.vocab);
  return {
    hidden,
    w,
    targets,
    hiddenT: g.tensor([c.rows, c.dim], "f32", hidden),
    wT: g.tensor([c.vocab, c.dim], "f32", w),
    targetsT: g.tensor([c.rows], "u32", targets),
  };
}

// Logits here are O(3); outputs are differences of values of that size plus log vocab, rounded
// in f32 through a dim-long dot product: a few 1e-6 absolute.
const TOL = { atol: 3e-5, rtol: 1e-5 };

describe("headLogprobsByBlocks", () => {
  for (const c of CASES) {
    it(`matches the reference and the materialised path: ${JSON.stringify(c)}`, async () => {
      const g = gpu();
      const s = setup(g, c, c.rows * 31 + c.vocab);
      const opts = { temperature: c.temperature, blockCols: c.blockCols, entropy: true };
      const r = headLogprobsByBlocks(s.hiddenT, s.wT, s.targetsT, opts);
      const ref = refHeadLogprobs(s.hidden, s.w, s.targets, c);
      expectClose(await r.logprobs.read(), ref.logprobs, TOL, "logprobs");
      expectClose(await r.lse.read(), ref.lse, TOL, "lse");
      expectClose(await (r.entropy as Tensor).read(), ref.entropy, TOL, "entropy");
      // The path it replaces: all logits, then the row kernels.
      const logits = matmul(s.hiddenT, s.wT, { transB: true });
      const old = tokenLogprobs(logits, s.targetsT, { temperature: c.temperature });
      const oldH = entropy(logits, { temperature: c.temperature });
      expectClose(await r.logprobs.read(), await old.logprobs.read(), TOL, "logprobs vs old path");
      expectClose(await r.lse.read(), await old.lse.read(), TOL, "lse vs old path");
      expectClose(await (r.entropy as Tensor).read(), await oldH.read(), TOL, "entropy vs old path");
    });

    it(`backward matches the reference: ${JSON.stringify(c)}`, async () => {
      const g = gpu();
      const s = setup(g, c, c.rows * 17 + c.vocab);
      const dLp = normal(c.rows, 99);
      const dH = normal(c.rows, 98);
      const opts = { temperature: c.temperature, blockCols: c.blockCols };
      const fwd = headLogprobsByBlocks(s.hiddenT, s.wT, s.targetsT, { ...opts, entropy: true });
      const dHead = g.zeros([c.vocab, c.dim]);
      const dHidden = headBackwardByBlocks(s.hiddenT, s.wT, s.targetsT, fwd.lse, g.tensor([c.rows], "f32", dLp), {
        ...opts,
        entropy: { value: fwd.entropy as Tensor, grad: g.tensor([c.rows], "f32", dH) },
        dHead,
      });
      const ref = refHeadBackward(s.hidden, s.w, s.targets, dLp, dH, c);
      expectClose(await dHidden.read(), ref.dHidden, { atol: 1e-4, rtol: 1e-4 }, "dHidden");
      expectClose(await dHead.read(), ref.dW, { atol: 1e-4, rtol: 1e-4 }, "dHead");
    });
  }

  it("passes finite-difference gradient checks for hidden and W", async () => {
    const g = gpu();
    const c: Case = { rows: 5, dim: 12, vocab: 129, temperature: 0.8, blockCols: 32 };
    const s = setup(g, c, 5);
    const rLp = normal(c.rows, 6);
    const rH = normal(c.rows, 7);
    const opts = { temperature: c.temperature, blockCols: c.blockCols };
    const loss = async (hidden: Float32Array, w: Float32Array) => {
      const h = g.tensor([c.rows, c.dim], "f32", hidden);
      const wt = g.tensor([c.vocab, c.dim], "f32", w);
      const r = headLogprobsByBlocks(h, wt, s.targetsT, { ...opts, entropy: true });
      const [lp, ent] = [await r.logprobs.read(), await (r.entropy as Tensor).read()];
      for (const t of [h, wt, r.logprobs, r.lse, r.entropy as Tensor]) t.dispose();
      let total = 0;
      for (let i = 0; i < c.rows; i++) total += rLp[i] * lp[i] + rH[i] * ent[i];
      return total;
    };
    const fwd = headLogprobsByBlocks(s.hiddenT, s.wT, s.targetsT, { ...opts, entropy: true });
    const dHead = g.zeros([c.vocab, c.dim]);
    const dHidden = headBackwardByBlocks(s.hiddenT, s.wT, s.targetsT, fwd.lse, g.tensor([c.rows], "f32", rLp), {
      ...opts,
      entropy: { value: fwd.entropy as Tensor, grad: g.tensor([c.rows], "f32", rH) },
      dHead,
    });
    await gradCheck(s.hidden, await dHidden.read(), (x) => loss(x, s.w), { samples: 12 }, "dHidden");
    await gradCheck(s.w, await dHead.read(), (x) => loss(s.hidden, x), { samples: 12 }, "dHead");
  });

  it("reads a head sharded over bindings, blocks cut inside each shard", async () => {
    const small = await acquireGpu({ maxBindingSize: 64 * 1024 });
    try {
      const c: Case = { rows: 6, dim: 64, vocab: 300, temperature: 1 };
      const hidden = normal(c.rows * c.dim, 1);
      const w = normal(c.vocab * c.dim, 2, 0.125);
      const targets = ints(c.rows, 3, c.vocab);
      const head = ShardedMatrix.upload(small, c.vocab, c.dim, w);
      expect(head.shards.length).toBeGreaterThan(1);
      const h = small.tensor([c.rows, c.dim], "f32", hidden);
      const t = small.tensor([c.rows], "u32", targets);
      const { blocks } = headBlocks(head, c.rows, { blockCols: 100 });
      for (const b of blocks) expect(b.cols).toBeLessThanOrEqual(100);
      // Blocks tile the vocabulary exactly once, none straddling a shard boundary.
      expect(blocks.map((b) => b.col0)).toEqual(
        blocks.map((_, i) => blocks.slice(0, i).reduce((n, x) => n + x.cols, 0)),
      );
      expect(blocks.reduce((n, b) => n + b.cols, 0)).toBe(c.vocab);
      for (const s of head.shards) {
        for (const b of blocks) expect(b.col0 < s.rowStart && b.col0 + b.cols > s.rowStart).toBe(false);
      }
      const r = headLogprobsByBlocks(h, head, t, { blockCols: 100, entropy: true });
      const ref = refHeadLogprobs(hidden, w, targets, c);
      expectClose(await r.logprobs.read(), ref.logprobs, TOL, "logprobs");
      expectClose(await (r.entropy as Tensor).read(), ref.entropy, TOL, "entropy");
      const dLp = normal(c.rows, 4);
      const dHidden = headBackwardByBlocks(h, head, t, r.lse, small.tensor([c.rows], "f32", dLp), { blockCols: 100 });
      const refB = refHeadBackward(hidden, w, targets, dLp, null, c);
      expectClose(await dHidden.read(), refB.dHidden, { atol: 1e-4, rtol: 1e-4 }, "dHidden");
    } finally {
      small.destroy();
    }
  });

  it("reads an f16 head like its f32 widening", async () => {
    const g = gpu();
    if (!g.features.shaderF16) return;
    const c: Case = { rows: 4, dim: 16, vocab: 77, temperature: 1 };
    const s = setup(g, c, 11);
    const widened = s.w.map((v) => f16ToF32(f32ToF16(v)));
    const head = g.tensor([c.vocab, c.dim], "f16", s.w);
    const r = headLogprobsByBlocks(s.hiddenT, head, s.targetsT, { entropy: true });
    const ref = refHeadLogprobs(s.hidden, widened, s.targets, c);
    expectClose(await r.logprobs.read(), ref.logprobs, TOL, "logprobs");
  });

  // Blocks of an int8 head start where both its packed rows and its scales may be bound (256-byte
  // alignment: every 64 rows), and each is widened just before its GEMMs.
  for (const c of [
    { rows: 5, dim: 16, vocab: 300, temperature: 1, blockCols: 100 },
    { rows: 9, dim: 132, vocab: 129, temperature: 0.8 },
    { rows: 2, dim: 4, vocab: 1, temperature: 1 },
  ] as Case[]) {
    it(`reads an int8 head like its widening, forward and backward: ${JSON.stringify(c)}`, async () => {
      const g = gpu();
      const s = setup(g, c, 23 + c.vocab);
      const { packed, scales } = quantizeInt8Rows(s.w, c.vocab, c.dim);
      const widened = refDequantInt8(packed, scales, c.vocab, c.dim);
      const head = uploadInt8(g, s.w, c.vocab, c.dim);
      const opts = { temperature: c.temperature, blockCols: c.blockCols };
      const { blocks } = headBlocks(head, c.rows, opts);
      const align = g.limits.minStorageBufferOffsetAlignment;
      expect(blocks.every((b) => (b.col0 * 4) % align === 0 && (b.col0 * c.dim) % align === 0)).toBe(true);
      expect(blocks.reduce((n, b) => n + b.cols, 0)).toBe(c.vocab);
      const r = headLogprobsByBlocks(s.hiddenT, head, s.targetsT, { ...opts, entropy: true });
      const ref = refHeadLogprobs(s.hidden, widened, s.targets, c);
      expectClose(await r.logprobs.read(), ref.logprobs, TOL, "logprobs");
      expectClose(await (r.entropy as Tensor).read(), ref.entropy, TOL, "entropy");
      const dLp = normal(c.rows, 5);
      const dHidden = headBackwardByBlocks(s.hiddenT, head, s.targetsT, r.lse, g.tensor([c.rows], "f32", dLp), opts);
      const refB = refHeadBackward(s.hidden, widened, s.targets, dLp, new Float64Array(c.rows), c);
      expectClose(await dHidden.read(), refB.dHidden, { atol: 1e-4, rtol: 1e-4 }, "dHidden");
      // Row shards of 128 (blocks cut inside each) give the same numbers.
      const sharded = uploadInt8Sharded(g, s.w, c.vocab, c.dim, 128 * c.dim);
      const rs = headLogprobsByBlocks(s.hiddenT, sharded, s.targetsT, { ...opts, entropy: true });
      expectClose(await rs.logprobs.read(), ref.logprobs, TOL, "logprobs, sharded");
      const dHs = headBackwardByBlocks(s.hiddenT, sharded, s.targetsT, rs.lse, g.tensor([c.rows], "f32", dLp), opts);
      expectClose(await dHs.read(), refB.dHidden, { atol: 1e-4, rtol: 1e-4 }, "dHidden, sharded");
      expect(() =>
        headBackwardByBlocks(s.hiddenT, head, s.targetsT, r.lse, g.tensor([c.rows], "f32", dLp), {
          ...opts,
          dHead: g.zeros([c.vocab, c.dim]),
        }),
      ).toThrow(/frozen/);
    });
  }

  it("holds one block of logits at a time: peak memory does not scale with the vocabulary", async () => {
    const g = await acquireGpu();
    try {
      const rows = 64;
      const dim = 16;
      const vocab = 65536;
      const hidden = g.tensor([rows, dim], "f32", normal(rows * dim, 1));
      const head = g.tensor([vocab, dim], "f32", normal(vocab * dim, 2, 0.25));
      const targets = g.tensor([rows], "u32", ints(rows, 3, vocab));
      await g.sync();
      const before = g.pool.stats().peakBytes;
      const r = headLogprobsByBlocks(hidden, head, targets, { blockCols: 2048, entropy: true });
      await r.logprobs.read();
      const grown = g.pool.stats().peakBytes - before;
      // Materialised logits would be rows × vocab × 4 B = 16 MiB; one block is 512 KiB.
      expect(grown).toBeLessThan(rows * 2048 * 4 * 4);
      expect(grown).toBeLessThan((rows * vocab * 4) / 8);
    } finally {
      g.destroy();
    }
  });

  it("rejects mismatched shapes clearly", () => {
    const g = gpu();
    const h = g.tensor([2, 8]);
    const w = g.tensor([5, 4]);
    expect(() => headLogprobsByBlocks(h, w, g.tensor([2], "u32"))).toThrow(/head has 4 columns, hidden has 8/);
    expect(() => headLogprobsByBlocks(h, g.tensor([5, 8]), g.tensor([3], "u32"))).toThrow(/targets has shape \[3\]/);
    expect(() => headLogprobsByBlocks(h, g.tensor([5, 8]), g.tensor([2]))).toThrow(/targets must be u32/);
  });
});
