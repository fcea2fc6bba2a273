// Plain-TypeScript RMSNorm forward and backward in f64: the source of truth for rmsnorm.wgsl.

/**
 * y = x · rsqrt(mean(x²) + eps) · (w + offset) per row (offset 1: Gemma's (1 + w) norm); also
 * returns rstd per row.
 */
export function rmsnormRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  dim: number,
  eps: number,
  offset = 0,
): { y: Float64Array; rstd: Float64Array } {
  const y = new Float64Array(rows * dim);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += x[r * dim + j] ** 2;
    const s = 1 / Math.sqrt(ss / dim + eps);
    rstd[r] = s;
    for (let j = 0; j < dim; j++) y[r * dim + j] = x[r * dim + j] * s * (w[j] + offset);
  }
  return { y, rstd };
}

/**
 * Gradients of Σ y·dy: dx_j = r·w_j·dy_j − x_j·r³/dim·Σ_k dy_k·w_k·x_k and dw_j = Σ_rows dy_j·x_j·r,
 * with r recomputed from x in f64 and w_j standing for w_j + offset in dx (dw is the same).
 */
export function rmsnormBackwardRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  dim: number,
  eps: number,
  offset = 0,
): { dx: Float64Array; dweight: Float64Array } {
  const { rstd } = rmsnormRef(x, w, rows, dim, eps, offset);
  const dx = new Float64Array(rows * dim);
  const dweight = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    const s = rstd[r];
    let dot = 0;
    for (let j = 0; j < dim; j++) dot += dy[r * dim + j] * (w[j] + offset) * x[r * dim + j];
    const c = (s * s * s * dot) / dim;
    for (let j = 0; j < dim; j++) {
      const i = r * dim + j;
      dx[i] = s * (w[j] + offset) * dy[i] - x[i] * c;
      dweight[j] += dy[i] * x[i] * s;
    }
  }
  return { dx, dweight };
}
