// The Qwen2/Qwen3/Llama/Mistral/Gemma 3 decoder on the GPU, read top to bottom like the
// architecture diagram:
//
//   tokens → embed [Gemma: × √hidden] → N × layer → RMSNorm → LM head
//   layer: x + Attn(RMSNorm(x)) → h;  h + MLP(RMSNorm(h))
//     Gemma 3 ("sandwich"): x + RMSNorm(Attn(RMSNorm(x))) → h;  h + RMSNorm(MLP(RMSNorm(h))),
//     every RMSNorm scaling by (1 + w)
//   Attn: q,k,v = linear(x) (+bias, +LoRA) → [Qwen3/Gemma 3: per-head RMSNorm(q, k)] → RoPE(q, k)
//         → causal GQA attention (per layer: window, scale, RoPE base; see config.layerAttention)
//         → o_proj
//   MLP:  down(act(gate(x)) ⊙ up(x)), act = silu, or gelu_tanh for Gemma 3
//
// Two ways through it:
//   - `forward` over a packed training batch (many sequences in one [tokens, hidden] tensor,
//     causal within each), keeping what `backward` needs (or only each layer's input, with
//     `recompute`, to trade compute for memory);
//   - `forwardCached` for serving: rows of many running sequences read and extend a KV cache.

import type { Gpu } from "../gpu/device.ts";
import { attention } from "../gpu/kernels/attention.ts";
import { add, scale } from "../gpu/kernels/elementwise.ts";
import { embedding } from "../gpu/kernels/embedding.ts";
import { cachedAttention, type KvCache, kvWrite } from "../gpu/kernels/kvcache.ts";
import { rmsnorm } from "../gpu/kernels/rmsnorm.ts";
import { rope } from "../gpu/kernels/rope.ts";
import { type GateActivation, gatedActivation } from "../gpu/kernels/swiglu.ts";
import { Scope } from "../gpu/scope.ts";
import type { Tensor } from "../gpu/tensor.ts";
import {
  assertRunnable,
  embeddingScale,
  layerAttention,
  type ModelConfig,
  normWeightOffset,
  type ProjectionName,
  ropeInverseFrequencies,
} from "./config.ts";
import { type LoraApplied, linearForward, linearForwardRows } from "./linear.ts";
import type { LoraAdapter } from "./lora.ts";
import type { LayerWeights, ModelWeights } from "./weights.ts";

/** A packed batch on the GPU: all u32 [tokens]. */
export interface PackedBatch {
  tokens: Tensor;
  /** The same token ids on the CPU (the embedding gradient's scatter plan is built from them). */
  tokenIds: Uint32Array;
  positions: Tensor;
  /** Index of the first token of each token's sequence (causal mask boundary). */
  seqStart: Tensor;
  /** Length of the longest sequence (checked against a sliding window). */
  longest: number;
}

/** What one layer's backward needs from its forward. */
export interface LayerActivations {
  x: Tensor;
  n1: Tensor;
  rstd1: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  attn: Tensor;
  lse: Tensor;
  h: Tensor;
  n2: Tensor;
  rstd2: Tensor;
  gate: Tensor;
  up: Tensor;
  act: Tensor;
  /** LoRA's x·Aᵀ per adapted projection. */
  u: Partial<Record<ProjectionName, Tensor>>;
  /** With q/k norm: the projections before their per-head RMSNorm, and its 1/rms per (token, head). */
  qk?: { qRaw: Tensor; qRstd: Tensor; kRaw: Tensor; kRstd: Tensor };
  /**
   * Gemma 3's sandwich norms: o_proj's output and the MLP's down_proj output before their
   * RMSNorms (post_attention_layernorm, post_feedforward_layernorm), with their 1/rms.
   */
  sandwich?: { o: Tensor; oRstd: Tensor; down: Tensor; downRstd: Tensor };
}

/** How a layer attends, resolved once: window (null: whole prefix), score scale, RoPE. */
export interface LayerAttentionPlan {
  window: number | null;
  scale: number;
  theta: number;
  /** Explicit inverse frequencies when the layer's RoPE is rescaled; null for plain theta^(-2i/d). */
  invFreq: Float64Array | null;
}

export interface ForwardResult {
  /** Final hidden states after the last RMSNorm, [tokens, hidden]. */
  normed: Tensor;
  /** Input to the final norm and its 1/rms, for backward. */
  last: Tensor;
  lastRstd: Tensor;
  /** Per layer: full activations, or (recompute) only `x`. */
  layers: (LayerActivations | { x: Tensor })[];
  /** Owns every tensor above; dispose when done with backward. */
  scope: Scope;
}

