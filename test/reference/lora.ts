// Plain-loop reference for LoRA: y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ and its gradients, f64 accumulation.
// W [out, in] frozen, A [r, in], B [out, r], s = alpha / r.
import { matmulRef } from "./matmul.ts";

export interface LoraShapes {
  rows: number;
  inF: number;
  outF: number;
  rank: number;
}

/** Forward: returns y [rows, out] and u = x·Aᵀ [rows, r]. */
export function loraForwardRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  scale: number,
  s: LoraShapes,
): { y: Float64Array; u: Float64Array } {
  const u = matmulRef(x, a, s.rows, s.rank, s.inF, { transB: true });
  const base = matmulRef(x, w, s.rows, s.outF, s.inF, { transB: true });
  const delta = matmulRef(u, b, s.rows, s.outF, s.rank, { transB: true });
  const y = base.map((v, i) => v + scale * delta[i]);
  return { y, u };
}

/** Backward: dX = dY·W + s·(dY·B)·A, dA = s·(dY·B)ᵀ·x, dB = s·dYᵀ·u. */
export function loraBackwardRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  scale: number,
  s: LoraShapes,
): { dx: Float64Array; da: Float64Array; db: Float64Array } {
  const u = matmulRef(x, a, s.rows, s.rank, s.inF, { transB: true });
  const dh = matmulRef(dy, b, s.rows, s.rank, s.outF);
  const dxBase = matmulRef(dy, w, s.rows, s.inF, s.outF);
  const dxLora = matmulRef(dh, a, s.rows, s.inF, s.rank);
  const dx = dxBase.map((v, i) => v + scale * dxLora[i]);
  const da = matmulRef(dh, x, s.rank, s.inF, s.rows, { transA: true, alpha: scale });
  const db = matmulRef(dy, u, s.outF, s.rank, s.rows, { transA: true, alpha: scale });
  return { dx, da, db };
}
