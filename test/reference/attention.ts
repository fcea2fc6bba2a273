// Plain-TypeScript f64 reference for causal grouped-query attention over packed sequences:
// naive softmax(q·kᵀ·scale)·v per query row (no online tricks), its logsumexp, and gradients
// derived by hand. The GPU kernels are checked against these.
//
// Layouts as in the kernels: q/out [T, H, D], k/v [T, KV, D], lse [H, T]; query head h uses kv
// head floor(h / (H / KV)); token t attends keys seqStart[t] ..= t, or with `window` only keys j
// with j > t − window (transformers' sliding-window mask), so the window's start is
// max(seqStart[t], t − window + 1).

export interface RefAttentionOptions {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  scale?: number;
  /** Sliding window (keys a query sees, itself included); absent or null: the whole prefix. */
  window?: number | null;
}

interface Dims {
  T: number;
  H: number;
  KV: number;
  D: number;
  G: number;
  scale: number;
  window: number;
}

function dims(q: ArrayLike<number>, opts: RefAttentionOptions): Dims {
  const { nHeads: H, nKvHeads: KV, headDim: D } = opts;
  return {
    T: q.length / (H * D),
    H,
    KV,
    D,
    G: H / KV,
    scale: opts.scale ?? 1 / Math.sqrt(D),
    window: opts.window ?? Number.POSITIVE_INFINITY,
  };
}

/** First key token t attends: its sequence's start, or the window's when that is later. */
function firstKey(t: number, seqStart: ArrayLike<number>, d: Dims): number {
  return Math.max(seqStart[t], t - d.window + 1);
}

/** Softmax probabilities of row (t, h) over keys start..=t, with the row's logsumexp. */
function rowProbs(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  t: number,
  h: number,
  start: number,
  d: Dims,
): { p: number[]; lse: number } {
  const kvh = Math.floor(h / d.G);
  const scores: number[] = [];
  for (let j = start; j <= t; j++) {
    let s = 0;
    for (let i = 0; i < d.D; i++) s += q[(t * d.H + h) * d.D + i] * k[(j * d.KV + kvh) * d.D + i];
    scores.push(s * d.scale);
  }
  const m = Math.max(...scores);
  let sum = 0;
  for (const s of scores) sum += Math.exp(s - m);
  const lse = m + Math.log(sum);
  return { p: scores.map((s) => Math.exp(s - lse)), lse };
}

/** Forward: out [T, H, D] and lse [H, T], in f64. */
export function attentionReference(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  seqStart: ArrayLike<number>,
  opts: RefAttentionOptions,
): { out: Float64Array; lse: Float64Array } {
  const d = dims(q, opts);
  const out = new Float64Array(d.T * d.H * d.D);
  const lse = new Float64Array(d.H * d.T);
  for (let t = 0; t < d.T; t++) {
    for (let h = 0; h < d.H; h++) {
      const kvh = Math.floor(h / d.G);
      const start = firstKey(t, seqStart, d);
      const row = rowProbs(q, k, t, h, start, d);
      lse[h * d.T + t] = row.lse;
      for (let j = start; j <= t; j++) {
        const pj = row.p[j - start];
        for (let i = 0; i < d.D; i++) out[(t * d.H + h) * d.D + i] += pj * v[(j * d.KV + kvh) * d.D + i];
      }
    }
  }
  return { out, lse };
}

/**
 * Backward for the loss Σ out ⊙ dOut. With P = softmax(S), S = scale·q·kᵀ:
 *   dv_j = Σ_t P_tj dO_t,  dP_tj = dO_t·v_j,  dS_tj = P_tj (dP_tj − Σ_j' P_tj' dP_tj'),
 *   dq_t = scale Σ_j dS_tj k_j,  dk_j = scale Σ_t dS_tj q_t  (dk/dv summed over a group's heads).
 */
export function attentionBackwardReference(
  dOut: ArrayLike<number>,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  seqStart: ArrayLike<number>,
  opts: RefAttentionOptions,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const d = dims(q, opts);
  const dq = new Float64Array(d.T * d.H * d.D);
  const dk = new Float64Array(d.T * d.KV * d.D);
  const dv = new Float64Array(d.T * d.KV * d.D);
  for (let t = 0; t < d.T; t++) {
    for (let h = 0; h < d.H; h++) {
      const kvh = Math.floor(h / d.G);
      const start = firstKey(t, seqStart, d);
      const { p } = rowProbs(q, k, t, h, start, d);
      const qo = (t * d.H + h) * d.D;
      const dp = p.map((_, n) => {
        let s = 0;
        for (let i = 0; i < d.D; i++) s += dOut[qo + i] * v[((start + n) * d.KV + kvh) * d.D + i];
        return s;
      });
      let rowDot = 0;
      for (let n = 0; n < p.length; n++) rowDot += p[n] * dp[n];
      for (let n = 0; n < p.length; n++) {
        const ko = ((start + n) * d.KV + kvh) * d.D;
        const ds = p[n] * (dp[n] - rowDot);
        for (let i = 0; i < d.D; i++) {
          dv[ko + i] += p[n] * dOut[qo + i];
          dq[qo + i] += d.scale * ds * k[ko + i];
          dk[ko + i] += d.scale * ds * q[qo + i];
        }
      }
    }
  }
  return { dq, dk, dv };
}
