// Launchers for attention.wgsl and attention_sg.wgsl (the same passes with rows shared by subgroup
// shuffle, the default on software adapters): causal grouped-query attention over packed variable-length
// sequences (training forward with saved logsumexp, and its backward), plus the shape checks
// and helpers (packing sequence lengths into `seqStart`) shared with the KV-cache kernels.

import { adapterKind } from "../autotune.ts";
import type { Gpu } from "../device.ts";
import { grid1d } from "../grid.ts";
import type { Defines } from "../pipeline.ts";
import type { Tensor } from "../tensor.ts";
import { requireShape, vectorDefines } from "./launch.ts";

/** Heads and sizes of one attention layer. */
export interface AttentionOptions {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Softmax temperature on q·k; defaults to 1/sqrt(headDim). */
  scale?: number;
  /**
   * Sliding window: each query attends only the last `window` keys of its causal prefix, itself
   * included (transformers' `kv_idx > q_idx - sliding_window`). Absent or null: the whole prefix.
   */
  window?: number | null;
  /**
   * Kernel variant (defaults per adapter, see `attentionVariant`): query heads of one kv group
   * handled per invocation (must divide nHeads / nKvHeads).
   */
  headsPerInvocation?: number;
  /**
   * Share each K/V (forward, dq) or q/dO (dk/dv) row across 8 subgroup lanes instead of every
   * lane loading it (attention_sg.wgsl; needs the subgroups feature). Default: on software
   * adapters with subgroups, where loads dominate; GPUs keep attention.wgsl until measured.
   */
  sharedLoads?: boolean;
}

export interface AttentionResult {
  /** [tokens, nHeads, headDim] */
  out: Tensor;
  /** logsumexp of each row's scaled scores, [nHeads, tokens]; the backward pass needs it. */
  lse: Tensor;
}

export interface AttentionGrads {
  /** [tokens, nHeads, headDim] */
  dq: Tensor;
  /** [tokens, nKvHeads, headDim], summed over the query heads sharing each kv head. */
  dk: Tensor;
  /** [tokens, nKvHeads, headDim] */
  dv: Tensor;
}

/**
 * Largest head dimension the kernels hold in private arrays: 256, Gemma 3's (1B–12B). On software
 * adapters `attentionVariant` then takes fewer query heads per invocation to stay in budget.
 */
export const MAX_HEAD_DIM = 256;
const WG = 64;

/** Checks the head configuration and returns the resolved scale, group size and window (0: none). */
export function resolveHeads(opts: AttentionOptions, what: string): { scale: number; group: number; window: number } {
  const { nHeads, nKvHeads, headDim } = opts;
  for (const [name, value] of [
    ["nHeads", nHeads],
    ["nKvHeads", nKvHeads],
    ["headDim", headDim],
  ] as const) {
    if (!Number.isInteger(value) || value < 1)
      throw new Error(`${what}: ${name} must be a positive integer, got ${value}`);
  }
  if (nHeads % nKvHeads !== 0) {
    throw new Error(`${what}: nKvHeads (${nKvHeads}) must divide nHeads (${nHeads}) for grouped-query attention`);
  }
  if (headDim > MAX_HEAD_DIM) throw new Error(`${what}: headDim ${headDim} exceeds the supported ${MAX_HEAD_DIM}`);
  const scale = opts.scale ?? 1 / Math.sqrt(headDim);
  if (!Number.isFinite(scale)) throw new Error(`${what}: scale must be a finite number, got ${opts.scale}`);
  const window = opts.window ?? 0;
  if (!Number.isInteger(window) || window < 0 || (opts.window != null && window < 1)) {
    throw new Error(`${what}: window must be a positive integer or null, got ${opts.window}`);
  }
  return { scale, group: nHeads / nKvHeads, window };
}

/**
 * Shader defines for a head dimension: vec4 storage when headDim is a multiple of 4 (a quarter
 * of the loads, which is what costs on lavapipe), scalar storage otherwise.
 */
export function headDimDefines(headDim: number): Defines {
  return headDim % 4 === 0 ? { ...vectorDefines(4), HDV: headDim / 4 } : { ...vectorDefines(1), HDV: headDim };
}

/** Resolved kernel variant for one call. */
export interface AttentionVariant {
  headsPerInvocation: number;
  /** attention_sg.wgsl (rows shared by subgroup shuffle) instead of attention.wgsl. */
  sharedLoads: boolean;
}

