// Launcher for sampling.wgsl: picks one token per row of logits [rows, vocab] on the GPU with
// temperature / top-k / top-p and a counter-based random stream, and returns the token's logprob
// under the untruncated tempered distribution (what the RL trainer recomputes), plus optionally
// the top-N alternatives for OpenAI's `top_logprobs`. Rows may carry an allowed-token mask
// (structured output): masked tokens are removed before everything else, and such calls also
// return each token's unmasked logprob. The algorithm is documented in the shader.

import type { Tensor } from "../tensor.ts";

/** Words per row in the per-row parameter table (sampling.wgsl's RowParams). */
const ROW_PARAM_WORDS = 8;
/** OpenAI's limit on `top_logprobs`, and the shader's gather buffer size. */
export const MAX_TOP_LOGPROBS = 20;

export interface SamplingParams {
  /** Softmax temperature; 0 = greedy argmax (its logprob uses T = 1). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens (ties at the k-th value are all kept); 0 = off. Default 0. */
  topK?: number;
  /** Keep the smallest most-likely set with probability ≥ topP (after top-k); 1 = off. Default 1. */
  topP?: number;
  /** u32 seed of the row's random stream. Default 0. */
  seed?: number;
  /** u32 counter within the stream (e.g. the decode position). Default 0. */
  step?: number;
}

export interface SampleOptions {
  /** Also return the N ≤ 20 most likely tokens per row with their logprobs. Default 0. */
  topLogprobs?: number;
  /**
   * Allowed tokens per row (one entry per row; null/undefined = unmasked): bit c % 32 of word
   * ⌊c / 32⌋ set = token c may be sampled, `maskWords(vocab)` words, at least one bit set.
   */
  masks?: readonly (Uint32Array | null | undefined)[];
}

/** u32 words of one row's token mask. */
export function maskWords(vocab: number): number {
  return Math.ceil(vocab / 32);
}

export interface SampleResult {
  /** u32 [rows]. */
  tokens: Tensor;
  /**
   * f32 [rows]: log softmax(logits / T)[token], untruncated (T = 1 for greedy rows); on a masked
   * row, under the masked distribution (softmax over the allowed tokens only).
   */
  logprobs: Tensor;
  /** f32 [rows], only when `masks` was given: the same logprob without the mask. */
  unmaskedLogprobs?: Tensor;
  /** u32 [rows, N], most likely first (only when topLogprobs > 0). */
  topTokens?: Tensor;
  /**
   * f32 [rows, N] matching topTokens. A masked row with fewer than N allowed tokens fills the
   * remaining slots with token 0xffffffff and logprob −3.4028234e38.
   */
  topLogprobs?: Tensor;
}

/**
 * Invocations per row for a vocabulary: 32 for small vocabularies (barriers dominate there),
 * 256 otherwise. Two sizes keep lavapipe's one-off compile cost (~6 s per variant) down. It
 * depends on the vocabulary alone so a row's token never depends on the adapter.
 */
export function samplingWorkgroupSize(vocab: number): number {
  return vocab < 2048 ? 32 : 256;
}

function isU32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

/** Packs and validates one row's parameters into `view` at word `row · ROW_PARAM_WORDS`. */
function packRow(view: DataView, row: number, params: SamplingParams, vocab: number): void {
  const temperature = params.temperature ?? 1;
  const topK = params.topK ?? 0;
  const topP = params.topP ?? 1;
  const seed = params.seed ?? 0;
  const step = params.step ?? 0;
  const where = `sample: row ${row}`;
  if (!Number.isFinite(temperature) || temperature < 0) {
    throw new Error(`${where}: temperature must be finite and ≥ 0 (0 = greedy), got ${temperature}`);
  }
  if (temperature > 0 && !Number.isFinite(1 / temperature))
    throw new Error(`${where}: temperature ${temperature} is too small`);
  if (!isU32(topK)) throw new Error(`${where}: topK must be an integer ≥ 0 (0 = off), got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new Error(`${where}: topP must be in (0, 1] (1 = off), got ${topP}`);
  if (!isU32(seed) || !isU32(step))
    throw new Error(`${where}: seed and step must be u32 integers, got ${seed}, ${step}`);
  const at = row * ROW_PARAM_WORDS * 4;
  view.setFloat32(at, temperature, true);
  view.setUint32(at + 4, Math.min(topK, vocab), true);
  view.setFloat32(at + 8, topP, true);
  view.setUint32(at + 12, seed, true);
  view.setUint32(at + 16, step, true);
}

/** Checks the masks and packs them into one [rows, words] table (unmasked rows left zero). */
function packMasks(masks: readonly (Uint32Array | null | undefined)[], rows: number, vocab: number): Uint32Array {
  if (masks.length !== rows) throw new Error(`sample: got ${masks.length} masks for ${rows} rows (one per row)`);
  const words = maskWords(vocab);
  const table = new Uint32Array(rows * words);
  masks.forEach((m, r) => {
    if (!m) return;
    if (m.length !== words) throw new Error(`sample: row ${r}'s mask has ${m.length} words, expected ${words}`);
    let any = false;
    for (let w = 0; w < words && !any; w++) {
      const bits = w === words - 1 && vocab % 32 !== 0 ? m[w] & ((1 << (vocab % 32)) - 1) : m[w];
      any = bits !== 0;
    }
    if (!any) throw new Error(`sample: row ${r}'s mask allows no token`);
    table.set(m, r * words);
  });
  return table;
}

