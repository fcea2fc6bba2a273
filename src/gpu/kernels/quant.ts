// Weight-only int8 quantisation of frozen weight matrices (quant.wgsl): symmetric, one scale per
// output channel (row), quantised on the CPU at load and widened to f32 on the GPU right before
// use. Resident memory is a quarter of f32 (half of f16); the price is one dequantisation pass
// per use and a transient f32 copy of one matrix.

import type { Gpu } from "../device.ts";
import { grid1d } from "../grid.ts";
import type { Tensor } from "../tensor.ts";
import { requireShape } from "./launch.ts";

/** An int8 matrix [rows, cols] on the GPU: q packs four int8 per u32 ([rows, cols / 4]). */
export interface Int8Matrix {
  kind: "int8";
  rows: number;
  cols: number;
  q: Tensor;
  /** f32 [rows]: W[r, c] ≈ q[r, c] · scales[r]. */
  scales: Tensor;
}

/**
 * Symmetric per-row quantisation on the CPU: scale = max|W[r, :]| / 127, q = round(W / scale)
 * (ties away from zero, as Math.round does for |x|), clamped to ±127. A zero row keeps scale 0.
 */
export function quantizeInt8Rows(
  data: ArrayLike<number>,
  rows: number,
  cols: number,
): { packed: Uint32Array; scales: Float32Array } {
  if (cols % 4 !== 0) throw new Error(`quantizeInt8Rows: columns must be a multiple of 4, got ${cols}`);
  if (data.length !== rows * cols)
    throw new Error(`quantizeInt8Rows: expected ${rows}×${cols} values, got ${data.length}`);
  const packed = new Uint32Array((rows * cols) / 4);
  const bytes = new Int8Array(packed.buffer);
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let max = 0;
    for (let c = 0; c < cols; c++) {
      const v = data[r * cols + c];
      if (!Number.isFinite(v)) throw new Error(`quantizeInt8Rows: non-finite weight at [${r}, ${c}]`);
      max = Math.max(max, Math.abs(v));
    }
    const scale = Math.fround(max / 127);
    scales[r] = scale;
    if (scale === 0) continue;
    for (let c = 0; c < cols; c++) {
      const x = data[r * cols + c] / scale;
      bytes[r * cols + c] = Math.max(-127, Math.min(127, Math.sign(x) * Math.round(Math.abs(x))));
    }
  }
  return { packed, scales };
}

/** Quantises `data` [rows, cols] and uploads it. Little-endian hosts only (as WebGPU buffers are). */
export function uploadInt8(gpu: Gpu, data: ArrayLike<number>, rows: number, cols: number): Int8Matrix {
  const { packed, scales } = quantizeInt8Rows(data, rows, cols);
  const q = gpu.tensor([rows, cols / 4], "u32", packed);
  if (q.byteLength > gpu.maxBindingSize) {
    q.dispose();
    throw new Error(`uploadInt8: a ${rows}×${cols} int8 matrix exceeds one storage binding`);
  }
  return { kind: "int8", rows, cols, q, scales: gpu.tensor([rows], "f32", scales) };
}

/** W = q · scale as f32 [rows, cols] (into `out` when given). */
export function dequantInt8(m: Int8Matrix, out?: Tensor): Tensor {
  const fn = "dequantInt8";
  requireShape(m.q, [m.rows, m.cols / 4], fn, "q", "u32");
  requireShape(m.scales, [m.rows], fn, "scales", "f32");
  const gpu = m.q.gpu;
  const w = out ?? gpu.tensor([m.rows, m.cols]);
  requireShape(w, [m.rows, m.cols], fn, "out", "f32");
  const words = (m.rows * m.cols) / 4;
  gpu.commands.dispatch({
    shader: "quant",
    entry: "dequant_int8",
    bindings: [m.q, m.scales, w],
    params: { words, words_row: m.cols / 4 },
    workgroups: grid1d(gpu, words, 256),
  });
  return w;
}

export function disposeInt8(m: Int8Matrix): void {
  m.q.dispose();
  m.scales.dispose();
}
