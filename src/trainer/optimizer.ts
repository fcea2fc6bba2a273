// The optimizer state of a training run, all on the GPU: each trainable tensor with its gradient
// accumulator and AdamW moments. Two parameter sets: the LoRA adapter's A/B tensors (updated in
// place, so serving sees the new adapter at once) or every weight of a small model (full
// fine-tuning, used to pre-train the built-in model). Checkpoints save moments and step.

import { adamw, clipGradNorm, gradNormSquared, nonFiniteCount, zeroGrads } from "../gpu/kernels/optimizer.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { GradientSink } from "../model/backward.ts";
import type { LoraAdapter } from "../model/lora.ts";
import type { Transformer } from "../model/transformer.ts";
import { denseVocabMatrix, denseWeight, PROJECTIONS } from "../model/weights.ts";

export interface OptimizerConfig {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this (0 = off). Default 1. */
  maxGradNorm?: number;
}

interface Slot {
  name: string;
  param: Tensor;
  grad: Tensor;
  m: Tensor;
  v: Tensor;
}

export interface StepStats {
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** True when a gradient had inf/NaN and the update was skipped. */
  skipped: boolean;
  step: number;
}

export class Optimizer {
  readonly config: Required<OptimizerConfig>;
  /** Updates applied so far (AdamW's bias correction uses it). */
  step = 0;
  private readonly slots: Slot[];
  /** Where backward accumulates gradients. */
  readonly sink: GradientSink;

  private constructor(slots: Slot[], sink: GradientSink, config: OptimizerConfig) {
    this.slots = slots;
    this.sink = sink;
    this.config = {
      lr: config.lr,
      beta1: config.beta1 ?? 0.9,
      beta2: config.beta2 ?? 0.999,
      eps: config.eps ?? 1e-8,
      weightDecay: config.weightDecay ?? 0,
      maxGradNorm: config.maxGradNorm ?? 1,
    };
  }

  /** Trains the adapter's A and B tensors. */
  static forLora(lora: LoraAdapter, config: OptimizerConfig): Optimizer {
    const slots: Slot[] = [];
    const lo = new Map<string, { dA: Tensor; dB: Tensor }>();
    for (const m of lora.modules.values()) {
      const a = slot(`${m.path}.lora_A`, m.a);
      const b = slot(`${m.path}.lora_B`, m.b);
      slots.push(a, b);
      lo.set(m.path, { dA: a.grad, dB: b.grad });
    }
    return new Optimizer(slots, { lora: lo }, config);
  }

  /** Trains every weight of the model (small models: each weight must fit one binding). */
  static forAllWeights(model: Transformer, config: OptimizerConfig): Optimizer {
    const w = model.weights;
    const slots: Slot[] = [];
    const full = new Map<string, Tensor>();
    const add = (name: string, t: Tensor) => {
      const s = slot(name, t);
      slots.push(s);
      full.set(name, s.grad);
    };
    const single = (name: string, m: { shards: { tensor: Tensor }[] }) => {
      if (m.shards.length !== 1)
        throw new Error(`full training needs ${name} in one binding; it is split in ${m.shards.length}`);
      if (m.shards[0].tensor.dtype !== "f32")
        throw new Error(
          `full training needs f32 weights; ${name} is ${m.shards[0].tensor.dtype} (load the model with dtype "f32")`,
        );
      add(name, m.shards[0].tensor);
    };
    single("model.embed_tokens.weight", denseVocabMatrix(w.embed, "model.embed_tokens.weight", "full training"));
    w.layers.forEach((layer, i) => {
      add(`model.layers.${i}.input_layernorm.weight`, layer.inputNorm);
      add(`model.layers.${i}.post_attention_layernorm.weight`, layer.postNorm);
      if (layer.qNorm) add(`model.layers.${i}.self_attn.q_norm.weight`, layer.qNorm);
      if (layer.kNorm) add(`model.layers.${i}.self_attn.k_norm.weight`, layer.kNorm);
      if (layer.preFfnNorm) add(`model.layers.${i}.pre_feedforward_layernorm.weight`, layer.preFfnNorm);
      if (layer.postFfnNorm) add(`model.layers.${i}.post_feedforward_layernorm.weight`, layer.postFfnNorm);
      for (const p of PROJECTIONS) {
        const lin = layer.proj[p];
        single(`${lin.path}.weight`, denseWeight(lin, "full training"));
        if (lin.bias) add(`${lin.path}.bias`, lin.bias);
      }
    });
    add("model.norm.weight", w.norm);
    if (w.lmHead !== w.embed) single("lm_head.weight", denseVocabMatrix(w.lmHead, "lm_head.weight", "full training"));
    return new Optimizer(slots, { full }, config);
  }

  /** Names of the trained tensors, in order. */
  get names(): string[] {
    return this.slots.map((s) => s.name);
  }

  get parameterCount(): number {
    return this.slots.reduce((n, s) => n + s.param.size, 0);
  }

  zeroGrad(): void {
    zeroGrads(this.slots.map((s) => s.grad));
  }

  /**
   * Clips the global gradient norm, applies AdamW, and zeroes the gradients. A step whose
   * gradients hold inf/NaN is skipped (and reported) instead of corrupting the weights.
   */
  async apply(lrOverride?: number): Promise<StepStats> {
    const grads = this.slots.map((s) => s.grad);
    const gpu = grads[0].gpu;
    const bad = nonFiniteCount(grads);
    const badCount = (await bad.readInts())[0];
    bad.dispose();
    if (badCount > 0) {
      this.zeroGrad();
      return { gradNorm: Number.NaN, skipped: true, step: this.step };
    }
    const clip = this.config.maxGradNorm > 0;
    const normTensor = clip ? clipGradNorm(grads, this.config.maxGradNorm) : gradNormSquared(grads);
    this.step++;
    adamw(
      this.slots.map((s) => ({ param: s.param, grad: s.grad, m: s.m, v: s.v })),
      { ...this.config, lr: lrOverride ?? this.config.lr, step: this.step },
    );
    const read = (await normTensor.read())[0];
    const gradNorm = clip ? read : Math.sqrt(read);
    normTensor.dispose();
    this.zeroGrad();
    await gpu.sync();
    return { gradNorm, skipped: false, step: this.step };
  }

  /** Moments and step for a checkpoint, keyed by tensor name. */
  async state(): Promise<{ step: number; m: Map<string, Float32Array>; v: Map<string, Float32Array> }> {
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    for (const s of this.slots) {
      m.set(s.name, await s.m.read());
      v.set(s.name, await s.v.read());
    }
    return { step: this.step, m, v };
  }

  /** Restores moments and step saved by `state()`; every tensor must be present. */
  loadState(state: { step: number; m: Map<string, Float32Array>; v: Map<string, Float32Array> }): void {
    for (const s of this.slots) {
      const m = state.m.get(s.name);
      const v = state.v.get(s.name);
      if (!m || !v || m.length !== s.m.size || v.length !== s.v.size) {
        throw new Error(`optimizer state does not match the trained tensors: ${s.name} missing or mis-sized`);
      }
      s.m.write(m);
      s.v.write(v);
    }
    this.step = state.step;
  }

  /** Frees gradients and moments (not the parameters). */
  dispose(): void {
    for (const s of this.slots) {
      s.grad.dispose();
      s.m.dispose();
      s.v.dispose();
    }
  }
}

function slot(name: string, param: Tensor): Slot {
  const gpu = param.gpu;
  return { name, param, grad: gpu.zeros(param.shape), m: gpu.zeros(param.shape), v: gpu.zeros(param.shape) };
}
