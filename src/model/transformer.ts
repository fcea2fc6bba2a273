// The Qwen2/Qwen3/Llama/Mistral decoder on the GPU, read top to bottom like the architecture diagram:
//
//   tokens → embed → N × [ x + Attn(RMSNorm(x)) → h;  h + MLP(RMSNorm(h)) ] → RMSNorm → LM head
//   Attn: q,k,v = linear(x) (+bias, +LoRA) → [Qwen3: per-head RMSNorm(q, k)] → RoPE(q, k)
//         → causal GQA attention → o_proj
//   MLP:  down(silu(gate(x)) ⊙ up(x))
//
// Two ways through it:
//   - `forward` over a packed training batch (many sequences in one [tokens, hidden] tensor,
//     causal within each), keeping what `backward` needs (or only each layer's input, with
//     `recompute`, to trade compute for memory);
//   - `forwardCached` for serving: rows of many running sequences read and extend a KV cache.

import type { Gpu } from "../gpu/device.ts";
import { attention } from "../gpu/kernels/attention.ts";
import { add } from "../gpu/kernels/elementwise.ts";
import { embedding } from "../gpu/kernels/embedding.ts";
import { cachedAttention, type KvCache, kvWrite } from "../gpu/kernels/kvcache.ts";
import { rmsnorm } from "../gpu/kernels/rmsnorm.ts";
import { rope } from "../gpu/kernels/rope.ts";
import { swiglu } from "../gpu/kernels/swiglu.ts";
import { Scope } from "../gpu/scope.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { assertRunnable, type ModelConfig, type ProjectionName, ropeInverseFrequencies } from "./config.ts";
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
  /** Rescaled RoPE frequencies (Llama 3); null when plain theta^(-2i/d) applies. */
  readonly ropeFrequencies: Float64Array | null;

  constructor(gpu: Gpu, config: ModelConfig, weights: ModelWeights) {
    assertRunnable(config);
    this.gpu = gpu;
    this.config = config;
    this.weights = weights;
    this.ropeFrequencies = config.ropeScaling ? ropeInverseFrequencies(config) : null;
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
    let x = scope.track(embedding(this.weights.embed, batch.tokens));
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
    const { y: normed, rstd } = rmsnorm(x, this.weights.norm, this.config.rmsNormEps);
    scope.track(normed);
    scope.track(rstd);
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

    const { y: n1, rstd: rstd1 } = track2(scope, rmsnorm(x, layer.inputNorm, config.rmsNormEps));
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
    const q = this.rotate(qIn, batch.positions, config.numHeads);
    const k = this.rotate(kIn, batch.positions, config.numKvHeads);
    const v = proj("v_proj", n1);
    const q3 = q.reshape([tokens, heads.nHeads, heads.headDim]);
    const k3 = k.reshape([tokens, heads.nKvHeads, heads.headDim]);
    const v3 = v.reshape([tokens, heads.nKvHeads, heads.headDim]);
    const att = attention(q3, k3, v3, batch.seqStart, heads);
    scope.track(att.out);
    scope.track(att.lse);
    const attn = att.out.reshape([tokens, heads.nHeads * heads.headDim]);
    const h = scope.track(add(x, proj("o_proj", attn)));

    const { y: n2, rstd: rstd2 } = track2(scope, rmsnorm(h, layer.postNorm, config.rmsNormEps));
    const gate = proj("gate_proj", n2);
    const up = proj("up_proj", n2);
    const act = scope.track(swiglu(gate, up));
    const out = scope.track(add(h, proj("down_proj", act)));
    return { x, n1, rstd1, q, k, v, attn, lse: att.lse, h, n2, rstd2, gate, up, act, u, out, qk };
  }

  /**
   * Qwen3's q_norm/k_norm: RMSNorm over each head's headDim values of a [tokens, heads·headDim]
   * projection (rows = tokens·heads), returning y in the same layout and 1/rms per (token, head).
   */
  headNorm(t: Tensor, weight: Tensor, nHeads: number, scope: Scope): { y: Tensor; rstd: Tensor } {
    const tokens = t.shape[0];
    const { headDim, rmsNormEps } = this.config;
    const r = track2(scope, rmsnorm(t.reshape([tokens * nHeads, headDim]), weight, rmsNormEps));
    return { y: r.y.reshape([tokens, nHeads * headDim]), rstd: r.rstd };
  }

  /** RoPE in place on a [tokens, heads·headDim] projection; `inverse` is its backward. */
  rotate(t: Tensor, positions: Tensor, nHeads: number, inverse = false): Tensor {
    return rope(t, positions, {
      theta: this.config.ropeTheta,
      invFreq: this.ropeFrequencies ?? undefined,
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
    let x = scope.track(embedding(this.weights.embed, tokens));
    for (let i = 0; i < config.numLayers; i++) {
      const layer: LayerWeights = this.weights.layers[i];
      const proj = (p: ProjectionName, input: Tensor) =>
        linearForwardRows(
          input,
          layer.proj[p],
          adapters.map((r) => ({ start: r.start, count: r.count, lora: this.loraFor(i, p, true, r.adapter) })),
          scope,
        );
      const { y: n1 } = track2(scope, rmsnorm(x, layer.inputNorm, config.rmsNormEps));
      let qIn = proj("q_proj", n1);
      let kIn = proj("k_proj", n1);
      if (layer.qNorm && layer.kNorm) {
        qIn = this.headNorm(qIn, layer.qNorm, config.numHeads, scope).y;
        kIn = this.headNorm(kIn, layer.kNorm, config.numKvHeads, scope).y;
      }
      const q = this.rotate(qIn, pos, config.numHeads);
      const k = this.rotate(kIn, pos, config.numKvHeads);
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
          maxContext,
        }),
      );
      const h = scope.track(add(x, proj("o_proj", att.reshape([n, heads.nHeads * heads.headDim]))));
      const { y: n2 } = track2(scope, rmsnorm(h, layer.postNorm, config.rmsNormEps));
      const act = scope.track(swiglu(proj("gate_proj", n2), proj("up_proj", n2)));
      x = scope.track(add(h, proj("down_proj", act)));
    }
    // Only the rows that sample need the final norm and the LM head.
    const picked = scope.track(embedding(x, outputRows));
    return track2(scope, rmsnorm(picked, this.weights.norm, config.rmsNormEps)).y;
  }
}

function track2(scope: Scope, r: { y: Tensor; rstd: Tensor }): { y: Tensor; rstd: Tensor } {
  scope.track(r.y);
  scope.track(r.rstd);
  return r;
}
