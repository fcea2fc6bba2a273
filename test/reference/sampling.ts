// Plain-TypeScript reference for sampling.wgsl, in f64 with a full sort: the kept set under
// top-k/top-p, the tempered distribution over it, the counter-based uniform, the token that
// inverse-CDF sampling picks (in the kernel's invocation-major order), and top-N alternatives.
// A token mask (structured output) is applied first by `refMaskRow`: disallowed logits become
// −∞, so every function below works over the allowed set.

export interface RefSamplingParams {
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  step: number;
}

/** PCG hash (Jarzynski & Olano 2020), u32 → u32, as in sampling.wgsl. */
export function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The uniform in [0, 1) the kernel draws for (seed, step). */
export function refUniform(seed: number, step: number): number {
  return (pcgHash((seed + pcgHash(step)) >>> 0) >>> 8) / 16777216;
}

/** Whether token c is allowed by a bit-packed mask (bit c % 32 of word ⌊c / 32⌋). */
export function refAllowed(mask: Uint32Array, c: number): boolean {
  return ((mask[c >>> 5] >>> (c & 31)) & 1) === 1;
}

/** The row with every disallowed logit set to −∞ (the mask applied before sampling). */
export function refMaskRow(row: ArrayLike<number>, mask: Uint32Array): Float64Array {
  return Float64Array.from(row, (x, c) => (refAllowed(mask, c) ? x : Number.NEGATIVE_INFINITY));
}

/** log softmax of row / T (T = 1 when T = 0); −∞ entries get −∞. */
export function refRowLogprobs(row: ArrayLike<number>, temperature: number): Float64Array {
  const t = temperature === 0 ? 1 : temperature;
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i] / t);
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] / t - m);
  const lse = m + Math.log(s);
  return Float64Array.from(row, (x) => x / t - lse);
}

/** Lowest index of the largest value. */
export function refArgmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/**
 * Indices kept by top-k then top-p (over the renormalised top-k mass), by threshold: every token
 * whose logit ties the cut-off value is kept, like the kernel.
 */
export function refKeptSet(row: ArrayLike<number>, params: RefSamplingParams): Set<number> {
  const n = row.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b);
  let cutoff = row[order[n - 1]];
  if (params.topK > 0 && params.topK < n) cutoff = row[order[params.topK - 1]];
  if (params.topP < 1) {
    const logp = refRowLogprobs(row, params.temperature);
    let keptMass = 0;
    for (const i of order) if (row[i] >= cutoff) keptMass += Math.exp(logp[i]);
    // Largest value v such that the mass of {x ≥ v} reaches topP of the top-k mass.
    let acc = 0;
    for (let j = 0; j < n; j++) {
      const v = row[order[j]];
      if (v < cutoff) break;
      acc += Math.exp(logp[order[j]]);
      // Include every tie of v before testing.
      if (j + 1 < n && row[order[j + 1]] === v) continue;
      if (acc >= params.topP * keptMass) {
        cutoff = v;
        break;
      }
    }
  }
  const kept = new Set<number>();
  // Masked (−∞) tokens are never kept, even when the cut-off falls on them.
  for (let i = 0; i < n; i++) if (row[i] >= cutoff && row[i] > Number.NEGATIVE_INFINITY) kept.add(i);
  return kept;
}

/** The sampling distribution: softmax(row / T) restricted to the kept set and renormalised. */
export function refSamplingProbs(row: ArrayLike<number>, params: RefSamplingParams): Float64Array {
  const kept = refKeptSet(row, params);
  const logp = refRowLogprobs(row, params.temperature);
  const probs = new Float64Array(row.length);
  let z = 0;
  for (const i of kept) z += Math.exp(logp[i]);
  for (const i of kept) probs[i] = Math.exp(logp[i]) / z;
  return probs;
}

/**
 * The token the kernel should pick: argmax when greedy, else inverse CDF of refUniform over the
 * kept set, walking invocation-major order (c mod wg, then c) as the kernel does with `wg`
 * invocations per row.
 */
export function refSampleToken(row: ArrayLike<number>, params: RefSamplingParams, wg: number): number {
  if (params.temperature === 0) return refArgmax(row);
  const probs = refSamplingProbs(row, params);
  const goal = refUniform(params.seed, params.step);
  let acc = 0;
  let last = -1;
  for (let lane = 0; lane < wg; lane++) {
    for (let c = lane; c < row.length; c += wg) {
      if (probs[c] === 0) continue;
      acc += probs[c];
      last = c;
      if (acc > goal) return c;
    }
  }
  return last;
}

/** The N most likely tokens (logprob descending, token ascending) of the untruncated distribution. */
export function refTopLogprobs(
  row: ArrayLike<number>,
  temperature: number,
  n: number,
): { tokens: number[]; logprobs: number[] } {
  const logp = refRowLogprobs(row, temperature);
  const order = Array.from({ length: row.length }, (_, i) => i)
    .filter((i) => logp[i] > Number.NEGATIVE_INFINITY)
    .sort((a, b) => logp[b] - logp[a] || a - b);
  const tokens = order.slice(0, n);
  const logprobs = tokens.map((i) => logp[i]);
  // Fewer allowed tokens than n: the kernel's filler slots.
  while (tokens.length < n) {
    tokens.push(0xffffffff);
    logprobs.push(-3.4028234e38);
  }
  return { tokens, logprobs };
}
