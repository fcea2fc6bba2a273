// Launchers for rmsnorm.wgsl: RMSNorm forward (saving 1/rms per row for the backward) and
// backward (input gradient per row, weight gradient reduced over rows in two deterministic stages).

import type { Gpu } from "../device.ts";
import type { Tensor } from "../tensor.ts";
import { require2d, requireF32, requireShape, sameBuffer, vectorDefines } from "./launch.ts";

/** Rows of dy·x·rstd each dweight invocation sums before the chunks are added up. */
const DWEIGHT_CHUNK_ROWS = 64;
/**
 * Invocations per row by default. Measured on lavapipe at 512×896 (bench/kernels/pointwise.ts):
 * 32 beat 64 and 128 in every run (larger workgroups pay more per barrier there); a warp-sized
 * group per row is also the usual choice on real GPUs for rows of this length.
 */
const DEFAULT_WORKGROUP = 32;

export interface RmsNormVariant {
  /**
   * Added to the weight before it scales: 0 (default) for Llama/Qwen, 1 for Gemma's (1 + w)
   * norms. The weight gradient is the same either way.
   */
  weightOffset?: number;
  /** Invocations per row (a power of two up to the adapter's limit). Default 32, or the largest subgroup size if larger. */
  workgroupSize?: number;
  /** Use subgroup operations for the row sum when the adapter has them (default true). */
  subgroups?: boolean;
}

export interface RmsNormOptions extends RmsNormVariant {
  /** Output tensor [rows, dim]; allocated when absent. */
  out?: Tensor;
  /** Output 1/rms per row [rows]; allocated when absent. */
  rstd?: Tensor;
}

export interface RmsNormBackwardOptions extends RmsNormVariant {
  /** Input gradient [rows, dim]; allocated when absent. */
  dx?: Tensor;
  /** Weight gradient [dim]; allocated when absent. */
  dweight?: Tensor;
  /** Add into `dweight` instead of overwriting it (gradient accumulation). Needs `dweight`. */
  accumulate?: boolean;
}

function largestSubgroup(gpu: Gpu): number {
  const info = gpu.adapter.info as GPUAdapterInfo & { subgroupMaxSize?: number };
  // WebGPU allows subgroups of up to 128 invocations; assume the worst when the adapter is silent.
  return info?.subgroupMaxSize ?? 128;
}

/** Resolved build for one launch: workgroup size, whether subgroups are used, and the defines. */
function variant(gpu: Gpu, dim: number, v: RmsNormVariant) {
  const maxSubgroup = largestSubgroup(gpu);
  const wantSubgroups = (v.subgroups ?? true) && gpu.features.subgroups;
  const size = v.workgroupSize ?? (wantSubgroups ? Math.max(DEFAULT_WORKGROUP, maxSubgroup) : DEFAULT_WORKGROUP);
  const limit = gpu.limits.maxComputeInvocationsPerWorkgroup;
  if (!Number.isInteger(size) || size < 1 || size > limit || (size & (size - 1)) !== 0) {
    throw new Error(`rmsnorm: workgroupSize must be a power of two in 1..${limit} on this adapter, got ${size}`);
  }
  // The subgroup reduction needs full subgroups: WG a multiple of the largest subgroup size.
  const subgroups = wantSubgroups && size % maxSubgroup === 0;
  const width: 1 | 4 = dim % 4 === 0 ? 4 : 1;
  const offset = v.weightOffset ?? 0;
  if (!Number.isFinite(offset)) throw new Error(`rmsnorm: weightOffset must be a finite number, got ${offset}`);
  return {
    width,
    offset,
    size,
    subgroups,
    defines: {
      ...vectorDefines(width),
      WG: size,
      SG_BEGIN: subgroups ? "" : "/*",
      SG_END: subgroups ? "" : "*/",
      PLAIN_BEGIN: subgroups ? "/*" : "",
      PLAIN_END: subgroups ? "*/" : "",
    },
  };
}

/** One workgroup per row, folded into y past the per-dimension cap. */
function rowGrid(gpu: Gpu, rows: number): [number, number] {
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (rows <= max) return [rows, 1];
  const y = Math.ceil(rows / max);
  return [Math.ceil(rows / y), y];
}

function checkEps(op: string, eps: number): void {
  if (!Number.isFinite(eps) || eps < 0) throw new Error(`${op}: eps must be a finite number ≥ 0, got ${eps}`);
}

/**
 * RMSNorm over the rows of x [rows, dim]: y = x · rsqrt(mean(x²) + eps) · (weight + weightOffset).
 * Returns y [rows, dim] and rstd [rows] (the rsqrt factor, kept for the backward).
 */
export function rmsnorm(
  x: Tensor,
  weight: Tensor,
  eps: number,
  options: RmsNormOptions = {},
): { y: Tensor; rstd: Tensor } {
  const op = "rmsnorm";
  requireF32(x, op, "x");
  requireF32(weight, op, "weight");
  const [rows, dim] = require2d(x, op, "x");
  if (dim === 0) throw new Error(`${op}: x has zero columns`);
  requireShape(weight, [dim], op, "weight");
  checkEps(op, eps);
  const gpu = x.gpu;
  const y = options.out ?? gpu.tensor([rows, dim]);
  const rstd = options.rstd ?? gpu.tensor([rows]);
  requireF32(y, op, "out");
  requireShape(y, [rows, dim], op, "out");
  requireF32(rstd, op, "rstd");
  requireShape(rstd, [rows], op, "rstd");
  for (const input of [x, weight]) {
    if (sameBuffer(y, input) || sameBuffer(rstd, input)) {
      throw new Error(`${op}: out and rstd must not share a buffer with x or weight`);
    }
  }
  const v = variant(gpu, dim, options);
  gpu.commands.dispatch({
    shader: "rmsnorm",
    entry: "rmsnorm_forward",
    defines: v.defines,
    bindings: [x, weight, y, rstd],
    params: { rows, cols: dim / v.width, inv_dim: 1 / dim, eps, chunk_rows: 0, accumulate: 0, w_offset: v.offset },
    workgroups: rowGrid(gpu, rows),
  });
  return { y, rstd };
}

