// Optimizer kernels (adamw.wgsl, gradnorm.wgsl): the fused AdamW update over many parameter
// tensors, and the gradient plumbing around it that must stay on the GPU — global norm,
// clipping, zeroing, loss-scale scaling and non-finite detection — so a training step records
// everything into one batch and never waits on a readback.
//
// Parameters live in separate tensors (one per weight), so each tensor gets its own dispatch,
// all recorded into the same command batch (bench/kernels/vocab.ts measures what that costs
// against one dispatch over the same number of elements).

import { grid1d } from "../grid.ts";
import type { Defines, ShaderEntries } from "../pipeline.ts";
import type { Tensor } from "../tensor.ts";
import { vectorDefines } from "./launch.ts";

const WORKGROUP = 256;
/** Vectors each invocation folds in the reduction passes (a workgroup covers 256·ITEMS vectors). */
const ITEMS = 16;

type GradnormEntry = ShaderEntries["gradnorm"];

export interface AdamWParam {
  param: Tensor;
  grad: Tensor;
  /** First moment (exp_avg), same shape; start at zeros. */
  m: Tensor;
  /** Second moment (exp_avg_sq), same shape; start at zeros. */
  v: Tensor;
}

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** 1-based step count (after this update), for bias correction. */
  step: number;
}

/** f32 vs vec4 launch shape for an element-wise pass over `t`. */
function widthOf(t: Tensor): { width: 1 | 4; n: number; defines: Defines } {
  const width = t.size % 4 === 0 ? 4 : 1;
  return { width, n: t.size / width, defines: { ...vectorDefines(width), ITEMS } };
}

function checkGrads(fn: string, grads: readonly Tensor[]): void {
  if (grads.length === 0) throw new Error(`${fn}: needs at least one gradient tensor`);
  grads.forEach((g, i) => {
    if (g.dtype !== "f32") throw new Error(`${fn}: tensor ${i} must be f32, got ${g.dtype}`);
    if (g.disposed) throw new Error(`${fn}: tensor ${i} was disposed`);
  });
}

function checkFinite(fn: string, name: string, value: number, min = Number.NEGATIVE_INFINITY): void {
  if (!Number.isFinite(value) || value < min)
    throw new Error(`${fn}: ${name} must be a finite number ≥ ${min}, got ${value}`);
}

/**
 * One AdamW step over every (param, grad, m, v) group, PyTorch semantics:
 * param ← param·(1 − lr·wd) − lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps), with m, v updated
 * from grad first. Defaults: β1 0.9, β2 0.999, eps 1e-8, weight decay 0.01 (torch.optim.AdamW).
 */
export function adamw(params: readonly AdamWParam[], options: AdamWOptions): void {
  const fn = "adamw";
  const { lr, step } = options;
  const beta1 = options.beta1 ?? 0.9;
  const beta2 = options.beta2 ?? 0.999;
  const eps = options.eps ?? 1e-8;
  const weightDecay = options.weightDecay ?? 0.01;
  checkFinite(fn, "lr", lr, 0);
  checkFinite(fn, "eps", eps, 0);
  checkFinite(fn, "weightDecay", weightDecay, 0);
  for (const [name, b] of [
    ["beta1", beta1],
    ["beta2", beta2],
  ] as const) {
    if (!(b >= 0 && b < 1)) throw new Error(`${fn}: ${name} must be in [0, 1), got ${b}`);
  }
  if (!Number.isInteger(step) || step < 1) throw new Error(`${fn}: step must be an integer ≥ 1, got ${step}`);
  // Bias corrections in f64 on the CPU: β^t underflows gracefully there and costs nothing.
  const bc1 = 1 - beta1 ** step;
  const bc2 = 1 - beta2 ** step;
  params.forEach((group, i) => {
    const { param, grad, m, v } = group;
    for (const [name, t] of Object.entries(group) as [string, Tensor][]) {
      if (t.dtype !== "f32" || t.size !== param.size) {
        throw new Error(
          `${fn}: group ${i} ${name} must be f32 with ${param.size} elements like param, got ${t.dtype} [${t.shape.join(", ")}]`,
        );
      }
    }
    const { n, defines } = widthOf(param);
    param.gpu.commands.dispatch({
      shader: "adamw",
      entry: "adamw",
      defines,
      bindings: [param, grad, m, v],
      params: {
        n,
        beta1,
        beta2,
        eps,
        decay: 1 - lr * weightDecay,
        step_size: lr / bc1,
        inv_sqrt_bc2: 1 / Math.sqrt(bc2),
      },
      workgroups: grid1d(param.gpu, n, WORKGROUP),
    });
  });
}

