// Backward through the decoder: from the gradient of the final normed hidden states to the
// gradients of the LoRA tensors (and, for full training, of every weight). Mirrors
// Transformer.layerForward line by line, in reverse; `recompute` layers rerun their forward first.

import { attentionBackward } from "../gpu/kernels/attention.ts";
import { addInPlace, scale } from "../gpu/kernels/elementwise.ts";
import { embeddingBackward } from "../gpu/kernels/embedding.ts";
import { rmsnormBackward, rmsnormBackwardInput } from "../gpu/kernels/rmsnorm.ts";
import { gatedActivationBackward } from "../gpu/kernels/swiglu.ts";
import { Scope } from "../gpu/scope.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { ProjectionName } from "./config.ts";
import { type LinearGrads, linearBackward } from "./linear.ts";
import type { LoraAdapter } from "./lora.ts";
import type { ForwardResult, LayerActivations, PackedBatch, Transformer } from "./transformer.ts";

/** Where gradients accumulate; absent entries are not computed. */
export interface GradientSink {
  /** Per HF module path: LoRA gradients dA [r, in], dB [out, r]. */
  lora?: Map<string, { dA: Tensor; dB: Tensor }>;
  /** Full training: per HF tensor name (e.g. "model.layers.0.mlp.up_proj.weight"). */
  full?: Map<string, Tensor>;
}

export interface BackwardOptions {
  adapter?: boolean;
  /** The adapter the forward used (a named one, for multi-agent training); default: the default adapter. */
  lora?: LoraAdapter | null;
}

/**
 * Accumulates gradients of Σ dNormed·normed into `sink`. `fwd` is consumed (its tensors are
 * disposed by the caller via fwd.scope once this returns).
 */
export function backward(
  model: Transformer,
  batch: PackedBatch,
  fwd: ForwardResult,
  dNormed: Tensor,
  sink: GradientSink,
  options: BackwardOptions = {},
): void {
  const useLora = options.adapter ?? true;
  const lora = options.lora === undefined ? model.lora : options.lora;
  const scope = new Scope();
  const { config, weights } = model;
  const full = sink.full;
  const off = model.normOffset;
  const dOut = normBackward(dNormed, fwd.last, weights.norm, fwd.lastRstd, off, full?.get("model.norm.weight"), scope);
  for (let i = config.numLayers - 1; i >= 0; i--) {
    const saved = fwd.layers[i];
    const inner = new Scope();
    const acts: LayerActivations = "n1" in saved ? saved : model.layerForward(i, saved.x, batch, useLora, inner, lora);
    // The residual gradient flows through every layer in one tensor, updated in place.
    layerBackward(model, i, acts, dOut, batch, sink, useLora, inner, lora);
    inner.dispose();
  }
  const dEmbed = full?.get("model.embed_tokens.weight");
  if (dEmbed) {
    // Gemma scales the looked-up rows, so their gradient carries the same factor.
    const dRows = model.embedScale === 1 ? dOut : scale(dOut, model.embedScale, dOut);
    embeddingBackward(dRows, batch.tokenIds, dEmbed);
  }
  scope.dispose();
}

/**
 * Turns dOut (the gradient of the layer's output) into the gradient of its input, in place:
 * the residual connections make dx = dOut + (the two branches' input gradients).
 */
