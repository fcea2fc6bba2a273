// Optimizer kernels against f64 references: several AdamW steps with bias correction and
// weight decay over tensors of awkward sizes (scalar and vec4 paths), the global grad norm,
// clipping, scaling, zeroing and non-finite detection, all read back only to check.
// Shaders covered: adamw.wgsl, gradnorm.wgsl (norm², clip, scale, non-finite count).
import { describe, expect, it } from "vitest";
import {
  adamw,
  clipGradNorm,
  gradNormSquared,
  nonFiniteCount,
  scaleGrads,
  zeroGrads,
} from "../../src/gpu/kernels/optimizer.ts";
import type { Tensor } from "../../src/gpu/tensor.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { normal } from "../helpers/random.ts";
import { refAdamWStep, refClipGradNorm, refNormSquared } from "../reference/optimizer.ts";

const gpu = useGpu();

// Odd sizes take the scalar path, multiples of 4 the vec4 path; 300 000 spans many workgroups.
const sizes = [1, 7, 129, 4096, 70001, 300_000];

/** Gradient scale of tensor i: 0.01, 0.1 or 1. */
const gradScale = (i: number): number => 10 ** ((i % 3) - 2);

function upload(data: Float32Array[]): Tensor[] {
  return data.map((d) => gpu().tensor([d.length], "f32", d));
}

describe("adamw", () => {
  it("matches PyTorch AdamW semantics over 6 steps (bias correction, decoupled decay)", async () => {
    const g = gpu();
    const hyper = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
    const init = sizes.map((n, i) => normal(n, i + 1));
    const groups = init.map((p) => ({
      param: g.tensor([p.length], "f32", p),
      grad: g.tensor([p.length]),
      m: g.zeros([p.length]),
      v: g.zeros([p.length]),
    }));
    const ref = init.map((p) => ({
      param: Float64Array.from(p),
      m: new Float64Array(p.length),
      v: new Float64Array(p.length),
    }));
    for (let step = 1; step <= 6; step++) {
      // Fresh gradients each step, of mixed scale (Adam normalises them away).
      const grads = sizes.map((n, i) => normal(n, 100 * step + i, gradScale(i)));
      for (let i = 0; i < sizes.length; i++) groups[i].grad.write(grads[i]);
      adamw(groups, { ...hyper, step });
      for (let i = 0; i < sizes.length; i++) refAdamWStep(ref[i], grads[i], hyper, step);
    }
    // Each step moves a parameter by ≤ lr·(1 + wd); f32 rounding of m/sqrt(v) is ~1e-6 relative,
    // so 6 steps stay within 1e-6 absolute of the f64 reference on O(1) parameters.
    // m and v are running averages of gradients of scale s: they carry f32 rounding of
    // ~1e-7·s (m) and ~1e-7·s² (v) even where the average itself cancels towards 0.
    for (let i = 0; i < sizes.length; i++) {
      const s = gradScale(i);
      expectClose(await groups[i].param.read(), ref[i].param, { atol: 1e-6, rtol: 1e-6 }, `param ${sizes[i]}`);
      expectClose(await groups[i].m.read(), ref[i].m, { atol: 1e-6 * s, rtol: 1e-5 }, `m ${sizes[i]}`);
      expectClose(await groups[i].v.read(), ref[i].v, { atol: 1e-6 * s * s, rtol: 1e-5 }, `v ${sizes[i]}`);
    }
    for (const grp of groups) for (const t of Object.values(grp)) t.dispose();
  });

  it("uses torch.optim.AdamW's defaults and validates its inputs", async () => {
    const g = gpu();
    const p = normal(12, 3);
    const grad = normal(12, 4);
    const group = {
      param: g.tensor([12], "f32", p),
      grad: g.tensor([12], "f32", grad),
      m: g.zeros([12]),
      v: g.zeros([12]),
    };
    adamw([group], { lr: 1e-3, step: 1 });
    const ref = { param: Float64Array.from(p), m: new Float64Array(12), v: new Float64Array(12) };
    refAdamWStep(ref, grad, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }, 1);
    expectClose(await group.param.read(), ref.param, { atol: 1e-6, rtol: 1e-6 }, "defaults");
    expect(() => adamw([group], { lr: 1e-3, step: 0 })).toThrow(/step must be an integer ≥ 1/);
    expect(() => adamw([group], { lr: Number.NaN, step: 1 })).toThrow(/lr must be a finite number/);
    expect(() => adamw([group], { lr: 1e-3, beta2: 1, step: 1 })).toThrow(/beta2 must be in \[0, 1\)/);
    expect(() => adamw([{ ...group, m: g.zeros([11]) }], { lr: 1e-3, step: 1 })).toThrow(
      /group 0 m must be f32 with 12 elements/,
    );
  });
});