/**
 * Records per-tensor partial reductions (`entry`) into one shared partials buffer, then folds
 * them with `finalEntry` into `out`.
 */
function reduceAll(grads: readonly Tensor[], entry: GradnormEntry, finalEntry: GradnormEntry, out: Tensor): Tensor {
  const gpu = grads[0].gpu;
  const plans = grads.map((g) => {
    const w = widthOf(g);
    return { g, ...w, groups: Math.max(1, Math.ceil(w.n / (WORKGROUP * ITEMS))) };
  });
  const total = plans.reduce((s, p) => s + p.groups, 0);
  const partials = gpu.tensor([total]);
  let slot = 0;
  for (const p of plans) {
    gpu.commands.dispatch({
      shader: "gradnorm",
      entry,
      defines: p.defines,
      bindings: [p.g, partials],
      params: { n: p.n, slot, groups: p.groups, value: 0 },
      workgroups: grid1d(gpu, p.groups, 1),
    });
    slot += p.groups;
  }
  gpu.commands.dispatch({
    shader: "gradnorm",
    entry: finalEntry,
    defines: { ...vectorDefines(1), ITEMS },
    bindings: [partials, out],
    params: { n: total, slot: 0, groups: 1, value: 0 },
    workgroups: [1],
  });
  partials.dispose();
  return out;
}

/** Σ g² over every element of every tensor → f32 [1], computed on the GPU (no readback). */
export function gradNormSquared(grads: readonly Tensor[]): Tensor {
  checkGrads("gradNormSquared", grads);
  return reduceAll(grads, "sumsq_partials", "sum_partials", grads[0].gpu.tensor([1]));
}

/** Number of Inf/NaN entries across all tensors → u32 [1] (skip the step when > 0). */
export function nonFiniteCount(grads: readonly Tensor[]): Tensor {
  checkGrads("nonFiniteCount", grads);
  return reduceAll(grads, "nonfinite_partials", "count_partials", grads[0].gpu.tensor([1], "u32"));
}

function scaleEach(grads: readonly Tensor[], entry: GradnormEntry, value: number, factor?: Tensor): void {
  for (const g of grads) {
    const { n, defines } = widthOf(g);
    g.gpu.commands.dispatch({
      shader: "gradnorm",
      entry,
      defines,
      bindings: factor ? [g, factor] : [g],
      params: { n, slot: 0, groups: 0, value },
      workgroups: grid1d(g.gpu, n, WORKGROUP),
    });
  }
}

/**
 * Clips the global L2 norm like torch.nn.utils.clip_grad_norm_: scales every gradient by
 * min(1, maxNorm / (norm + 1e-6)), reading the norm on the GPU. Returns the pre-clip norm, f32 [1].
 */
export function clipGradNorm(grads: readonly Tensor[], maxNorm: number): Tensor {
  checkGrads("clipGradNorm", grads);
  checkFinite("clipGradNorm", "maxNorm", maxNorm, 0);
  const gpu = grads[0].gpu;
  const sq = gradNormSquared(grads);
  scaleEach(grads, "clip_by_norm", maxNorm, sq);
  const norm = gpu.tensor([1]);
  gpu.commands.dispatch({
    shader: "gradnorm",
    entry: "sqrt_norm",
    defines: { ...vectorDefines(1), ITEMS },
    bindings: [sq, norm],
    workgroups: [1],
  });
  sq.dispose();
  return norm;
}

/**
 * Multiplies every gradient in place by `factor`: a number (e.g. 1/lossScale), or an f32 [1]
 * tensor holding it on the GPU.
 */
export function scaleGrads(grads: readonly Tensor[], factor: number | Tensor): void {
  checkGrads("scaleGrads", grads);
  if (typeof factor === "number") {
    checkFinite("scaleGrads", "factor", factor);
    scaleEach(grads, "scale_by_value", factor);
    return;
  }
  if (factor.dtype !== "f32" || factor.size !== 1) {
    throw new Error(`scaleGrads: a tensor factor must be f32 [1], got ${factor.dtype} [${factor.shape.join(", ")}]`);
  }
  scaleEach(grads, "scale_by_tensor", 0, factor);
}

/** Sets every gradient to zero (a buffer clear, no shader). */
export function zeroGrads(grads: readonly Tensor[]): void {
  checkGrads("zeroGrads", grads);
  for (const g of grads) g.gpu.commands.clear(g.buffer, g.byteOffset, g.byteLength);
}
