// Plain-TypeScript references for logprobs.wgsl, accumulated in f64: log-softmax of tempered
// logits, target logprobs, entropy, and their gradients w.r.t. the raw logits.

/** Row `r` of a row-major [rows, vocab] array, tempered: z = x / T. */
function tempered(logits: ArrayLike<number>, vocab: number, r: number, temperature: number): number[] {
  const z: number[] = new Array(vocab);
  for (let i = 0; i < vocab; i++) z[i] = logits[r * vocab + i] / temperature;
  return z;
}

/** log Σ exp(z), stable (max subtracted). */
export function logSumExp(z: readonly number[]): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of z) m = Math.max(m, v);
  let s = 0;
  for (const v of z) s += Math.exp(v - m);
  return m + Math.log(s);
}

/** log softmax(logits / T) for every row. */
export function refLogSoftmax(logits: ArrayLike<number>, rows: number, vocab: number, temperature = 1): Float64Array {
  const out = new Float64Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    const z = tempered(logits, vocab, r, temperature);
    const lse = logSumExp(z);
    for (let i = 0; i < vocab; i++) out[r * vocab + i] = z[i] - lse;
  }
  return out;
}

/** Logprob of each row's target and the row's lse of logits / T. */
export function refTokenLogprobs(
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
  rows: number,
  vocab: number,
  temperature = 1,
): { logprobs: Float64Array; lse: Float64Array } {
  const logprobs = new Float64Array(rows);
  const lse = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const z = tempered(logits, vocab, r, temperature);
    lse[r] = logSumExp(z);
    logprobs[r] = z[targets[r]] - lse[r];
  }
  return { logprobs, lse };
}

/** −Σ p log p of softmax(logits / T) per row (p = 0 terms contribute 0). */
export function refEntropy(logits: ArrayLike<number>, rows: number, vocab: number, temperature = 1): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const z = tempered(logits, vocab, r, temperature);
    const lse = logSumExp(z);
    let h = 0;
    for (const v of z) {
      const logp = v - lse;
      const p = Math.exp(logp);
      if (p > 0) h -= p * logp;
    }
    out[r] = h;
  }
  return out;
}

/** ∂(Σ_r dlp_r · logprob_r)/∂logits = (onehot − softmax) · dlp / T. */
export function refTokenLogprobsBackward(
  dLogprobs: ArrayLike<number>,
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
  rows: number,
  vocab: number,
  temperature = 1,
): Float64Array {
  const out = new Float64Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    const z = tempered(logits, vocab, r, temperature);
    const lse = logSumExp(z);
    for (let i = 0; i < vocab; i++) {
      const onehot = i === targets[r] ? 1 : 0;
      out[r * vocab + i] = ((onehot - Math.exp(z[i] - lse)) * dLogprobs[r]) / temperature;
    }
  }
  return out;
}

/** ∂(Σ_r dH_r · H_r)/∂logits = −p (log p + H) · dH / T. */
export function refEntropyBackward(
  dEntropy: ArrayLike<number>,
  logits: ArrayLike<number>,
  rows: number,
  vocab: number,
  temperature = 1,
): Float64Array {
  const h = refEntropy(logits, rows, vocab, temperature);
  const out = new Float64Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    const z = tempered(logits, vocab, r, temperature);
    const lse = logSumExp(z);
    for (let i = 0; i < vocab; i++) {
      const logp = z[i] - lse;
      const p = Math.exp(logp);
      out[r * vocab + i] = p > 0 ? (-p * (logp + h[r]) * dEntropy[r]) / temperature : 0;
    }
  }
  return out;
}
