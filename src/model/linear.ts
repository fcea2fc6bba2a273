// A linear layer with an optional LoRA adapter, forward and backward, on the engine's kernels:
//   y  = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ                      (u = x·Aᵀ is kept for backward)
//   dx = dy·W + s·(dy·B)·A,  dA = s·(dy·B)ᵀ·x,  dB = s·dyᵀ·u
// W (and b) are frozen unless full training asks for dW = dyᵀ·x and db = Σ dy.

import { matmul } from "../gpu/kernels/matmul.ts";
import { dequantize } from "../gpu/kernels/quant.ts";
import type { Scope } from "../gpu/scope.ts";
import type { ShardedMatrix } from "../gpu/shard.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { LoraModule } from "./lora.ts";
import type { LinearWeights } from "./weights.ts";

export interface LoraApplied {
  module: LoraModule;
  scale: number;
}

/** The one tensor of a weight matrix that fits a binding (non-transposed uses need it whole). */
export function wholeMatrix(m: ShardedMatrix, what: string): Tensor {
  if (m.shards.length !== 1) {
    throw new Error(`${what}: a ${m.rows}×${m.cols} weight split over ${m.shards.length} bindings cannot be used here`);
  }
  return m.shards[0].tensor;
}

/**
 * The weight as the matmul takes it: dense as stored, or a quantised weight widened to f32 for this
 * use (tracked by `scope`, so one layer's f32 copy lives only as long as its step needs it).
 */
function weightFor(lin: LinearWeights, scope: Scope, whole: boolean): Tensor | ShardedMatrix {
  const w = lin.weight;
  if ("kind" in w) return scope.track(dequantize(w));
  if (whole) return wholeMatrix(w, lin.path);
  return w.shards.length === 1 ? w.shards[0].tensor : w;
}

/** y = x·Wᵀ + b (+ LoRA). Returns y and u = x·Aᵀ (null without LoRA); both tracked by `scope`. */
export function linearForward(
  x: Tensor,
  lin: LinearWeights,
  lora: LoraApplied | null,
  scope: Scope,
): { y: Tensor; u: Tensor | null } {
  const w = weightFor(lin, scope, false);
  const y = scope.track(matmul(x, w, { transB: true, bias: lin.bias ?? undefined }));
  if (!lora) return { y, u: null };
  const u = scope.track(matmul(x, lora.module.a, { transB: true }));
  matmul(u, lora.module.b, { transB: true, accumulate: true, alpha: lora.scale, out: y });
  return { y, u };
}

export interface LinearGrads {
  /** LoRA gradients, accumulated into these tensors when given. */
  dA?: Tensor;
  dB?: Tensor;
  /** Full-training gradients of W [out, in] and b [out], accumulated into when given. */
  dW?: Tensor;
  db?: Tensor;
}

/**
 * Backward of `linearForward`: accumulates parameter gradients into `grads` and returns dx
 * (added into `dxInto` when given, so q/k/v or gate/up share one input gradient).
 */
export function linearBackward(
  dy: Tensor,
  x: Tensor,
  u: Tensor | null,
  lin: LinearWeights,
  lora: LoraApplied | null,
  grads: LinearGrads,
  scope: Scope,
  dxInto?: Tensor,
): Tensor {
  const w = weightFor(lin, scope, true) as Tensor;
  const dx = dxInto ? matmul(dy, w, { accumulate: true, out: dxInto }) : scope.track(matmul(dy, w));
  if (lora) {
    if (!u) throw new Error(`${lin.path}: LoRA backward needs the saved x·Aᵀ`);
    const dyB = scope.track(matmul(dy, lora.module.b)); // [M, r]
    matmul(dyB, lora.module.a, { accumulate: true, alpha: lora.scale, out: dx });
    if (grads.dA) matmul(dyB, x, { transA: true, alpha: lora.scale, accumulate: true, out: grads.dA });
    if (grads.dB) matmul(dy, u, { transA: true, alpha: lora.scale, accumulate: true, out: grads.dB });
  }
  if (grads.dW) matmul(dy, x, { transA: true, accumulate: true, out: grads.dW });
  if (grads.db) {
    // Σ over rows of dy as a GEMV with a ones vector: [1, M]·[M, out].
    const ones = scope.track(dy.gpu.tensor([1, dy.shape[0]], "f32", new Float32Array(dy.shape[0]).fill(1)));
    matmul(ones, dy, { accumulate: true, out: grads.db.reshape([1, lin.outFeatures]) });
  }
  return dx;
}