function layerBackward(
  model: Transformer,
  i: number,
  a: LayerActivations,
  dOut: Tensor,
  batch: PackedBatch,
  sink: GradientSink,
  useLora: boolean,
  scope: Scope,
  lora: LoraAdapter | null,
): void {
  const { config, weights } = model;
  const layer = weights.layers[i];
  const tokens = a.x.shape[0];
  const heads = { nHeads: config.numHeads, nKvHeads: config.numKvHeads, headDim: config.headDim };
  const full = sink.full;
  const gradsOf = (p: ProjectionName): LinearGrads => {
    const lin = layer.proj[p];
    const g = sink.lora?.get(lin.path);
    return {
      dA: g?.dA,
      dB: g?.dB,
      dW: full?.get(`${lin.path}.weight`),
      db: lin.bias ? full?.get(`${lin.path}.bias`) : undefined,
    };
  };
  const back = (p: ProjectionName, dy: Tensor, x: Tensor, into?: Tensor) =>
    linearBackward(dy, x, a.u[p] ?? null, layer.proj[p], model.loraFor(i, p, useLora, lora), gradsOf(p), scope, into);

  // out = h + down(act(gate(n2), up(n2))),  n2 = RMSNorm(h)  [Gemma 3: out = h + RMSNorm(down(…)),
  // n2 = pre_feedforward_layernorm(h)]. dOut becomes dh below; its readers are recorded first, so
  // updating it in place keeps program order.
  const off = model.normOffset;
  const norm = (name: string) => full?.get(`model.layers.${i}.${name}.weight`);
  const dh = dOut;
  const sw =
    a.sandwich && layer.preFfnNorm && layer.postFfnNorm
      ? { ...a.sandwich, preFfn: layer.preFfnNorm, postFfn: layer.postFfnNorm }
      : null;
  const dDown = sw
    ? normBackward(dOut, sw.down, sw.postFfn, sw.downRstd, off, norm("post_feedforward_layernorm"), scope)
    : dOut;
  const dAct = back("down_proj", dDown, a.act);
  const { dgate, dup } = gatedActivationBackward(model.activation, dAct, a.gate, a.up);
  scope.track(dgate);
  scope.track(dup);
  const dn2 = back("gate_proj", dgate, a.n2);
  back("up_proj", dup, a.n2, dn2);
  if (sw) {
    const dPre = norm("pre_feedforward_layernorm");
    addInPlace(dh, normBackward(dn2, a.h, sw.preFfn, a.rstd2, off, dPre, scope));
  } else {
    const dPost = norm("post_attention_layernorm");
    addInPlace(dh, normBackward(dn2, a.h, layer.postNorm, a.rstd2, off, dPost, scope));
  }

  // h = x + o_proj(attention(rope(q(n1)), rope(k(n1)), v(n1))),  n1 = RMSNorm(x)
  // [Gemma 3: h = x + post_attention_layernorm(o_proj(…))]
  const dO = sw ? normBackward(dh, sw.o, layer.postNorm, sw.oRstd, off, norm("post_attention_layernorm"), scope) : dh;
  const dAttn = back("o_proj", dO, a.attn);
  const plan = model.attentionPlans[i];
  const shape3 = (t: Tensor, n: number) => t.reshape([tokens, n, heads.headDim]);
  const g = attentionBackward(
    shape3(dAttn, heads.nHeads),
    shape3(a.q, heads.nHeads),
    shape3(a.k, heads.nKvHeads),
    shape3(a.v, heads.nKvHeads),
    shape3(a.attn, heads.nHeads),
    a.lse,
    batch.seqStart,
    { ...heads, scale: plan.scale, window: plan.window },
  );
  scope.track(g.dq);
  scope.track(g.dk);
  scope.track(g.dv);
  const unrotate = (t: Tensor, n: number) =>
    model.rotate(t.reshape([tokens, n * heads.headDim]), batch.positions, n, i, true);
  let dq = unrotate(g.dq, heads.nHeads);
  let dk = unrotate(g.dk, heads.nKvHeads);
  if (a.qk && layer.qNorm && layer.kNorm) {
    // Through the per-head q/k norms: rows are (token, head) pairs of headDim values.
    const rows = (t: Tensor, n: number) => t.reshape([tokens * n, heads.headDim]);
    const flat = (t: Tensor, n: number) => t.reshape([tokens, n * heads.headDim]);
    const dqNorm = full?.get(`model.layers.${i}.self_attn.q_norm.weight`);
    const dkNorm = full?.get(`model.layers.${i}.self_attn.k_norm.weight`);
    const { qRaw, qRstd, kRaw, kRstd } = a.qk;
    dq = flat(
      normBackward(rows(dq, heads.nHeads), rows(qRaw, heads.nHeads), layer.qNorm, qRstd, off, dqNorm, scope),
      heads.nHeads,
    );
    dk = flat(
      normBackward(rows(dk, heads.nKvHeads), rows(kRaw, heads.nKvHeads), layer.kNorm, kRstd, off, dkNorm, scope),
      heads.nKvHeads,
    );
  }
  const dv = g.dv.reshape([tokens, heads.nKvHeads * heads.headDim]);
  const dn1 = back("q_proj", dq, a.n1);
  back("k_proj", dk, a.n1, dn1);
  back("v_proj", dv, a.n1, dn1);
  const dInput = full?.get(`model.layers.${i}.input_layernorm.weight`);
  addInPlace(dh, normBackward(dn1, a.x, layer.inputNorm, a.rstd1, off, dInput, scope));
}

/**
 * RMSNorm's input gradient (weight scaling by weight + offset); the weight gradient (a reduction
 * over rows) only when it is trained.
 */
function normBackward(
  dy: Tensor,
  x: Tensor,
  weight: Tensor,
  rstd: Tensor,
  weightOffset: number,
  dWeight: Tensor | undefined,
  scope: Scope,
): Tensor {
  if (!dWeight) return scope.track(rmsnormBackwardInput(dy, x, weight, rstd, { weightOffset }));
  return scope.track(rmsnormBackward(dy, x, weight, rstd, { dweight: dWeight, accumulate: true, weightOffset }).dx);
}
