// Finite-difference gradient checks for GPU backward kernels.
//
// The loss is L(x) = Σ forward(x) · R for a fixed random R, computed by the GPU *forward* kernel;
// the analytic gradient is the GPU *backward* kernel applied to dOut = R. Central differences in
// f32 have error ~ eps² · f''' + ulp(L)/eps, so we use eps ≈ 1e-2 on O(1) inputs, probe a sample
// of coordinates, and compare with a tolerance relative to the gradient's scale.
import { expect } from "vitest";

export interface GradCheckOptions {
  /** Coordinates to probe (all when the input is smaller). */
  samples?: number;
  eps?: number;
  /** Allowed |fd − analytic| relative to max(1, |analytic|) ... see `check`. */
  tol?: number;
  seed?: number;
}

/**
 * `loss(x)` evaluates the scalar loss at input x (on the GPU, through the forward kernel);
 * `grad` is the analytic gradient from the backward kernel at `x`.
 */
export async function gradCheck(
  x: Float32Array,
  grad: ArrayLike<number>,
  loss: (x: Float32Array) => Promise<number>,
  options: GradCheckOptions = {},
  label = "",
): Promise<void> {
  const eps = options.eps ?? 1e-2;
  const tol = options.tol ?? 2e-2;
  const samples = options.samples ?? 16;
  let scale = 0;
  for (let i = 0; i < grad.length; i++) scale = Math.max(scale, Math.abs(grad[i]));
  scale = Math.max(scale, 1e-3);
  const idx: number[] = [];
  if (x.length <= samples) for (let i = 0; i < x.length; i++) idx.push(i);
  else {
    let s = (options.seed ?? 7) >>> 0;
    while (idx.length < samples) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const i = s % x.length;
      if (!idx.includes(i)) idx.push(i);
    }
  }
  for (const i of idx) {
    const orig = x[i];
    const xp = Float32Array.from(x);
    xp[i] = orig + eps;
    const lp = await loss(xp);
    xp[i] = orig - eps;
    const lm = await loss(xp);
    const fd = (lp - lm) / (2 * eps);
    const err = Math.abs(fd - grad[i]) / scale;
    expect(
      err,
      `${label} grad[${i}]: finite difference ${fd} vs analytic ${grad[i]} (grad scale ${scale})`,
    ).toBeLessThan(tol);
  }
}
