// A linear layer with an optional LoRA adapter, forward and backward, on the engine's kernels:
//   y  = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ                      (u = x·Aᵀ is kept for backward)
//   dx = dy·W + s·(dy·B)·A,  dA = s·(dy·B)ᵀ·x,  dB = s·dyᵀ·u
// W (and b) are frozen unless full training asks for dW = dyᵀ·x and db = Σ dy.
// Serving rows of several adapters in one step (`linearForwardRows`): x·Wᵀ once over all rows,
// then each adapter's low-rank term over its own contiguous range of rows (bound in place).

import { gemvQuantized, gemvQuantLegal } from "../gpu/kernels/gemv-quant.ts";
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
 * Runs `use` with the weight as the matmul takes it: dense as stored, or a quantised weight
 * widened to f32 for this one use and released right after it is recorded (the pool hands the
 * buffer out again only to work submitted later), so a step holds one widened matrix at a time
 * rather than every layer's.
 */
function withWeight<T>(lin: LinearWeights, whole: boolean, use: (w: Tensor | ShardedMatrix) => T): T {
  const w = lin.weight;
  if ("kind" in w) {
    const dense = dequantize(w);
    try {
      return use(dense);
    } finally {
      dense.dispose();
    }
  }
  if (whole) return use(wholeMatrix(w, lin.path));
  return use(w.shards.length === 1 ? w.shards[0].tensor : w);
}

/**
 * y = x·Wᵀ + b for the frozen base: a quantised weight read as packed by gemv_q.wgsl when x has
 * few rows (decode), else widened to f32 for the matmul.
 */
function baseForward(x: Tensor, lin: LinearWeights, scope: Scope): Tensor {
  const w = lin.weight;
  const bias = lin.bias ?? undefined;
  if ("kind" in w && x.shape.length === 2 && gemvQuantLegal(x.gpu, x.shape[0])) {
    return scope.track(gemvQuantized(x, w, { bias }));
  }
  return scope.track(withWeight(lin, false, (w) => matmul(x, w, { transB: true, bias })));
}

/** y = x·Wᵀ + b (+ LoRA). Returns y and u = x·Aᵀ (null without LoRA); both tracked by `scope`. */
export function linearForward(
  x: Tensor,
  lin: LinearWeights,
  lora: LoraApplied | null,
  scope: Scope,
): { y: Tensor; u: Tensor | null } {
  const y = baseForward(x, lin, scope);
  if (!lora) return { y, u: null };
  const u = scope.track(matmul(x, lora.module.a, { transB: true }));
  matmul(u, lora.module.b, { transB: true, accumulate: true, alpha: lora.scale, out: y });
  return { y, u };
}

/** A contiguous range of rows and the LoRA module they use (null: none). */
export interface LoraRows {
  start: number;
  count: number;
  lora: LoraApplied | null;
}

/**
 * y = x·Wᵀ + b for every row, plus each range's own LoRA term: the base matmul is shared by all
 * rows (one launch, the weight read once); range k adds s_k·(x_k·A_kᵀ)·B_kᵀ to its rows only.
 * A range is bound in place as a view of x and y when its first row starts on the device's
 * storage-offset alignment (every row does when the width is a multiple of 64 floats, as in real
 * models); otherwise its rows are copied out and y's copied back. `ranges` must tile the rows in
 * order (the engine groups a step's rows by adapter).
 */
export function linearForwardRows(x: Tensor, lin: LinearWeights, ranges: LoraRows[], scope: Scope): Tensor {
  const rows = x.shape[0];
  if (ranges.length === 1 && ranges[0].start === 0 && ranges[0].count === rows) {
    return linearForward(x, lin, ranges[0].lora, scope).y;
  }
  const y = baseForward(x, lin, scope);
  for (const r of ranges) {
    if (!r.lora) continue;
    const xr = rowsOf(x, r.start, r.count, scope);
    const u = scope.track(matmul(xr.t, r.lora.module.a, { transB: true }));
    const yr = rowsOf(y, r.start, r.count, scope);
    matmul(u, r.lora.module.b, { transB: true, accumulate: true, alpha: r.lora.scale, out: yr.t });
    if (yr.copied) {
      const bytes = r.start * y.shape[1] * 4;
      y.gpu.commands.copyBufferToBuffer(yr.t.buffer, yr.t.byteOffset, y.buffer, y.byteOffset + bytes, yr.t.byteLength);
    }
  }
  return y;
}

/**
 * Rows [start, start+count) of an f32 [rows, cols] matrix: a view when it can be bound at that
 * offset, else a copy (then `copied`, and changes must be copied back).
 */
function rowsOf(t: Tensor, start: number, count: number, scope: Scope): { t: Tensor; copied: boolean } {
  if (t.dtype !== "f32" || t.shape.length !== 2) throw new Error(`rowsOf: expected an f32 matrix, got ${t.dtype}`);
  const cols = t.shape[1];
  const offset = t.byteOffset + start * cols * 4;
  if (offset % t.gpu.limits.minStorageBufferOffsetAlignment === 0) {
    return { t: t.view([count, cols], start * cols), copied: false };
  }
  const out = scope.track(t.gpu.tensor([count, cols], "f32"));
  t.gpu.commands.copyBufferToBuffer(t.buffer, offset, out.buffer, out.byteOffset, count * cols * 4);
  return { t: out, copied: true };
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
  const dx = withWeight(lin, true, (w) =>
    dxInto ? matmul(dy, w, { accumulate: true, out: dxInto }) : scope.track(matmul(dy, w)),
  );
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