function dispatchInputGrad(
  dy: Tensor,
  x: Tensor,
  weight: Tensor,
  rstd: Tensor,
  dx: Tensor,
  v: ReturnType<typeof variant>,
  rows: number,
  cols: number,
): void {
  x.gpu.commands.dispatch({
    shader: "rmsnorm",
    entry: "rmsnorm_backward_input",
    defines: v.defines,
    bindings: [dy, x, weight, rstd, dx],
    params: { rows, cols, inv_dim: 1 / (cols * v.width), eps: 0, chunk_rows: 0, accumulate: 0, w_offset: v.offset },
    workgroups: rowGrid(x.gpu, rows),
  });
}

/**
 * Only the input gradient of `rmsnorm` (frozen weight, e.g. LoRA training): skips the
 * cross-row reduction that dweight needs.
 */
export function rmsnormBackwardInput(
  dy: Tensor,
  x: Tensor,
  weight: Tensor,
  rstd: Tensor,
  options: RmsNormVariant = {},
): Tensor {
  const op = "rmsnormBackwardInput";
  for (const [t, name] of [
    [dy, "dy"],
    [x, "x"],
    [weight, "weight"],
    [rstd, "rstd"],
  ] as const) {
    requireF32(t, op, name);
  }
  const [rows, dim] = require2d(x, op, "x");
  requireShape(dy, [rows, dim], op, "dy");
  requireShape(weight, [dim], op, "weight");
  requireShape(rstd, [rows], op, "rstd");
  const gpu = x.gpu;
  const dx = gpu.tensor([rows, dim]);
  const v = variant(gpu, dim, options);
  dispatchInputGrad(dy, x, weight, rstd, dx, v, rows, dim / v.width);
  return dx;
}

/**
 * Backward of `rmsnorm`: dx [rows, dim] and dweight [dim] (summed over rows) from the output
 * gradient dy, the forward input x, the weight and the saved rstd.
 */
export function rmsnormBackward(
  dy: Tensor,
  x: Tensor,
  weight: Tensor,
  rstd: Tensor,
  options: RmsNormBackwardOptions = {},
): { dx: Tensor; dweight: Tensor } {
  const op = "rmsnormBackward";
  for (const [t, name] of [
    [dy, "dy"],
    [x, "x"],
    [weight, "weight"],
    [rstd, "rstd"],
  ] as const) {
    requireF32(t, op, name);
  }
  const [rows, dim] = require2d(x, op, "x");
  if (dim === 0) throw new Error(`${op}: x has zero columns`);
  requireShape(dy, [rows, dim], op, "dy");
  requireShape(weight, [dim], op, "weight");
  requireShape(rstd, [rows], op, "rstd");
  if (options.accumulate && !options.dweight) {
    throw new Error(`${op}: accumulate needs an existing dweight tensor to add into`);
  }
  const gpu = x.gpu;
  const dx = options.dx ?? gpu.tensor([rows, dim]);
  const dweight = options.dweight ?? gpu.tensor([dim]);
  requireF32(dx, op, "dx");
  requireShape(dx, [rows, dim], op, "dx");
  requireF32(dweight, op, "dweight");
  requireShape(dweight, [dim], op, "dweight");
  for (const t of [dy, x, weight, rstd]) {
    if (sameBuffer(dx, t) || sameBuffer(dweight, t)) {
      throw new Error(`${op}: dx and dweight must not share a buffer with the inputs`);
    }
  }
  const v = variant(gpu, dim, options);
  const cols = dim / v.width;
  dispatchInputGrad(dy, x, weight, rstd, dx, v, rows, cols);

  const accumulate = options.accumulate ? 1 : 0;
  const chunks = Math.max(1, Math.ceil(rows / DWEIGHT_CHUNK_ROWS));
  const colGroups = Math.ceil(cols / 64);
  if (chunks === 1) {
    gpu.commands.dispatch({
      shader: "rmsnorm",
      entry: "rmsnorm_dweight",
      defines: v.defines,
      bindings: [dy, x, rstd, dweight],
      params: { rows, cols, inv_dim: 0, eps: 0, chunk_rows: DWEIGHT_CHUNK_ROWS, accumulate, w_offset: 0 },
      workgroups: [colGroups, 1],
    });
  } else {
    const partial = gpu.tensor([chunks, dim]);
    gpu.commands.dispatch({
      shader: "rmsnorm",
      entry: "rmsnorm_dweight",
      defines: v.defines,
      bindings: [dy, x, rstd, partial],
      params: { rows, cols, inv_dim: 0, eps: 0, chunk_rows: DWEIGHT_CHUNK_ROWS, accumulate: 0, w_offset: 0 },
      workgroups: [colGroups, chunks],
    });
    gpu.commands.dispatch({
      shader: "rmsnorm",
      entry: "rmsnorm_dweight_sum",
      defines: v.defines,
      bindings: [partial, dweight],
      params: { rows: chunks, cols, inv_dim: 0, eps: 0, chunk_rows: 0, accumulate, w_offset: 0 },
      workgroups: [colGroups],
    });
    // Safe before the GPU runs: the pool hands the buffer out again only to work submitted later.
    partial.dispose();
  }
  return { dx, dweight };
}
