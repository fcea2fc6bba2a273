// Plain-TypeScript embedding gather and scatter-add in f64: the source of truth for embedding.wgsl.

/** out[t, :] = table[ids[t], :]. */
export function embeddingRef(table: ArrayLike<number>, dim: number, ids: ArrayLike<number>): Float64Array {
  const out = new Float64Array(ids.length * dim);
  for (let t = 0; t < ids.length; t++) {
    for (let j = 0; j < dim; j++) out[t * dim + j] = table[ids[t] * dim + j];
  }
  return out;
}

/** dTable (a copy of `initial`) with dy[t, :] added into row ids[t] for every token t. */
export function embeddingBackwardRef(
  dy: ArrayLike<number>,
  dim: number,
  ids: ArrayLike<number>,
  initial: ArrayLike<number>,
): Float64Array {
  const dTable = Float64Array.from(initial);
  for (let t = 0; t < ids.length; t++) {
    for (let j = 0; j < dim; j++) dTable[ids[t] * dim + j] += dy[t * dim + j];
  }
  return dTable;
}
