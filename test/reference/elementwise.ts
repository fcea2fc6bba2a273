// Plain-TypeScript elementwise ops in f64: the source of truth for elementwise.wgsl.

function zip(a: ArrayLike<number>, b: ArrayLike<number>, f: (x: number, y: number) => number): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f(a[i], b[i]);
  return out;
}

/** a + alpha · b */
export function axpyRef(a: ArrayLike<number>, b: ArrayLike<number>, alpha = 1): Float64Array {
  return zip(a, b, (x, y) => x + alpha * y);
}

/** a ⊙ b */
export function mulRef(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return zip(a, b, (x, y) => x * y);
}

/** alpha · a */
export function scaleRef(a: ArrayLike<number>, alpha: number): Float64Array {
  return Float64Array.from(a, (x) => alpha * x);
}
