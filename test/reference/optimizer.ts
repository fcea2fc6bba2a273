// Plain-TypeScript references for the optimizer kernels, in f64: torch.optim.AdamW's update and
// torch.nn.utils.clip_grad_norm_'s clipping.

export interface RefAdamWState {
  param: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

export interface RefAdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** One AdamW step (1-based `step`), updating `state` in place, exactly as PyTorch orders it. */
export function refAdamWStep(state: RefAdamWState, grad: ArrayLike<number>, h: RefAdamWHyper, step: number): void {
  const bc1 = 1 - h.beta1 ** step;
  const bc2 = 1 - h.beta2 ** step;
  for (let i = 0; i < state.param.length; i++) {
    const g = grad[i];
    state.param[i] *= 1 - h.lr * h.weightDecay;
    state.m[i] = h.beta1 * state.m[i] + (1 - h.beta1) * g;
    state.v[i] = h.beta2 * state.v[i] + (1 - h.beta2) * g * g;
    const denom = Math.sqrt(state.v[i]) / Math.sqrt(bc2) + h.eps;
    state.param[i] -= (h.lr / bc1) * (state.m[i] / denom);
  }
}

/** Σ g² over all tensors. */
export function refNormSquared(grads: readonly ArrayLike<number>[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return s;
}

/** Clipped copies of `grads` and the pre-clip norm (clip factor min(1, max / (norm + 1e-6))). */
export function refClipGradNorm(
  grads: readonly ArrayLike<number>[],
  maxNorm: number,
): { clipped: Float64Array[]; norm: number } {
  const norm = Math.sqrt(refNormSquared(grads));
  const factor = Math.min(1, maxNorm / (norm + 1e-6));
  return { clipped: grads.map((g) => Float64Array.from(g, (x) => x * factor)), norm };
}
