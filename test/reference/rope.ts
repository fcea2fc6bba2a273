// Plain-TypeScript RoPE in f64 (HF rotate-half convention): the source of truth for rope.wgsl.

/**
 * out1 = x1·cos − x2·sin, out2 = x2·cos + x1·sin per head, angle = pos·theta^(−2i/headDim) (or
 * pos·invFreq[i] when `theta` is a list of inverse frequencies), all in f64. `inverse` negates
 * the angle.
 */
export function ropeRef(
  x: ArrayLike<number>,
  positions: ArrayLike<number>,
  nHeads: number,
  headDim: number,
  theta: number | ArrayLike<number>,
  inverse = false,
): Float64Array {
  const half = headDim / 2;
  const out = new Float64Array(x.length);
  for (let t = 0; t < positions.length; t++) {
    for (let i = 0; i < half; i++) {
      const inv = typeof theta === "number" ? theta ** ((-2 * i) / headDim) : theta[i];
      const a = positions[t] * inv * (inverse ? -1 : 1);
      const c = Math.cos(a);
      const s = Math.sin(a);
      for (let h = 0; h < nHeads; h++) {
        const k = (t * nHeads + h) * headDim + i;
        const x1 = x[k];
        const x2 = x[k + half];
        out[k] = x1 * c - x2 * s;
        out[k + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}

/** The same rotation with angles as HF computes them in f32 (f32(pos)·f32(inv_freq), rounded). */
export function ropeNaiveF32(
  x: ArrayLike<number>,
  positions: ArrayLike<number>,
  nHeads: number,
  headDim: number,
  theta: number,
): Float64Array {
  const half = headDim / 2;
  const out = new Float64Array(x.length);
  for (let t = 0; t < positions.length; t++) {
    for (let i = 0; i < half; i++) {
      const invFreq = Math.fround(1 / Math.fround(theta ** ((2 * i) / headDim)));
      const a = Math.fround(Math.fround(positions[t]) * invFreq);
      const c = Math.cos(a);
      const s = Math.sin(a);
      for (let h = 0; h < nHeads; h++) {
        const k = (t * nHeads + h) * headDim + i;
        out[k] = x[k] * c - x[k + half] * s;
        out[k + half] = x[k + half] * c + x[k] * s;
      }
    }
  }
  return out;
}
