// Plain-TypeScript reference for the LM head by vocabulary blocks (src/gpu/kernels/lmhead.ts),
// in f64: logits = hidden · Wᵀ, then the logprobs references; backward through both.
import { refEntropy, refEntropyBackward, refTokenLogprobs, refTokenLogprobsBackward } from "./logprobs.ts";

/** hidden [rows, dim] · W[vocab, dim]ᵀ → [rows, vocab] in f64. */
export function refHeadLogits(
  hidden: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  dim: number,
  vocab: number,
) {
  const out = new Float64Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    for (let v = 0; v < vocab; v++) {
      let s = 0;
      for (let k = 0; k < dim; k++) s += hidden[r * dim + k] * w[v * dim + k];
      out[r * vocab + v] = s;
    }
  }
  return out;
}

export interface RefHeadShape {
  rows: number;
  dim: number;
  vocab: number;
  temperature: number;
}

export function refHeadLogprobs(
  hidden: ArrayLike<number>,
  w: ArrayLike<number>,
  targets: ArrayLike<number>,
  s: RefHeadShape,
): { logprobs: Float64Array; lse: Float64Array; entropy: Float64Array } {
  const logits = refHeadLogits(hidden, w, s.rows, s.dim, s.vocab);
  const { logprobs, lse } = refTokenLogprobs(logits, targets, s.rows, s.vocab, s.temperature);
  return { logprobs, lse, entropy: refEntropy(logits, s.rows, s.vocab, s.temperature) };
}

/** d(Σ dlp·logprob + Σ dH·entropy) w.r.t. hidden [rows, dim] and W [vocab, dim]. */
export function refHeadBackward(
  hidden: ArrayLike<number>,
  w: ArrayLike<number>,
  targets: ArrayLike<number>,
  dLogprobs: ArrayLike<number>,
  dEntropy: ArrayLike<number> | null,
  s: RefHeadShape,
): { dHidden: Float64Array; dW: Float64Array } {
  const { rows, dim, vocab, temperature } = s;
  const logits = refHeadLogits(hidden, w, rows, dim, vocab);
  const dLogits = refTokenLogprobsBackward(dLogprobs, logits, targets, rows, vocab, temperature);
  if (dEntropy) {
    const dH = refEntropyBackward(dEntropy, logits, rows, vocab, temperature);
    for (let i = 0; i < dLogits.length; i++) dLogits[i] += dH[i];
  }
  const dHidden = new Float64Array(rows * dim);
  const dW = new Float64Array(vocab * dim);
  for (let r = 0; r < rows; r++) {
    for (let v = 0; v < vocab; v++) {
      const g = dLogits[r * vocab + v];
      if (g === 0) continue;
      for (let k = 0; k < dim; k++) {
        dHidden[r * dim + k] += g * w[v * dim + k];
        dW[v * dim + k] += g * hidden[r * dim + k];
      }
    }
  }
  return { dHidden, dW };
}
