// Reference Qwen2/Qwen3/Llama/Mistral/Gemma 3 forward pass in plain TypeScript with f64
// accumulation: the source of truth the GPU transformer is checked against. Written to read like
// the architecture diagram (and transformers' modeling_qwen2.py / modeling_qwen3.py /
// modeling_llama.py / modeling_mistral.py / modeling_gemma3.py), not to be fast. Written
// independently of the GPU path's per-layer plan: window, scale and RoPE base come from the HF
// config fields directly.

import {
  assertRunnable,
  embeddingScale,
  type ModelConfig,
  type ProjectionName,
  projectionHasBias,
  projectionPath,
  projectionShape,
  ropeInverseFrequencies,
} from "../../src/model/config.ts";
import type { Checkpoint } from "../../src/model/loader.ts";
import { loraScale, type PeftAdapter, peftKey } from "../../src/model/peft.ts";

/** Weights as loaded (f32), or f64 when a test builds exact variants (e.g. merged LoRA). */
export type WeightArray = Float32Array | Float64Array;

/** A model with every needed tensor in memory, widened to f64 on use. */
export interface ReferenceModel {
  config: ModelConfig;
  weights: Map<string, WeightArray>;
}

/** Reads every tensor the config needs from a checkpoint into memory. */
export async function loadReferenceModel(checkpoint: Checkpoint): Promise<ReferenceModel> {
  const weights = new Map<string, WeightArray>();
  for await (const [name, , data] of checkpoint.tensors()) weights.set(name, data);
  return { config: checkpoint.config, weights };
}

function weight(model: ReferenceModel, name: string): WeightArray {
  const w = model.weights.get(name);
  if (!w) throw new Error(`reference model has no tensor ${name}`);
  return w;
}

/** y[t, o] = Σ_i x[t, i] · W[o, i] (+ b[o]) — torch nn.Linear with W stored [out, in]. */
function linear(
  x: Float64Array,
  rows: number,
  inFeatures: number,
  w: ArrayLike<number>,
  outFeatures: number,
  bias?: ArrayLike<number>,
): Float64Array {
  const y = new Float64Array(rows * outFeatures);
  for (let t = 0; t < rows; t++) {
    for (let o = 0; o < outFeatures; o++) {
      let acc = bias ? bias[o] : 0;
      for (let i = 0; i < inFeatures; i++) acc += x[t * inFeatures + i] * w[o * inFeatures + i];
      y[t * outFeatures + o] = acc;
    }
  }
  return y;
}

/** A projection of layer `layer`, with bias where the architecture has one and LoRA if targeted. */
function project(
  model: ReferenceModel,
  layer: number,
  proj: ProjectionName,
  x: Float64Array,
  rows: number,
  lora?: PeftAdapter,
): Float64Array {
  const path = projectionPath(layer, proj);
  const [out, inp] = projectionShape(model.config, proj);
  const bias = projectionHasBias(model.config, proj) ? weight(model, `${path}.bias`) : undefined;
  const y = linear(x, rows, inp, weight(model, `${path}.weight`), out, bias);
  const layers = lora?.config.layersToTransform;
  if (lora?.config.targetModules.includes(proj) && (!layers || layers.includes(layer))) {
    // y += scale · (x · Aᵀ) · Bᵀ with A [r, in] and B [out, r].
    const r = lora.config.r;
    const a = lora.tensors.get(peftKey(layer, proj, "A"));
    const b = lora.tensors.get(peftKey(layer, proj, "B"));
    if (!a || !b) throw new Error(`LoRA adapter lacks ${proj} factors for layer ${layer}`);
    const xa = linear(x, rows, inp, a.data, r);
    const delta = linear(xa, rows, r, b.data, out);
    const scale = loraScale(lora.config);
    for (let i = 0; i < y.length; i++) y[i] += scale * delta[i];
  }
  return y;
}

