// Launcher for gemv_q.wgsl: decode's y = alpha·x·Wᵀ (+bias) (+y) for M ≤ 8 rows of x, reading an
// int8/int4 weight (quant.ts) packed as stored instead of widening it to f32 first. The widening
// path (dequantize, then the dense GEMV) stays a candidate: which one runs is measured per adapter
// and shape class like the matmul family (src/gpu/autotune.ts); the defaults are `gemv-q-r4`/`r8`
// on a software adapter and the K-split `gemv-q-l64` on GPUs.

import { adapterKind, cachedVariant, notePending, sizeBucket, type TuneCandidate } from "../autotune.ts";
import type { Gpu } from "../device.ts";
import { grid1d } from "../grid.ts";
import type { Tensor } from "../tensor.ts";
import { requireShape } from "./launch.ts";
import { dummyBias, GEMV_MAX_ROWS, matmul } from "./matmul.ts";
import { dequantize, disposeQuantized, type QuantizedMatrix } from "./quant.ts";

export interface GemvQuantOptions {
  bias?: Tensor;
  accumulate?: boolean;
  alpha?: number;
  out?: Tensor;
  /**
   * Write columns [outColumn, outColumn + rows of W) of a wider `out` [m, ≥ that] (one row shard
   * of a sharded matrix into the full output). Without it `out` must be [m, rows of W].
   */
  outColumn?: number;
  /** Force a variant (GEMV_Q_VARIANTS) or "dequant" (widen to f32, then the dense GEMV). */
  variant?: string;
}

/**
 * `rn`: rows of W per invocation, x shared by subgroup shuffle (64 invocations per workgroup);
 * `lanes`: one workgroup of 64 invocations per row of W, K split across them (GPUs).
 */
export const GEMV_Q_VARIANTS: readonly { name: string; rn?: number; lanes?: true }[] = [
  { name: "gemv-q-r2", rn: 2 },
  { name: "gemv-q-r4", rn: 4 },
  { name: "gemv-q-r8", rn: 8 },
  { name: "gemv-q-l64", lanes: true },
];
const DEQUANT = "dequant";
/** Every name `variant` takes, in the order tuning measures them. */
export const GEMV_Q_CANDIDATES: readonly string[] = [...GEMV_Q_VARIANTS.map((v) => v.name), DEQUANT];

/**
 * True when `gemvQuantized` can take x [m, cols] · Wᵀ: few rows, and an adapter with subgroups
 * (FULGUR_GEMV_Q=0 says no, read per call, so a benchmark can time the widening path beside it).
 */
export function gemvQuantLegal(gpu: Gpu, m: number): boolean {
  return m >= 1 && m <= GEMV_MAX_ROWS && gpu.features.subgroups && process.env.FULGUR_GEMV_Q !== "0";
}

function defaultVariant(gpu: Gpu, m: number): string {
  // Measured on lavapipe (bench/decode-gemv.ts). On GPUs, by analogy with the dense GEMV's
  // gemv-l64 (coalesced reads) until tuning measures the adapter.
  if (adapterKind(gpu) === "software") return m <= 2 ? "gemv-q-r4" : "gemv-q-r8";
  return "gemv-q-l64";
}

function dispatchFused(
  gpu: Gpu,
  v: (typeof GEMV_Q_VARIANTS)[number],
  x: Tensor,
  w: QuantizedMatrix,
  bias: Tensor,
  out: Tensor,
  outColumn: number,
  flags: number,
  alpha: number,
): void {
  const m = x.shape[0];
  const kind = w.kind === "int8" ? "gemv_q8" : "gemv_q4";
  gpu.commands.dispatch({
    shader: "gemv_q",
    entry: v.lanes ? `${kind}_lanes` : kind,
    defines: { MR: m, RN: v.rn ?? 1 },
    bindings: [x, w.q, w.scales, bias, out],
    params: {
      n: w.rows,
      ldq: w.q.shape[1],
      ldx4: w.cols / 4,
      ldy: out.shape[1],
      off_x4: 0,
      off_y: outColumn,
      alpha,
      flags,
      off_bias: 0,
    },
    workgroups: grid1d(gpu, v.lanes ? w.rows : Math.ceil(w.rows / (64 * (v.rn ?? 1))), 1),
  });
}

/** The widening path: W to a transient f32 matrix, then matmul's dense GEMV. */
function dispatchDequant(x: Tensor, w: QuantizedMatrix, opts: GemvQuantOptions, out: Tensor): void {
  const dense = dequantize(w);
  matmul(x, dense, { transB: true, bias: opts.bias, accumulate: opts.accumulate, alpha: opts.alpha, out });
  // Released at once: whoever the pool hands it to next runs after these commands (WebGPU keeps
  // submission order, and a queue write first submits what is recorded).
  dense.dispose();
}

/**
 * y = alpha · x·Wᵀ (+ bias) (+ y when accumulating) for x f32 [m, cols] with m ≤ 8 and W an
 * int8/int4 [rows, cols] matrix; returns `opts.out` or a new [m, rows] tensor.
 */