export interface ForwardOptions {
  /** Apply the LoRA adapter (default true when one is attached). */
  adapter?: boolean;
  /** Which adapter to apply (a named one, for multi-agent training); default: the default adapter. */
  lora?: LoraAdapter | null;
  /** Keep only each layer's input and recompute the rest in backward. */
  recompute?: boolean;
}

/** A contiguous range of a serving step's rows and the adapter they use (null: the base model). */
export interface AdapterRows {
  start: number;
  count: number;
  adapter: LoraAdapter | null;
}

export class Transformer {
  readonly gpu: Gpu;
  readonly config: ModelConfig;
  readonly weights: ModelWeights;
  /** The default adapter: serves requests that name no adapter, and trains by default. */
  lora: LoraAdapter | null = null;
  /** Named adapters on the same base (multi-agent): requests pick one by model "base:name". */
  readonly adapters = new Map<string, LoraAdapter>();
  /** Per layer: window, attention scale and RoPE (Gemma 3's local and global layers differ). */
  readonly attentionPlans: LayerAttentionPlan[];
  /** Added to every RMSNorm weight: 1 for Gemma's (1 + w) norms. */
  readonly normOffset: number;
  /** Multiplies the embedding rows: √hidden for Gemma (in the checkpoint's dtype), else 1. */
  readonly embedScale: number;
  /** The MLP gate's activation. */
  readonly activation: GateActivation;

  constructor(gpu: Gpu, config: ModelConfig, weights: ModelWeights) {
    assertRunnable(config);
    this.gpu = gpu;
    this.config = config;
    this.weights = weights;
    this.normOffset = normWeightOffset(config);
    this.embedScale = embeddingScale(config);
    this.activation = config.gemma3 ? "gelu_tanh" : "silu";
    // One frequency array per distinct RoPE, so rope.ts uploads each table once.
    const tables = new Map<string, Float64Array>();
    this.attentionPlans = Array.from({ length: config.numLayers }, (_, i) => {
      const a = layerAttention(config, i);
      let invFreq: Float64Array | null = null;
      if (a.ropeScaling) {
        const key = `${a.ropeTheta}:${JSON.stringify(a.ropeScaling)}`;
        invFreq = tables.get(key) ?? ropeInverseFrequencies(config, i);
        tables.set(key, invFreq);
      }
      return { window: a.window, scale: a.scale, theta: a.ropeTheta, invFreq };
    });
  }

  /** RMSNorm with this architecture's weight offset; y and rstd tracked by `scope`. */
  norm(x: Tensor, weight: Tensor, scope: Scope): { y: Tensor; rstd: Tensor } {
    return track2(scope, rmsnorm(x, weight, this.config.rmsNormEps, { weightOffset: this.normOffset }));
  }

  /** Embedding rows of `ids`, scaled for Gemma. */
  embed(ids: Tensor, scope: Scope): Tensor {
    const x = scope.track(embedding(this.weights.embed, ids));
    return this.embedScale === 1 ? x : scale(x, this.embedScale, x);
  }

  /**
   * The LoRA module for a projection of a layer, when enabled and `adapter` (default: the default
   * adapter) adapts it.
   */
  loraFor(
    layer: number,
    projection: ProjectionName,
    enabled: boolean,
    adapter: LoraAdapter | null = this.lora,
  ): LoraApplied | null {
    if (!enabled || !adapter) return null;
    const module = adapter.modules.get(this.weights.layers[layer].proj[projection].path);
    return module ? { module, scale: adapter.scale } : null;
  }

  /** Forward over a packed batch; see ForwardResult for what is kept. */
  forward(batch: PackedBatch, options: ForwardOptions = {}): ForwardResult {
    assertRunnable(this.config, batch.longest);
    const scope = new Scope();
    const useLora = options.adapter ?? true;
    const lora = options.lora === undefined ? this.lora : options.lora;
    let x = this.embed(batch.tokens, scope);
    const layers: ForwardResult["layers"] = [];
    for (let i = 0; i < this.config.numLayers; i++) {
      if (options.recompute) {
        const inner = new Scope();
        const acts = this.layerForward(i, x, batch, useLora, inner, lora);
        const next = scope.track(inner.keep(acts.out));
        inner.dispose();
        layers.push({ x });
        x = next;
      } else {
        const acts = this.layerForward(i, x, batch, useLora, scope, lora);
        layers.push(acts);
        x = acts.out;
      }
    }
    const { y: normed, rstd } = this.norm(x, this.weights.norm, scope);
    return { normed, last: x, lastRstd: rstd, layers, scope };
  }

