// LoRA on top of the matmul kernels: y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ with W [out, in] frozen (f32 or f16,
// possibly sharded), A [r, in], B [out, r], s = alpha / r, and the backward pass for x, A and B.
//
// Fusion: u = x·Aᵀ is computed once (and kept for backward), then y = x·Wᵀ (+ bias) and the
// low-rank term is accumulated into the same y by a second launch with alpha = s. Folding the
// rank-r term into the big matmul's K loop would save one pass over y (M·out floats), which is
// r/in ≈ 2% of the big matmul's work at r = 16, in = 896: not worth a third kernel family.

import type { ShardedMatrix } from "../shard.ts";
import type { Tensor } from "../tensor.ts";
import { matmul } from "./matmul.ts";

export interface LoraForwardOptions {
  /** Added to y: f32 [out]. */
  bias?: Tensor;
  /** Where to write y [rows, out] and u [rows, r]; allocated when absent. */
  out?: Tensor;
  u?: Tensor;
}

export interface LoraBackwardOptions {
  /** Add into `da`/`db` (gradient accumulation over micro-batches); they must then be given. */
  accumulateGrads?: boolean;
  /** Compute dX (default true); a first layer can skip it. */
  needInputGrad?: boolean;
  dx?: Tensor;
  da?: Tensor;
  db?: Tensor;
}

interface Dims {
  rows: number;
  inF: number;
  outF: number;
  rank: number;
}

function dims(x: Tensor, w: Tensor | ShardedMatrix, a: Tensor, b: Tensor, scale: number, who: string): Dims {
  if (x.shape.length !== 2) throw new Error(`${who}: x must be [rows, in], got [${x.shape.join(", ")}]`);
  const [rows, inF] = x.shape;
  const wShape = "shards" in w ? [w.rows, w.cols] : w.shape;
  if (wShape.length !== 2 || wShape[1] !== inF) {
    throw new Error(`${who}: W must be [out, ${inF}], got [${wShape.join(", ")}]`);
  }
  const outF = wShape[0];
  if (a.shape.length !== 2 || a.shape[1] !== inF) {
    throw new Error(`${who}: A must be [r, ${inF}], got [${a.shape.join(", ")}]`);
  }
  const rank = a.shape[0];
  if (b.shape.length !== 2 || b.shape[0] !== outF || b.shape[1] !== rank) {
    throw new Error(`${who}: B must be [${outF}, ${rank}], got [${b.shape.join(", ")}]`);
  }
  if (a.dtype !== "f32" || b.dtype !== "f32") throw new Error(`${who}: A and B (the trained adapter) must be f32`);
  if (!Number.isFinite(scale)) throw new Error(`${who}: scale must be a finite number, got ${scale}`);
  return { rows, inF, outF, rank };
}

/**
 * LoRA forward: returns y = x·Wᵀ (+ bias) + scale·u·Bᵀ [rows, out] and u = x·Aᵀ [rows, r]
 * (keep u for the backward pass). x is [rows, in].
 */
export function loraForward(
  x: Tensor,
  w: Tensor | ShardedMatrix,
  a: Tensor,
  b: Tensor,
  scale: number,
  opts: LoraForwardOptions = {},
): { y: Tensor; u: Tensor } {
  dims(x, w, a, b, scale, "loraForward");
  const u = matmul(x, a, { transB: true, out: opts.u });
  const y = matmul(x, w, { transB: true, bias: opts.bias, out: opts.out });
  matmul(u, b, { transB: true, alpha: scale, accumulate: true, out: y });
  return { y, u };
}

/**
 * LoRA backward from dY [rows, out]: dX = dY·W + s·(dY·B)·A, dA = s·(dY·B)ᵀ·x, dB = s·dYᵀ·u.
 * With `accumulateGrads`, dA and dB are added into `opts.da` / `opts.db`.
 */
export function loraBackward(
  dy: Tensor,
  x: Tensor,
  u: Tensor,
  w: Tensor | ShardedMatrix,
  a: Tensor,
  b: Tensor,
  scale: number,
  opts: LoraBackwardOptions = {},
): { dx?: Tensor; da: Tensor; db: Tensor } {
  const d = dims(x, w, a, b, scale, "loraBackward");
  if (dy.shape.length !== 2 || dy.shape[0] !== d.rows || dy.shape[1] !== d.outF) {
    throw new Error(`loraBackward: dY must be [${d.rows}, ${d.outF}], got [${dy.shape.join(", ")}]`);
  }
  if (u.shape.length !== 2 || u.shape[0] !== d.rows || u.shape[1] !== d.rank) {
    throw new Error(`loraBackward: u must be [${d.rows}, ${d.rank}] (from loraForward), got [${u.shape.join(", ")}]`);
  }
  const accumulate = opts.accumulateGrads ?? false;
  if (accumulate && (!opts.da || !opts.db)) {
    throw new Error("loraBackward: accumulateGrads needs opts.da and opts.db (the gradients to add into)");
  }
  const dh = matmul(dy, b); // [rows, r]
  let dx: Tensor | undefined;
  if (opts.needInputGrad ?? true) {
    dx = matmul(dy, w, { out: opts.dx });
    matmul(dh, a, { alpha: scale, accumulate: true, out: dx });
  }
  const da = matmul(dh, x, { transA: true, alpha: scale, accumulate, out: opts.da });
  const db = matmul(dy, u, { transA: true, alpha: scale, accumulate, out: opts.db });
  // Pooled buffers are only reused by later dispatches, which run after these (program order).
  dh.dispose();
  return { dx, da, db };
}