/**
 * Samples one token per row of `logits` [rows, vocab] (f32). `params` is one setting for every
 * row or one per row. Same (logits, params) → same tokens on any adapter and batch composition.
 */
export function sample(
  logits: Tensor,
  params: SamplingParams | readonly SamplingParams[],
  options: SampleOptions = {},
): SampleResult {
  if (logits.dtype !== "f32") throw new Error(`sample: logits must be f32, got ${logits.dtype}`);
  if (logits.shape.length !== 2 || logits.shape[0] < 1 || logits.shape[1] < 1) {
    throw new Error(`sample: logits must be [rows ≥ 1, vocab ≥ 1], got [${logits.shape.join(", ")}]`);
  }
  const [rows, vocab] = logits.shape;
  const gpu = logits.gpu;
  const maxGroups = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (rows > maxGroups) throw new Error(`sample: at most ${maxGroups} rows per call, got ${rows}`);
  if (logits.byteLength > gpu.maxBindingSize) {
    const fit = Math.floor(gpu.maxBindingSize / (vocab * 4));
    throw new Error(
      `sample: ${rows} rows × ${vocab} logits exceed one storage binding; pass at most ${fit} rows per call`,
    );
  }
  const topN = options.topLogprobs ?? 0;
  if (!Number.isInteger(topN) || topN < 0 || topN > MAX_TOP_LOGPROBS) {
    throw new Error(`sample: topLogprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${topN}`);
  }
  if (topN > vocab) throw new Error(`sample: topLogprobs ${topN} exceeds the vocabulary size ${vocab}`);
  const perRow = Array.isArray(params);
  if (perRow && params.length !== rows) {
    throw new Error(`sample: got ${params.length} parameter sets for ${rows} rows (pass one per row, or one object)`);
  }
  const table = new Uint32Array(rows * ROW_PARAM_WORDS);
  const view = new DataView(table.buffer);
  for (let r = 0; r < rows; r++) {
    packRow(view, r, perRow ? (params as readonly SamplingParams[])[r] : (params as SamplingParams), vocab);
  }
  const masks = options.masks;
  const maskTable = masks ? packMasks(masks, rows, vocab) : null;
  // RowParams.masked (word 5).
  for (let r = 0; masks && r < rows; r++) view.setUint32(r * ROW_PARAM_WORDS * 4 + 20, masks[r] ? 1 : 0, true);
  const rowParams = gpu.tensor([rows, ROW_PARAM_WORDS], "u32", table);
  const maskTensor = maskTable ? gpu.tensor([maskTable.length], "u32", maskTable) : null;
  const aligned = vocab % 4 === 0;
  const workgroupSize = samplingWorkgroupSize(vocab);
  const tokens = gpu.tensor([rows], "u32");
  // Masked calls write the unmasked logprobs after the masked ones.
  const logprobOut = gpu.tensor([maskTensor ? 2 * rows : rows]);
  const topTokens = gpu.tensor([rows, Math.max(1, topN)], "u32");
  const topLogprobs = gpu.tensor([rows, Math.max(1, topN)]);
  gpu.commands.dispatch({
    shader: "sampling",
    entry: "sample_rows",
    constants: { WG: workgroupSize },
    // Binding 6 is the vec4 view of the logits, read only when rows are vec4-aligned.
    // Binding 7 is the mask table, read only on masked rows.
    bindings: [
      logits,
      rowParams,
      tokens,
      logprobOut,
      topTokens,
      topLogprobs,
      aligned ? logits : rowParams,
      maskTensor ?? rowParams,
    ],
    params: { rows, vocab, top_n: topN, aligned: aligned ? 1 : 0, mask_words: maskTensor ? maskWords(vocab) : 0 },
    workgroups: [rows],
  });
  rowParams.dispose();
  maskTensor?.dispose();
  const result: SampleResult = { tokens, logprobs: logprobOut };
  if (maskTensor) {
    result.logprobs = gpu.tensor([rows]);
    result.unmaskedLogprobs = gpu.tensor([rows]);
    gpu.commands.copyBufferToBuffer(logprobOut.buffer, logprobOut.byteOffset, result.logprobs.buffer, 0, rows * 4);
    gpu.commands.copyBufferToBuffer(
      logprobOut.buffer,
      logprobOut.byteOffset + rows * 4,
      result.unmaskedLogprobs.buffer,
      0,
      rows * 4,
    );
    logprobOut.dispose();
  }
  if (topN === 0) {
    topTokens.dispose();
    topLogprobs.dispose();
    return result;
  }
  return { ...result, topTokens, topLogprobs };
}