  /** One decoder layer over a packed batch; every tensor it makes is tracked by `scope`. */
  layerForward(
    i: number,
    x: Tensor,
    batch: PackedBatch,
    useLora: boolean,
    scope: Scope,
    lora: LoraAdapter | null = this.lora,
  ): LayerActivations & { out: Tensor } {
    const { config } = this;
    const layer = this.weights.layers[i];
    const tokens = x.shape[0];
    const heads = { nHeads: config.numHeads, nKvHeads: config.numKvHeads, headDim: config.headDim };
    const u: LayerActivations["u"] = {};
    const proj = (p: ProjectionName, input: Tensor): Tensor => {
      const r = linearForward(input, layer.proj[p], this.loraFor(i, p, useLora, lora), scope);
      if (r.u) u[p] = r.u;
      return r.y;
    };

    const plan = this.attentionPlans[i];
    const { y: n1, rstd: rstd1 } = this.norm(x, layer.inputNorm, scope);
    const qRaw = proj("q_proj", n1);
    const kRaw = proj("k_proj", n1);
    let qk: LayerActivations["qk"];
    let qIn = qRaw;
    let kIn = kRaw;
    if (layer.qNorm && layer.kNorm) {
      const qn = this.headNorm(qRaw, layer.qNorm, config.numHeads, scope);
      const kn = this.headNorm(kRaw, layer.kNorm, config.numKvHeads, scope);
      qk = { qRaw, qRstd: qn.rstd, kRaw, kRstd: kn.rstd };
      qIn = qn.y;
      kIn = kn.y;
    }
    const q = this.rotate(qIn, batch.positions, config.numHeads, i);
    const k = this.rotate(kIn, batch.positions, config.numKvHeads, i);
    const v = proj("v_proj", n1);
    const q3 = q.reshape([tokens, heads.nHeads, heads.headDim]);
    const k3 = k.reshape([tokens, heads.nKvHeads, heads.headDim]);
    const v3 = v.reshape([tokens, heads.nKvHeads, heads.headDim]);
    const att = attention(q3, k3, v3, batch.seqStart, { ...heads, scale: plan.scale, window: plan.window });
    scope.track(att.out);
    scope.track(att.lse);
    const attn = att.out.reshape([tokens, heads.nHeads * heads.headDim]);
    const o = proj("o_proj", attn);
    if (layer.preFfnNorm && layer.postFfnNorm) {
      // Gemma 3: each branch's output is normalised before its residual add.
      const { y: oNormed, rstd: oRstd } = this.norm(o, layer.postNorm, scope);
      const h = scope.track(add(x, oNormed));
      const { y: n2, rstd: rstd2 } = this.norm(h, layer.preFfnNorm, scope);
      const gate = proj("gate_proj", n2);
      const up = proj("up_proj", n2);
      const act = scope.track(gatedActivation(this.activation, gate, up));
      const down = proj("down_proj", act);
      const { y: downNormed, rstd: downRstd } = this.norm(down, layer.postFfnNorm, scope);
      const out = scope.track(add(h, downNormed));
      const sandwich = { o, oRstd, down, downRstd };
      return { x, n1, rstd1, q, k, v, attn, lse: att.lse, h, n2, rstd2, gate, up, act, u, out, qk, sandwich };
    }
    const h = scope.track(add(x, o));
    const { y: n2, rstd: rstd2 } = this.norm(h, layer.postNorm, scope);
    const gate = proj("gate_proj", n2);
    const up = proj("up_proj", n2);
    const act = scope.track(gatedActivation(this.activation, gate, up));
    const out = scope.track(add(h, proj("down_proj", act)));
    return { x, n1, rstd1, q, k, v, attn, lse: att.lse, h, n2, rstd2, gate, up, act, u, out, qk };
  }

  /**
   * Qwen3's and Gemma 3's q_norm/k_norm: RMSNorm over each head's headDim values of a
   * [tokens, heads·headDim] projection (rows = tokens·heads), returning y in the same layout and
   * 1/rms per (token, head).
   */
  headNorm(t: Tensor, weight: Tensor, nHeads: number, scope: Scope): { y: Tensor; rstd: Tensor } {
    const tokens = t.shape[0];
    const { headDim } = this.config;
    const r = this.norm(t.reshape([tokens * nHeads, headDim]), weight, scope);
    return { y: r.y.reshape([tokens, nHeads * headDim]), rstd: r.rstd };
  }