export function gemvQuantized(x: Tensor, w: QuantizedMatrix, opts: GemvQuantOptions = {}): Tensor {
  const gpu = x.gpu;
  const fn = "gemvQuantized";
  if (x.shape.length !== 2) throw new Error(`${fn}: x must be 2-D [rows, ${w.cols}], got [${x.shape.join(", ")}]`);
  const m = x.shape[0];
  requireShape(x, [m, w.cols], fn, "x", "f32");
  // The widening path needs no subgroups, only a GEMV-sized x.
  const widening = opts.variant === DEQUANT && m >= 1 && m <= GEMV_MAX_ROWS;
  if (!widening && !gemvQuantLegal(gpu, m)) {
    throw new Error(`${fn}: needs 1..${GEMV_MAX_ROWS} rows of x and the subgroups feature (got ${m} rows)`);
  }
  if (opts.accumulate && !opts.out) throw new Error(`${fn}: accumulate needs opts.out`);
  if (opts.bias) requireShape(opts.bias, [w.rows], fn, "bias", "f32");
  const outColumn = opts.outColumn ?? 0;
  const out = opts.out ?? gpu.tensor([m, w.rows]);
  const wide = out.shape.length === 2 && out.shape[1] !== w.rows;
  if (opts.outColumn === undefined) requireShape(out, [m, w.rows], fn, "out", "f32");
  else if (
    !Number.isInteger(outColumn) ||
    outColumn < 0 ||
    out.dtype !== "f32" ||
    out.shape.length !== 2 ||
    out.shape[0] !== m ||
    out.shape[1] < outColumn + w.rows
  ) {
    throw new Error(
      `${fn}: out must be f32 [${m}, ≥ ${outColumn + w.rows}] for outColumn ${outColumn}, got ${out.dtype} [${out.shape.join(", ")}]`,
    );
  }
  const variant = opts.variant ?? chooseVariant(gpu, m, w);
  if (variant === DEQUANT) {
    if (!wide) dispatchDequant(x, w, opts, out);
    else {
      // The dense GEMV writes whole rows: into a [m, rows of W] scratch, copied row by row.
      const part = gpu.tensor([m, w.rows]);
      if (opts.accumulate) copyColumns(out, outColumn, part, "out");
      dispatchDequant(x, w, opts, part);
      copyColumns(out, outColumn, part, "in");
      part.dispose();
    }
    return out;
  }
  const v = GEMV_Q_VARIANTS.find((c) => c.name === variant);
  if (!v) {
    throw new Error(`${fn}: unknown variant '${variant}' (expected one of ${GEMV_Q_CANDIDATES.join(", ")})`);
  }
  const flags = (opts.bias ? 1 : 0) | (opts.accumulate ? 2 : 0);
  dispatchFused(gpu, v, x, w, opts.bias ?? dummyBias(gpu), out, outColumn, flags, opts.alpha ?? 1);
  return out;
}

/** Copies columns [col, col + part's width) of each row of `wide` out of ("out") or into ("in") `part`. */
function copyColumns(wide: Tensor, col: number, part: Tensor, direction: "in" | "out"): void {
  const [rows, width] = part.shape;
  for (let r = 0; r < rows; r++) {
    const at = wide.byteOffset + (r * wide.shape[1] + col) * 4;
    const pat = part.byteOffset + r * width * 4;
    if (direction === "in") wide.gpu.commands.copyBufferToBuffer(part.buffer, pat, wide.buffer, at, width * 4);
    else wide.gpu.commands.copyBufferToBuffer(wide.buffer, at, part.buffer, pat, width * 4);
  }
}

function chooseVariant(gpu: Gpu, m: number, w: QuantizedMatrix): string {
  const cls = `${w.kind}:m${m}:n${sizeBucket(w.rows)}:k${sizeBucket(w.cols)}`;
  const cached = cachedVariant(gpu, "gemv-q", cls, GEMV_Q_CANDIDATES);
  if (cached) return cached;
  notePending(gpu, {
    family: "gemv-q",
    shapeClass: cls,
    prepare: () => scratch(gpu, m, w),
    variants: GEMV_Q_CANDIDATES,
  });
  return defaultVariant(gpu, m);
}

/** Scratch operands of this shape and a candidate per variant, for the tuner. */
function scratch(gpu: Gpu, m: number, w: QuantizedMatrix): { candidates: TuneCandidate[]; dispose: () => void } {
  const x = gpu.zeros([m, w.cols]);
  const sw: QuantizedMatrix = { ...w, q: gpu.zeros(w.q.shape, "u32"), scales: gpu.zeros(w.scales.shape) };
  const out = gpu.zeros([m, w.rows]);
  return {
    candidates: GEMV_Q_CANDIDATES.map((variant) => ({ variant, record: () => gemvQuantized(x, sw, { variant, out }) })),
    dispose: () => {
      for (const t of [x, out]) t.dispose();
      disposeQuantized(sw);
    },
  };
}
