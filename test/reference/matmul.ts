// Plain-loop reference for the matmul family: C = alpha·op(A)·op(B) (+ bias) (+ C), row-major,
// batched with broadcast, f64 accumulation. The GPU kernels are checked against this.

export interface MatmulRefOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  bias?: ArrayLike<number>;
  /** Initial C (added when given), batch·M·N elements. */
  c?: ArrayLike<number>;
  /** Batch count; an operand whose `batchA`/`batchB` flag is false is broadcast. */
  batch?: number;
  batchedA?: boolean;
  batchedB?: boolean;
}

/**
 * A is [batch?, M, K] (or [batch?, K, M] with transA), B is [batch?, K, N] (or [batch?, N, K]
 * with transB); returns C [batch, M, N] as a Float64Array.
 */
export function matmulRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  n: number,
  k: number,
  opts: MatmulRefOptions = {},
): Float64Array {
  const batch = opts.batch ?? 1;
  const alpha = opts.alpha ?? 1;
  const out = new Float64Array(batch * m * n);
  for (let z = 0; z < batch; z++) {
    const baseA = opts.batchedA ? z * m * k : 0;
    const baseB = opts.batchedB ? z * n * k : 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let p = 0; p < k; p++) {
          const av = opts.transA ? a[baseA + p * m + i] : a[baseA + i * k + p];
          const bv = opts.transB ? b[baseB + j * k + p] : b[baseB + p * n + j];
          sum += av * bv;
        }
        const idx = z * m * n + i * n + j;
        let v = alpha * sum;
        if (opts.bias) v += opts.bias[j];
        if (opts.c) v += opts.c[idx];
        out[idx] = v;
      }
    }
  }
  return out;
}

/** Row-major transpose of an [rows, cols] matrix. */
export function transpose(x: ArrayLike<number>, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c];
  return out;
}