/** Private vec4s an invocation may hold per row set before the variant stops paying off. */
const SOFTWARE_REGISTER_BUDGET = 128;

/**
 * The kernel variant for these heads on this adapter, unless the options pin one. On software
 * adapters (lavapipe) storage loads dominate, so an invocation takes a whole GQA group's query
 * heads (each K/V row loaded once for all of them): ~1.4× faster forward and backward, 2–3×
 * in decode, measured with bench/kernels/attention.ts. On GPUs those private arrays would spill
 * registers, so one head per invocation (neighbouring lanes then share K/V rows in cache).
 */
export function attentionVariant(gpu: Gpu, opts: AttentionOptions, what: string): AttentionVariant {
  const group = opts.nHeads / opts.nKvHeads;
  let heads = opts.headsPerInvocation;
  if (heads === undefined) {
    heads = 1;
    if (adapterKind(gpu) === "software") {
      const hdv = Number(headDimDefines(opts.headDim).HDV);
      for (let d = group; d > 1; d--) {
        if (group % d === 0 && d * hdv <= SOFTWARE_REGISTER_BUDGET) {
          heads = d;
          break;
        }
      }
    }
  }
  if (!Number.isInteger(heads) || heads < 1 || group % heads !== 0) {
    throw new Error(`${what}: headsPerInvocation must divide the group size ${group}, got ${heads}`);
  }
  const sharedLoads = opts.sharedLoads ?? (gpu.features.subgroups && adapterKind(gpu) === "software");
  if (sharedLoads && !gpu.features.subgroups) throw new Error(`${what}: sharedLoads needs the subgroups feature`);
  return { headsPerInvocation: heads, sharedLoads };
}

/** Invocations of a pass over `tokens` rows in each of `blocks` blocks: tokens padded to whole groups of 8 when shared. */
function passSize(tokens: number, blocks: number, variant: AttentionVariant): number {
  return (variant.sharedLoads ? Math.ceil(tokens / 8) * 8 : tokens) * blocks;
}

/** Shader defines for a head dimension and kernel variant (both shaders take the same ones). */
export function variantDefines(headDim: number, variant: Pick<AttentionVariant, "headsPerInvocation">): Defines {
  return { ...headDimDefines(headDim), HPI: variant.headsPerInvocation };
}

function tokensOf(q: Tensor, opts: AttentionOptions, what: string): number {
  if (q.shape.length !== 3)
    throw new Error(`${what}: q must be [tokens, nHeads, headDim], got [${q.shape.join(", ")}]`);
  const tokens = q.shape[0];
  if (tokens < 1) throw new Error(`${what}: q has no tokens`);
  requireShape(q, [tokens, opts.nHeads, opts.headDim], what, "q", "f32");
  return tokens;
}

/**
 * `seqStart` for sequences of the given lengths packed back to back: each token gets the index
 * of its sequence's first token. A padding token is a sequence of length 1.
 */
export function packedSeqStart(lengths: readonly number[]): Uint32Array {
  let total = 0;
  for (const n of lengths) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`packedSeqStart: sequence lengths must be ≥ 1, got ${n}`);
    total += n;
  }
  const out = new Uint32Array(total);
  let start = 0;
  for (const n of lengths) {
    out.fill(start, start, start + n);
    start += n;
  }
  return out;
}

/**
 * Checks a CPU copy of `seqStart` before upload: the kernels need contiguous sequences, i.e.
 * seqStart[t] is either seqStart[t−1] (same sequence) or t (a new one).
 */
export function validateSeqStart(seqStart: ArrayLike<number>): void {
  for (let t = 0; t < seqStart.length; t++) {
    const s = seqStart[t];
    const ok = s === t || (t > 0 && s === seqStart[t - 1]);
    if (!ok) {
      throw new Error(
        `seqStart[${t}] = ${s}: sequences must be packed contiguously (expected ${t}` +
          (t > 0 ? ` or seqStart[${t - 1}] = ${seqStart[t - 1]})` : ")"),
      );
    }
  }
}