describe("gradient norm and clipping", () => {
  it("computes the global squared L2 norm over many tensors on the GPU", async () => {
    const data = sizes.map((n, i) => normal(n, 50 + i, 0.5));
    const grads = upload(data);
    const sq = await gradNormSquared(grads).read();
    // f32 partial sums of ~3.7e5 positive terms: relative error ≲ 1e-6 with the two-level tree.
    expectClose(sq, [refNormSquared(data)], { atol: 0, rtol: 1e-5 }, "norm²");
  });

  it("clips to maxNorm like clip_grad_norm_ and returns the pre-clip norm", async () => {
    const data = sizes.slice(0, 5).map((n, i) => normal(n, 70 + i, 0.2));
    const grads = upload(data);
    const ref = refClipGradNorm(data, 1.5);
    expect(ref.norm).toBeGreaterThan(1.5);
    const norm = await clipGradNorm(grads, 1.5).read();
    expectClose(norm, [ref.norm], { atol: 0, rtol: 1e-5 }, "norm");
    for (let i = 0; i < grads.length; i++) {
      expectClose(await grads[i].read(), ref.clipped[i], { atol: 1e-9, rtol: 1e-5 }, `clipped ${i}`);
    }
    expectClose(await gradNormSquared(grads).read(), [1.5 ** 2], { atol: 0, rtol: 1e-4 }, "norm after clip");
  });

  it("leaves gradients alone when the norm is already below maxNorm", async () => {
    const data = [normal(129, 5, 0.01), normal(64, 6, 0.01)];
    const grads = upload(data);
    const norm = await clipGradNorm(grads, 10).read();
    expectClose(norm, [Math.sqrt(refNormSquared(data))], { atol: 0, rtol: 1e-5 }, "norm");
    for (let i = 0; i < grads.length; i++) expect(Array.from(await grads[i].read())).toEqual(Array.from(data[i]));
  });
});

describe("scaling, zeroing, non-finite detection", () => {
  it("scales by a number or by a GPU-resident factor", async () => {
    const g = gpu();
    const data = [normal(7, 1), normal(4096, 2)];
    const grads = upload(data);
    scaleGrads(grads, 1 / 1024);
    scaleGrads(grads, g.tensor([1], "f32", [-3]));
    for (let i = 0; i < grads.length; i++) {
      expectClose(
        await grads[i].read(),
        data[i].map((v) => (v / 1024) * -3),
        { atol: 0, rtol: 1e-6 },
        `scaled ${i}`,
      );
    }
    expect(() => scaleGrads(grads, g.tensor([2]))).toThrow(/factor must be f32 \[1\]/);
    expect(() => scaleGrads(grads, Number.POSITIVE_INFINITY)).toThrow(/factor must be a finite number/);
  });

  it("zeroes gradients", async () => {
    const grads = upload([normal(7, 1), normal(1000, 2)]);
    zeroGrads(grads);
    for (const t of grads) expect((await t.read()).every((v) => v === 0)).toBe(true);
    expect(await gradNormSquared(grads).read()).toEqual(new Float32Array([0]));
  });

  it("counts Inf and NaN entries exactly, in scalar and vec4 tensors", async () => {
    const data = [normal(7, 1), normal(4096, 2), normal(70001, 3)];
    const grads = upload(data);
    expect(Array.from(await nonFiniteCount(grads).readInts())).toEqual([0]);
    grads[0].write([Number.NaN], 6);
    grads[1].write([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN], 4093);
    grads[2].write([Number.NaN], 0);
    grads[2].write([-Number.NaN, 1e38, -3.4e38], 50000); // huge but finite values do not count
    const count = nonFiniteCount(grads);
    expect(count.dtype).toBe("u32");
    expect(Array.from(await count.readInts())).toEqual([6]);
    expect(Number.isFinite((await gradNormSquared(grads).read())[0])).toBe(false);
  });

  it("rejects empty lists and non-f32 tensors", () => {
    const g = gpu();
    expect(() => gradNormSquared([])).toThrow(/at least one gradient tensor/);
    expect(() => zeroGrads([g.tensor([4], "u32")])).toThrow(/tensor 0 must be f32/);
    expect(() => clipGradNorm([g.tensor([4])], -1)).toThrow(/maxNorm must be a finite number ≥ 0/);
  });
});
