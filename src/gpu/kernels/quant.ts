// Weight-only quantisation of frozen weight matrices (quant.wgsl), symmetric: int8 with one scale
// per output channel (row), or int4 with one scale per group of INT4_GROUP columns of a row;
// quantised on the CPU at load and widened to f32 on the GPU right before use. Resident memory
// is a quarter (int8) or an eighth (int4, plus its scales) of f32; the price is one
// dequantisation pass per use and a transient f32 copy of one matrix.

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

/**
 * An int8 matrix split by rows over storage bindings: a real vocabulary's embedding (151,936 ×
 * 896 bytes for Qwen2.5-0.5B) exceeds lavapipe's 128 MiB binding even at one byte per weight.
 */
export interface ShardedInt8 {
  kind: "int8-rows";
  rows: number;
  cols: number;
  shards: { m: Int8Matrix; rowStart: number }[];
}

/**
 * Quantises `data` [rows, cols] per row and uploads it in row shards that each fit one binding
 * (shard heights a multiple of 64, so views into a shard can start on any 64th row).
 */
export function uploadInt8Sharded(
  gpu: Gpu,
  data: Float32Array,
  rows: number,
  cols: number,
  maxBindingSize = gpu.maxBindingSize,
): ShardedInt8 {
  const per = Math.floor(maxBindingSize / cols / 64) * 64;
  if (per < 1) throw new Error(`uploadInt8Sharded: one 64-row group of ${cols} bytes exceeds a binding`);
  const shards: ShardedInt8["shards"] = [];
  for (let rowStart = 0; rowStart < rows; rowStart += per) {
    const n = Math.min(per, rows - rowStart);
    shards.push({ m: uploadInt8(gpu, data.subarray(rowStart * cols, (rowStart + n) * cols), n, cols), rowStart });
  }
  return { kind: "int8-rows", rows, cols, shards };
}

/** The row shards of an int8 matrix, sharded or not. */
export function int8Shards(m: Int8Matrix | ShardedInt8): ShardedInt8["shards"] {
  return m.kind === "int8" ? [{ m, rowStart: 0 }] : m.shards;
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
    params: { words, words_scale: m.cols / 4 },
    workgroups: grid1d(gpu, words, 256),
  });
  return w;
}

/** Columns sharing one int4 scale (a common choice: small enough to track local magnitudes). */
export const INT4_GROUP = 32;

/** An int4 matrix [rows, cols]: q packs eight int4 per u32 ([rows, cols / 8]). */
export interface Int4Matrix {
  kind: "int4";
  rows: number;
  cols: number;
  q: Tensor;
  /** f32 [rows, cols / INT4_GROUP]: W[r, c] ≈ q[r, c] · scales[r, c / INT4_GROUP]. */
  scales: Tensor;
}

export type QuantizedMatrix = Int8Matrix | Int4Matrix;

/**
 * Symmetric per-group int4 on the CPU: for each INT4_GROUP columns of a row, scale = max|W| / 7,
 * q = round(W / scale) (ties away from zero) in [−7, 7]; an all-zero group keeps scale 0.
 */
export function quantizeInt4Groups(
  data: ArrayLike<number>,
  rows: number,
  cols: number,
): { packed: Uint32Array; scales: Float32Array } {
  const g = INT4_GROUP;
  if (cols % g !== 0) throw new Error(`quantizeInt4Groups: columns must be a multiple of ${g}, got ${cols}`);
  if (data.length !== rows * cols)
    throw new Error(`quantizeInt4Groups: expected ${rows}×${cols} values, got ${data.length}`);
  const packed = new Uint32Array((rows * cols) / 8);
  const scales = new Float32Array((rows * cols) / g);
  for (let grp = 0; grp < scales.length; grp++) {
    let max = 0;
    for (let j = 0; j < g; j++) {
      const v = data[grp * g + j];
      if (!Number.isFinite(v))
        throw new Error(
          `quantizeInt4Groups: non-finite weight at [${Math.floor((grp * g + j) / cols)}, ${(grp * g + j) % cols}]`,
        );
      max = Math.max(max, Math.abs(v));
    }
    const scale = Math.fround(max / 7);
    scales[grp] = scale;
    if (scale === 0) continue;
    for (let j = 0; j < g; j++) {
      const i = grp * g + j;
      const x = data[i] / scale;
      const q = Math.max(-7, Math.min(7, Math.sign(x) * Math.round(Math.abs(x))));
      packed[i >>> 3] |= (q & 0xf) << ((i & 7) * 4);
    }
  }
  return { packed, scales };
}

/** Quantises `data` [rows, cols] to int4 groups and uploads it. */
export function uploadInt4(gpu: Gpu, data: ArrayLike<number>, rows: number, cols: number): Int4Matrix {
  const { packed, scales } = quantizeInt4Groups(data, rows, cols);
  return {
    kind: "int4",
    rows,
    cols,
    q: gpu.tensor([rows, cols / 8], "u32", packed),
    scales: gpu.tensor([rows, cols / INT4_GROUP], "f32", scales),
  };
}

/** W = q · scale as f32 [rows, cols] (into `out` when given). */
export function dequantInt4(m: Int4Matrix, out?: Tensor): Tensor {
  const fn = "dequantInt4";
  requireShape(m.q, [m.rows, m.cols / 8], fn, "q", "u32");
  requireShape(m.scales, [m.rows, m.cols / INT4_GROUP], fn, "scales", "f32");
  const gpu = m.q.gpu;
  const w = out ?? gpu.tensor([m.rows, m.cols]);
  requireShape(w, [m.rows, m.cols], fn, "out", "f32");
  const words = (m.rows * m.cols) / 8;
  gpu.commands.dispatch({
    shader: "quant",
    entry: "dequant_int4",
    bindings: [m.q, m.scales, w],
    params: { words, words_scale: INT4_GROUP / 8 },
    workgroups: grid1d(gpu, words, 256),
  });
  return w;
}

/** Either kind, widened to f32. */
export function dequantize(m: QuantizedMatrix, out?: Tensor): Tensor {
  return m.kind === "int8" ? dequantInt8(m, out) : dequantInt4(m, out);
}

/** Quantises and uploads `data` [rows, cols] as `kind`. */
export function uploadQuantized(
  gpu: Gpu,
  kind: QuantizedMatrix["kind"],
  data: ArrayLike<number>,
  rows: number,
  cols: number,
): QuantizedMatrix {
  return kind === "int8" ? uploadInt8(gpu, data, rows, cols) : uploadInt4(gpu, data, rows, cols);
}

export function disposeQuantized(m: QuantizedMatrix): void {
  m.q.dispose();
  m.scales.dispose();
}
