// Plain-loop reference for the decode GEMV kernels (gemv.wgsl, gemv_sg.wgsl):
// y[r, n] = alpha · Σ_k x[r, k] · W[n, k] (+ bias[n]) (+ y0[r, n]) for M rows of x and W [N, K]
// (HF linear weight), f64 accumulation. f16 weights are passed already rounded to f16.

export interface GemvRefOptions {
  alpha?: number;
  bias?: ArrayLike<number>;
  /** Initial y (added when given), M·N elements. */
  y0?: ArrayLike<number>;
}

export function gemvRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  m: number,
  n: number,
  k: number,
  opts: GemvRefOptions = {},
): Float64Array {
  const alpha = opts.alpha ?? 1;
  const y = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += x[r * k + p] * w[j * k + p];
      y[r * n + j] = alpha * sum + (opts.bias ? opts.bias[j] : 0) + (opts.y0 ? opts.y0[r * n + j] : 0);
    }
  }
  return y;
}