  /** RoPE of layer `layer` in place on a [tokens, heads·headDim] projection; `inverse` is its backward. */
  rotate(t: Tensor, positions: Tensor, nHeads: number, layer: number, inverse = false): Tensor {
    const plan = this.attentionPlans[layer];
    return rope(t, positions, {
      theta: plan.theta,
      invFreq: plan.invFreq ?? undefined,
      nHeads,
      headDim: this.config.headDim,
      inverse,
      out: t,
    });
  }

  /**
   * Serving forward: `rows` token rows of many sequences, each at (slot, pos) in the KV caches
   * (one per layer). Writes the rows' k/v into the caches, attends over each row's cached
   * prefix, and returns the final normed hidden states of the rows listed in `outputRows`.
   * `adapters` says which adapter each contiguous range of rows uses (null: the base model); the
   * base matmuls run once over all rows, the LoRA terms per range (see linearForwardRows).
   */
  forwardCached(
    tokens: Tensor,
    slot: Tensor,
    pos: Tensor,
    caches: KvCache[],
    outputRows: Tensor,
    maxContext: number,
    scope: Scope,
    adapters: AdapterRows[] = [{ start: 0, count: tokens.shape[0], adapter: this.lora }],
  ): Tensor {
    const { config } = this;
    const heads = { nHeads: config.numHeads, nKvHeads: config.numKvHeads, headDim: config.headDim };
    const n = tokens.shape[0];
    let covered = 0;
    for (const r of adapters) {
      if (r.start !== covered || r.count < 1) throw new Error("forwardCached: adapter row ranges must tile the rows");
      covered += r.count;
    }
    if (covered !== n) throw new Error(`forwardCached: adapter row ranges cover ${covered} of ${n} rows`);
    let x = this.embed(tokens, scope);
    for (let i = 0; i < config.numLayers; i++) {
      const layer: LayerWeights = this.weights.layers[i];
      const plan = this.attentionPlans[i];
      const proj = (p: ProjectionName, input: Tensor) =>
        linearForwardRows(
          input,
          layer.proj[p],
          adapters.map((r) => ({ start: r.start, count: r.count, lora: this.loraFor(i, p, true, r.adapter) })),
          scope,
        );
      const { y: n1 } = this.norm(x, layer.inputNorm, scope);
      let qIn = proj("q_proj", n1);
      let kIn = proj("k_proj", n1);
      if (layer.qNorm && layer.kNorm) {
        qIn = this.headNorm(qIn, layer.qNorm, config.numHeads, scope).y;
        kIn = this.headNorm(kIn, layer.kNorm, config.numKvHeads, scope).y;
      }
      const q = this.rotate(qIn, pos, config.numHeads, i);
      const k = this.rotate(kIn, pos, config.numKvHeads, i);
      const v = proj("v_proj", n1);
      const cache = caches[i];
      kvWrite(
        cache.k,
        cache.v,
        k.reshape([n, heads.nKvHeads, heads.headDim]),
        v.reshape([n, heads.nKvHeads, heads.headDim]),
        slot,
        pos,
      );
      const att = scope.track(
        cachedAttention(q.reshape([n, heads.nHeads, heads.headDim]), cache.k, cache.v, slot, pos, {
          ...heads,
          scale: plan.scale,
          window: plan.window,
          maxContext,
        }),
      );
      let o = proj("o_proj", att.reshape([n, heads.nHeads * heads.headDim]));
      const sandwich = layer.preFfnNorm && layer.postFfnNorm;
      if (sandwich) o = this.norm(o, layer.postNorm, scope).y;
      const h = scope.track(add(x, o));
      const { y: n2 } = this.norm(h, layer.preFfnNorm ?? layer.postNorm, scope);
      const act = scope.track(gatedActivation(this.activation, proj("gate_proj", n2), proj("up_proj", n2)));
      let down = proj("down_proj", act);
      if (layer.postFfnNorm) down = this.norm(down, layer.postFfnNorm, scope).y;
      x = scope.track(add(h, down));
    }
    // Only the rows that sample need the final norm and the LM head.
    const picked = scope.track(embedding(x, outputRows));
    return this.norm(picked, this.weights.norm, scope).y;
  }
}

function track2(scope: Scope, r: { y: Tensor; rstd: Tensor }): { y: Tensor; rstd: Tensor } {
  scope.track(r.y);
  scope.track(r.rstd);
  return r;
}
