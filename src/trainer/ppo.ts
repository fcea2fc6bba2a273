// The PPO clipped surrogate per response token (with DAPO's separate low/high clip), optional k3
// KL to the reference policy and entropy bonus, and its gradient with respect to each token's
// logprob. This runs on the CPU over one float per token: the GPU computes the logprobs and
// backpropagates dLoss/dLogprob through the model.
//
//   r_t  = exp(logprob_t − oldLogprob_t)
//   L    = −(1/N) Σ_t mask_t · min(r_t·A, clip(r_t, 1−clipLow, 1+clipHigh)·A)
//        + klCoef · (1/N) Σ_t mask_t · k3_t,   k3 = exp(ref − lp) − (ref − lp) − 1
//   N    = Σ mask (token-mean) — or per sequence then averaged (sequence-mean).
//
// With `isTruncation` = C (asynchronous training, see docs/trainer.md), oldLogprobs are the
// behaviour policy's (the adapter version that sampled) and the ratio's old policy is the current
// parameters, detached (one optimizer step per batch, so π_old = π_θ when gradients are taken):
//   w_t  = min(exp(logprob_t − behaviour_t), C)        (truncated importance weight, no gradient)
//   L    = −(1/N) Σ_t mask_t · w_t · min(r_t·A, clip(r_t)·A),  r_t = exp(logprob_t − sg(logprob_t))

export interface PpoOptions {
  clipLow: number;
  clipHigh: number;
  klCoef?: number;
  /** Entropy bonus: subtracts entropyCoef · mean entropy of the trained tokens (0 = off). */
  entropyCoef?: number;
  /** "token": mean over all response tokens of the batch (default); "sequence": mean of per-sequence means. */
  aggregation?: "token" | "sequence";
  /** Truncated importance sampling against oldLogprobs as the behaviour policy (absent = off). */
  isTruncation?: number;
}

export interface PpoTokenInputs {
  logprobs: Float32Array;
  oldLogprobs: Float32Array;
  /** Reference-policy logprobs (adapter off), needed when klCoef > 0. */
  refLogprobs?: Float32Array;
  mask: Float32Array;
  /** Advantage of each token (its sample's advantage, broadcast). */
  advantages: Float32Array;
  /** Sequence index of each token (for sequence-mean aggregation). */
  sequence?: Uint32Array;
  /** Entropy of each token's predictive distribution (for the metric and the bonus). */
  entropy?: Float32Array;
}

export interface PpoResult {
  loss: number;
  /** dLoss/dLogprob per token (0 where masked). */
  dLogprobs: Float32Array;
  /** dLoss/dEntropy per token, when an entropy bonus is on. */
  dEntropy: Float32Array | null;
  metrics: {
    clipFraction: number;
    kl: number;
    ratioMean: number;
    tokens: number;
    policyLoss: number;
    entropy: number;
    /** With isTruncation: the weights over trained tokens (sum, min, max) and how many were cut to C. */
    importance?: { sum: number; min: number; max: number; truncated: number };
  };
}

/** Computes the loss and dLoss/dLogprob for every token. */
export function ppoLoss(inputs: PpoTokenInputs, options: PpoOptions): PpoResult {
  const { logprobs, oldLogprobs, refLogprobs, mask, advantages } = inputs;
  const n = logprobs.length;
  const klCoef = options.klCoef ?? 0;
  if (klCoef > 0 && !refLogprobs) throw new Error("klCoef > 0 needs reference logprobs");
  const weights = tokenWeights(mask, options.aggregation ?? "token", inputs.sequence);
  const dLogprobs = new Float32Array(n);
  let policyLoss = 0;
  let klSum = 0;
  let clipped = 0;
  let ratioSum = 0;
  let tokens = 0;
  let entropySum = 0;
  const entropyCoef = options.entropyCoef ?? 0;
  if (entropyCoef > 0 && !inputs.entropy) throw new Error("entropyCoef > 0 needs per-token entropies");
  const dEntropy = entropyCoef > 0 ? new Float32Array(n) : null;
  const lo = 1 - options.clipLow;
  const hi = 1 + options.clipHigh;
  const truncation = options.isTruncation;
  const importance = truncation === undefined ? undefined : { sum: 0, min: Infinity, max: 0, truncated: 0 };
  for (let t = 0; t < n; t++) {
    let w = weights[t];
    if (w === 0) continue;
    tokens++;
    let old = oldLogprobs[t];
    if (importance && truncation !== undefined) {
      const rho = Math.exp(logprobs[t] - oldLogprobs[t]);
      const is = Math.min(rho, truncation);
      if (rho > truncation) importance.truncated++;
      importance.sum += is;
      importance.min = Math.min(importance.min, is);
      importance.max = Math.max(importance.max, is);
      w *= is;
      old = logprobs[t];
    }
    const a = advantages[t];
    const ratio = Math.exp(logprobs[t] - old);
    const clippedRatio = Math.min(Math.max(ratio, lo), hi);
    const unclippedObj = ratio * a;
    const clippedObj = clippedRatio * a;
    ratioSum += ratio;
    // The min picks the clipped branch only when it is strictly smaller; there the ratio is
    // outside [lo, hi] and the clamp's gradient is zero.
    let dObj: number;
    if (clippedObj < unclippedObj) {
      clipped++;
      dObj = 0;
      policyLoss -= w * clippedObj;
    } else {
      dObj = ratio * a;
      policyLoss -= w * unclippedObj;
    }
    let d = dObj === 0 ? 0 : -w * dObj;
    w = weights[t]; // the KL and entropy terms are not importance-weighted
    if (klCoef > 0 && refLogprobs) {
      const diff = refLogprobs[t] - logprobs[t];
      const e = Math.exp(diff);
      klSum += w * (e - diff - 1);
      d += klCoef * w * (1 - e);
    }
    dLogprobs[t] = d;
    if (inputs.entropy) entropySum += w * inputs.entropy[t];
    if (dEntropy) dEntropy[t] = -entropyCoef * w;
  }
  return {
    loss: policyLoss + klCoef * klSum - entropyCoef * entropySum,
    dLogprobs,
    dEntropy,
    metrics: {
      clipFraction: tokens ? clipped / tokens : 0,
      kl: klSum,
      ratioMean: tokens ? ratioSum / tokens : 0,
      tokens,
      policyLoss,
      entropy: entropySum,
      ...(importance ? { importance: { ...importance, min: tokens ? importance.min : 0 } } : {}),
    },
  };
}

/** Per-token weights implementing the aggregation (they sum to 1 over the batch). */
function tokenWeights(mask: Float32Array, aggregation: "token" | "sequence", sequence?: Uint32Array): Float32Array {
  const w = new Float32Array(mask.length);
  if (aggregation === "token") {
    let total = 0;
    for (let t = 0; t < mask.length; t++) total += mask[t];
    if (total > 0) for (let t = 0; t < mask.length; t++) w[t] = mask[t] / total;
    return w;
  }
  if (!sequence) throw new Error("sequence-mean aggregation needs each token's sequence index");
  const perSeq = new Map<number, number>();
  for (let t = 0; t < mask.length; t++)
    if (mask[t] > 0) perSeq.set(sequence[t], (perSeq.get(sequence[t]) ?? 0) + mask[t]);
  const seqs = perSeq.size;
  for (let t = 0; t < mask.length; t++) {
    const count = perSeq.get(sequence[t]);
    if (mask[t] > 0 && count) w[t] = mask[t] / count / seqs;
  }
  return w;
}