/**
 * Causal attention over a packed batch: token t attends keys seqStart[t] ..= t (its own
 * sequence only; with `opts.window` only the last `window` of them). q [tokens, nHeads, headDim], k/v [tokens, nKvHeads, headDim], seqStart u32
 * [tokens] (contiguous sequences, see `packedSeqStart`). Returns out and the logsumexp the
 * backward pass needs.
 */
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  seqStart: Tensor,
  opts: AttentionOptions,
  into?: Partial<AttentionResult>,
): AttentionResult {
  const what = "attention";
  const { scale, group, window } = resolveHeads(opts, what);
  const tokens = tokensOf(q, opts, what);
  const { nHeads, nKvHeads, headDim } = opts;
  requireShape(k, [tokens, nKvHeads, headDim], what, "k", "f32");
  requireShape(v, [tokens, nKvHeads, headDim], what, "v", "f32");
  requireShape(seqStart, [tokens], what, "seqStart", "u32");
  const gpu = q.gpu;
  const out = into?.out ?? gpu.tensor([tokens, nHeads, headDim]);
  const lse = into?.lse ?? gpu.tensor([nHeads, tokens]);
  requireShape(out, [tokens, nHeads, headDim], what, "out", "f32");
  requireShape(lse, [nHeads, tokens], what, "lse", "f32");
  const variant = attentionVariant(gpu, opts, what);
  gpu.commands.dispatch({
    shader: variant.sharedLoads ? "attention_sg" : "attention",
    entry: "attn_fwd",
    defines: variantDefines(headDim, variant),
    bindings: [q, k, v, seqStart, out, lse],
    params: { tokens, n_heads: nHeads, n_kv: nKvHeads, group, scale, window },
    workgroups: grid1d(gpu, passSize(tokens, nHeads / variant.headsPerInvocation, variant), WG),
  });
  return { out, lse };
}

/**
 * Gradients of `attention` given dOut: dq, and dk/dv summed over each kv head's query heads.
 * `out` and `lse` are the forward's results for the same inputs.
 */
export function attentionBackward(
  dOut: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  seqStart: Tensor,
  opts: AttentionOptions,
): AttentionGrads {
  const what = "attentionBackward";
  const { scale, group, window } = resolveHeads(opts, what);
  const tokens = tokensOf(q, opts, what);
  const { nHeads, nKvHeads, headDim } = opts;
  requireShape(k, [tokens, nKvHeads, headDim], what, "k", "f32");
  requireShape(v, [tokens, nKvHeads, headDim], what, "v", "f32");
  requireShape(dOut, [tokens, nHeads, headDim], what, "dOut", "f32");
  requireShape(out, [tokens, nHeads, headDim], what, "out", "f32");
  requireShape(lse, [nHeads, tokens], what, "lse", "f32");
  requireShape(seqStart, [tokens], what, "seqStart", "u32");
  const gpu: Gpu = q.gpu;
  const variant = attentionVariant(gpu, opts, what);
  const defines = variantDefines(headDim, variant);
  const params = { tokens, n_heads: nHeads, n_kv: nKvHeads, group, scale, window };
  const stats = gpu.tensor([nHeads, tokens, 2]);
  gpu.commands.dispatch({
    shader: "attention",
    entry: "attn_bwd_stats",
    defines,
    bindings: [dOut, out, lse, stats],
    params,
    workgroups: grid1d(gpu, tokens * nHeads, WG),
  });
  const dq = gpu.tensor([tokens, nHeads, headDim]);
  const shader = variant.sharedLoads ? "attention_sg" : "attention";
  gpu.commands.dispatch({
    shader,
    entry: "attn_bwd_dq",
    defines,
    bindings: [q, k, v, seqStart, dOut, stats, dq],
    params,
    workgroups: grid1d(gpu, passSize(tokens, nHeads / variant.headsPerInvocation, variant), WG),
  });
  const dk = gpu.tensor([tokens, nKvHeads, headDim]);
  const dv = gpu.tensor([tokens, nKvHeads, headDim]);
  gpu.commands.dispatch({
    shader,
    entry: "attn_bwd_dkdv",
    defines,
    bindings: [q, k, v, seqStart, dOut, stats, dk, dv],
    params,
    workgroups: grid1d(gpu, passSize(tokens, nKvHeads, variant), WG),
  });
  // Safe before the GPU ran: the pool only hands the buffer out again to later-recorded work.
  stats.dispose();
  return { dq, dk, dv };
}