/** RMSNorm per row: x / sqrt(mean(x²) + eps) · w, or · (1 + w) for Gemma (Gemma3RMSNorm). */
function rmsNorm(
  x: Float64Array,
  rows: number,
  dim: number,
  w: ArrayLike<number>,
  eps: number,
  gemma: boolean,
): Float64Array {
  const y = new Float64Array(x.length);
  const off = gemma ? 1 : 0;
  for (let t = 0; t < rows; t++) {
    let sumSq = 0;
    for (let i = 0; i < dim; i++) sumSq += x[t * dim + i] ** 2;
    const inv = 1 / Math.sqrt(sumSq / dim + eps);
    for (let i = 0; i < dim; i++) y[t * dim + i] = x[t * dim + i] * inv * (off + w[i]);
  }
  return y;
}

/**
 * Rotary embedding in place, HF "rotate half" layout: within each head, element i pairs with
 * i + headDim/2 and both rotate by angle position · invFreq[i].
 */
function applyRope(x: Float64Array, rows: number, heads: number, headDim: number, invFreq: Float64Array): void {
  const half = headDim / 2;
  for (let t = 0; t < rows; t++) {
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const angle = t * invFreq[i];
        const cos = Math.cos(angle);
        const sin = Math.sin(angle);
        const a = x[base + i];
        const b = x[base + i + half];
        x[base + i] = a * cos - b * sin;
        x[base + i + half] = b * cos + a * sin;
      }
    }
  }
}

/**
 * Causal grouped-query attention: query head h reads kv head ⌊h / (heads / kvHeads)⌋; with a
 * sliding window, query t sees keys s > t − window only (transformers' sliding-window mask).
 */
function causalAttention(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  rows: number,
  config: ModelConfig,
  scale: number,
  window: number | null,
): Float64Array {
  const { numHeads, numKvHeads, headDim } = config;
  const group = numHeads / numKvHeads;
  const out = new Float64Array(rows * numHeads * headDim);
  const scores = new Float64Array(rows);
  for (let h = 0; h < numHeads; h++) {
    const kvh = Math.floor(h / group);
    for (let t = 0; t < rows; t++) {
      const qBase = (t * numHeads + h) * headDim;
      const first = window === null ? 0 : Math.max(0, t - window + 1);
      for (let s = 0; s < first; s++) scores[s] = 0;
      let max = Number.NEGATIVE_INFINITY;
      for (let s = first; s <= t; s++) {
        const kBase = (s * numKvHeads + kvh) * headDim;
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q[qBase + d] * k[kBase + d];
        scores[s] = dot * scale;
        max = Math.max(max, scores[s]);
      }
      let sum = 0;
      for (let s = first; s <= t; s++) {
        scores[s] = Math.exp(scores[s] - max);
        sum += scores[s];
      }
      for (let s = first; s <= t; s++) {
        const p = scores[s] / sum;
        const vBase = (s * numKvHeads + kvh) * headDim;
        for (let d = 0; d < headDim; d++) out[qBase + d] += p * v[vBase + d];
      }
    }
  }
  return out;
}

const silu = (x: number) => x / (1 + Math.exp(-x));
/** PyTorch's gelu(approximate="tanh"), transformers' "gelu_pytorch_tanh" (Gemma 3). */
const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/**
 * Window, score scale and RoPE inverse frequencies of layer `l`, read from the HF fields:
 * Gemma 3 local layers (layer_types / every sliding_window_pattern-th layer global) use
 * sliding_window and rope_local_base_freq unscaled, its global layers rope_theta with
 * rope_scaling; Gemma scales scores by query_pre_attn_scalar^-½; Mistral windows every layer.
 */
function layerSetup(c: ModelConfig, l: number): { window: number | null; scale: number; invFreq: Float64Array } {
  const g = c.gemma3;
  if (!g) {
    return {
      window: c.architecture === "MistralForCausalLM" ? c.slidingWindow : null,
      scale: 1 / Math.sqrt(c.headDim),
      invFreq: ropeInverseFrequencies(c),
    };
  }
  const local = g.slidingLayers[l];
  const invFreq = local
    ? Float64Array.from({ length: c.headDim / 2 }, (_, i) => g.ropeLocalTheta ** ((-2 * i) / c.headDim))
    : ropeInverseFrequencies({ ...c, gemma3: null });
  return { window: local ? c.slidingWindow : null, scale: 1 / Math.sqrt(g.queryPreAttnScalar), invFreq };
}

/** Logits [T × vocab] for `tokens` (positions 0..T-1), optionally with a LoRA adapter applied. */
export function referenceForward(model: ReferenceModel, tokens: ArrayLike<number>, lora?: PeftAdapter): Float64Array {
  const c = model.config;
  const T = tokens.length;
  const H = c.hiddenSize;
  if (T === 0) throw new Error("referenceForward needs at least one token");
  assertRunnable(c, T);

  // Embedding lookup (Gemma: rows × √hidden in the checkpoint's dtype).
  const embed = weight(model, "model.embed_tokens.weight");
  const gemma = c.gemma3 !== null;
  const embedScale = embeddingScale(c);
  let hidden = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    const id = tokens[t];
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize)
      throw new Error(`token ${id} outside vocab [0, ${c.vocabSize})`);
    for (let i = 0; i < H; i++) hidden[t * H + i] = embed[id * H + i] * embedScale;
  }

  const norm = (x: Float64Array, rows: number, dim: number, name: string) =>
    rmsNorm(x, rows, dim, weight(model, name), c.rmsNormEps, gemma);
  for (let l = 0; l < c.numLayers; l++) {
    const { window, scale, invFreq } = layerSetup(c, l);
    const prefix = `model.layers.${l}`;
    // Attention block: RMSNorm → q/k/v → [q/k norms] → RoPE → causal GQA → o_proj
    // [Gemma: → RMSNorm] → residual.
    const normed = norm(hidden, T, H, `${prefix}.input_layernorm.weight`);
    const q = project(model, l, "q_proj", normed, T, lora);
    const k = project(model, l, "k_proj", normed, T, lora);
    const v = project(model, l, "v_proj", normed, T, lora);
    if (c.qkNorm) {
      // Qwen3, Gemma 3: RMSNorm over each head's headDim values (rows = token·head), before RoPE.
      q.set(norm(q, T * c.numHeads, c.headDim, `${prefix}.self_attn.q_norm.weight`));
      k.set(norm(k, T * c.numKvHeads, c.headDim, `${prefix}.self_attn.k_norm.weight`));
    }
    applyRope(q, T, c.numHeads, c.headDim, invFreq);
    applyRope(k, T, c.numKvHeads, c.headDim, invFreq);
    const attn = causalAttention(q, k, v, T, c, scale, window);
    let o = project(model, l, "o_proj", attn, T, lora);
    if (gemma) o = norm(o, T, H, `${prefix}.post_attention_layernorm.weight`);
    for (let i = 0; i < hidden.length; i++) hidden[i] += o[i];

    // MLP block: RMSNorm → down(act(gate) · up) [Gemma: → RMSNorm] → residual.
    const preMlp = gemma ? `${prefix}.pre_feedforward_layernorm.weight` : `${prefix}.post_attention_layernorm.weight`;
    const normed2 = norm(hidden, T, H, preMlp);
    const gate = project(model, l, "gate_proj", normed2, T, lora);
    const up = project(model, l, "up_proj", normed2, T, lora);
    const act = gemma ? geluTanh : silu;
    for (let i = 0; i < gate.length; i++) gate[i] = act(gate[i]) * up[i];
    let down = project(model, l, "down_proj", gate, T, lora);
    if (gemma) down = norm(down, T, H, `${prefix}.post_feedforward_layernorm.weight`);
    const next = new Float64Array(hidden.length);
    for (let i = 0; i < hidden.length; i++) next[i] = hidden[i] + down[i];
    hidden = next;
  }

  const final = norm(hidden, T, H, "model.norm.weight");
  const head = c.tieWordEmbeddings ? embed : weight(model, "lm_head.weight");
  return linear(final, T, H, head, c.vocabSize);
}

/** Loads a checkpoint's weights and returns logits [T × vocab] for `tokens`. */
export async function referenceLogits(
  checkpoint: Checkpoint,
  tokens: ArrayLike<number>,
  lora?: PeftAdapter,
): Promise<Float64Array> {
  return referenceForward(await loadReferenceModel(checkpoint), tokens, lora);
}
