// Launchers for matmul.wgsl/matmul_sg.wgsl (GEMM) and gemv.wgsl/gemv_sg.wgsl (decode GEMV, M ≤ 8):
// C = alpha·op(A)·op(B) (+bias) (+C), batched, with B optionally a row-sharded weight and optionally stored as f16.
//
// Conventions: linear weights are HF-style W[out, in], so a layer's forward is
// matmul(x, W, { transB: true }), dW = dYᵀ·X is matmul(dY, X, { transA: true }) and
// dX = dY·W is matmul(dY, W). Which variant runs is measured per adapter (src/gpu/autotune.ts);
// `opts.variant` forces one.

import {
  adapterKind,
  autotuneEnabled,
  cachedVariant,
  notePending,
  sizeBucket,
  type TuneCandidate,
  type TuneResult,
  tune,
} from "../autotune.ts";
import type { Gpu } from "../device.ts";
import { grid1d } from "../grid.ts";
import { ShardedMatrix } from "../shard.ts";
import type { Tensor } from "../tensor.ts";

export interface MatmulOptions {
  /** Use Aᵀ: `a` is stored [K, M] (or [batch, K, M]). */
  transA?: boolean;
  /** Use Bᵀ: `b` is stored [N, K] (HF linear weights). */
  transB?: boolean;
  /** Added to every row of the result: f32 [N]. */
  bias?: Tensor;
  /** Add into the existing contents of `out` (which must then be given). */
  accumulate?: boolean;
  /** Scales op(A)·op(B) (not bias, not the accumulated C). */
  alpha?: number;
  /** Result tensor (f32, batch·M·N elements); allocated when absent. */
  out?: Tensor;
  /** Batch count; rank-3 operands carry their own, a rank-2 operand (or leading 1) broadcasts. */
  batch?: number;
  /** Force a variant by name (see GEMM_VARIANTS / GEMV_VARIANTS) instead of the tuned choice. */
  variant?: string;
}

export interface GemmVariant {
  name: string;
  entry: "matmul_reg4" | "matmul_reg1" | "matmul_wg" | "matmul_sg";
  /** Rows of C per invocation. */
  tm: number;
  /** Columns of C per invocation, in vec4s. */
  tn4: number;
  /** vec4 loads need K and the contiguous dimensions to be multiples of 4. */
  load: "vec4" | "scalar";
  /** Shares the A tile across subgroup lanes (matmul_sg.wgsl; needs the subgroups feature). */
  subgroups?: boolean;
}

export interface GemvVariant {
  name: string;
  /** gemv.wgsl: K split over `lanes` invocations per output row, `rows` rows per workgroup. */
  lanes: number;
  rows: number;
  /**
   * gemv_sg.wgsl instead (needs subgroups): x rows shared by subgroup shuffle, `rn` rows of W per
   * invocation, 64 invocations per workgroup (lanes/rows unused).
   */
  rn?: number;
}

export const GEMM_VARIANTS: readonly GemmVariant[] = [
  { name: "reg-4x4-vec4", entry: "matmul_reg4", tm: 4, tn4: 1, load: "vec4" },
  { name: "reg-8x4-vec4", entry: "matmul_reg4", tm: 8, tn4: 1, load: "vec4" },
  { name: "reg-4x8-vec4", entry: "matmul_reg4", tm: 4, tn4: 2, load: "vec4" },
  { name: "reg-8x8-vec4", entry: "matmul_reg4", tm: 8, tn4: 2, load: "vec4" },
  { name: "sg-8x4-vec4", entry: "matmul_sg", tm: 8, tn4: 1, load: "vec4", subgroups: true },
  { name: "sg-8x8-vec4", entry: "matmul_sg", tm: 8, tn4: 2, load: "vec4", subgroups: true },
  { name: "sg-16x4-vec4", entry: "matmul_sg", tm: 16, tn4: 1, load: "vec4", subgroups: true },
  { name: "reg-4x4-scalar", entry: "matmul_reg1", tm: 4, tn4: 1, load: "scalar" },
  { name: "reg-8x4-scalar", entry: "matmul_reg1", tm: 8, tn4: 1, load: "scalar" },
  { name: "wg-4x4", entry: "matmul_wg", tm: 4, tn4: 1, load: "scalar" },
  { name: "wg-8x4", entry: "matmul_wg", tm: 8, tn4: 1, load: "scalar" },
  { name: "wg-8x8", entry: "matmul_wg", tm: 8, tn4: 2, load: "scalar" },
];

export const GEMV_VARIANTS: readonly GemvVariant[] = [
  { name: "gemv-l1", lanes: 1, rows: 64 },
  { name: "gemv-l4", lanes: 4, rows: 16 },
  { name: "gemv-l16", lanes: 16, rows: 4 },
  { name: "gemv-l64", lanes: 64, rows: 1 },
  { name: "gemv-sg-r2", lanes: 1, rows: 128, rn: 2 },
  { name: "gemv-sg-r4", lanes: 1, rows: 256, rn: 4 },
  { name: "gemv-sg-r8", lanes: 1, rows: 512, rn: 8 },
];

/**
 * How gemv_sg.wgsl (W_*) and matmul_sg.wgsl (B_*) declare and widen their weight operand: f16 is
 * read as u32 pairs (see the shaders).
 */
function sgWeightDefines<P extends "W" | "B">(
  dtype: "f32" | "f16",
  prefix: P,
): Record<`${P}_ELEM` | `${P}_WIDEN`, string> {
  const [elem, widen] =
    dtype === "f32"
      ? ["vec4<f32>", "return v;"]
      : ["vec2<u32>", "return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));"];
  return { [`${prefix}_ELEM`]: elem, [`${prefix}_WIDEN`]: widen } as Record<`${P}_ELEM` | `${P}_WIDEN`, string>;
}

/** One GEMV launch handles up to this many rows of x (decode). */
export const GEMV_MAX_ROWS = 8;
/**
 * Up to this many rows, gemv_sg can also run as ⌈M/8⌉ launches of 8 rows each (each reading W
 * again): on lavapipe 4 such launches beat the GEMM tiles at 32 rows (batched decode, short
 * prompts). Elsewhere it is one more candidate beside the GEMM variants, and tuning decides.
 */
export const GEMV_CHUNKED_MAX_ROWS = 32;

/** The geometry shared by every launch of one matmul call (a sharded B gives one launch per shard). */
interface Geometry {
  m: number;
  /** Columns of C (its row stride). */
  n: number;
  k: number;
  batch: number;
  /** Row length of A's storage (K, or M when transposed). */
  lda: number;
  /** Batch strides in elements (0 broadcasts). */
  batchA: number;
  batchB: number;
  transA: boolean;
  transB: boolean;
  bDtype: "f32" | "f16";
}

/** One dispatch: B (or a shard of it) and where its part of the product lands. */
interface Launch {
  b: Tensor;
  /** Columns of C this launch writes, and the K range it sums over. */
  n: number;
  k: number;
  offA: number;
  offC: number;
  offBias: number;
  bias: boolean;
  accumulate: boolean;
}

function vec4Legal(g: Geometry, l: Launch): boolean {
  const ldb = g.transB ? l.k : l.n;
  return (
    l.k % 4 === 0 &&
    g.lda % 4 === 0 &&
    ldb % 4 === 0 &&
    l.offA % 4 === 0 &&
    (!g.transA || g.m % 4 === 0) &&
    (g.transB || l.n % 4 === 0)
  );
}

function gemvShape(g: Geometry, l: Launch, maxRows: number): boolean {
  return !g.transA && g.transB && g.batch === 1 && g.m <= maxRows && l.k % 4 === 0 && vec4Legal(g, l);
}

function gemvLegal(g: Geometry, l: Launch): boolean {
  return gemvShape(g, l, GEMV_MAX_ROWS);
}

/** More rows than one GEMV launch takes, few enough for gemv_sg in chunks of 8 (see above). */
function gemvChunkable(gpu: Gpu, g: Geometry, l: Launch): boolean {
  return g.m > GEMV_MAX_ROWS && gemvShape(g, l, GEMV_CHUNKED_MAX_ROWS) && gemvSgEnabled(gpu);
}

function rows2(t: { shape: readonly number[] }, name: string): { batch: number; r: number; c: number } {
  const s = t.shape;
  if (s.length === 2) return { batch: 1, r: s[0], c: s[1] };
  if (s.length === 3) return { batch: s[0], r: s[1], c: s[2] };
  throw new Error(`matmul: ${name} must be rank 2 [rows, cols] or rank 3 [batch, rows, cols], got [${s.join(", ")}]`);
}

/** The autotune class of a launch: shapes within the same powers of two share a choice. */
function shapeClass(g: Geometry, l: Launch, family: "gemm" | "gemv"): string {
  const t = `${g.transA ? "t" : "n"}${g.transB ? "t" : "n"}`;
  const m = family === "gemv" ? String(g.m) : String(sizeBucket(g.m));
  const v = vec4Legal(g, l) ? "v4" : "s";
  return `${t}:${g.bDtype}:${v}:b${g.batch > 1 ? "n" : "1"}:m${m}:n${sizeBucket(l.n)}:k${sizeBucket(l.k)}`;
}

/**
 * gemv_sg.wgsl's variants are candidates when the adapter has subgroups, unless FULGUR_GEMV_SG=0
 * (read per call, so a benchmark can put the old GEMV path beside the new one in one process).
 */
function gemvSgEnabled(gpu: Gpu): boolean {
  return gpu.features.subgroups && process.env.FULGUR_GEMV_SG !== "0";
}

/** Variants that can run this launch. */
function candidateVariants(gpu: Gpu, g: Geometry, l: Launch): (GemmVariant | GemvVariant)[] {
  if (gemvLegal(g, l)) return GEMV_VARIANTS.filter((v) => !v.rn || gemvSgEnabled(gpu));
  const v4 = vec4Legal(g, l);
  const gemm = GEMM_VARIANTS.filter((v) => (v4 || v.load === "scalar") && (!v.subgroups || gpu.features.subgroups));
  return gemvChunkable(gpu, g, l) ? [...gemm, ...GEMV_VARIANTS.filter((v) => v.rn)] : gemm;
}

/** The per-adapter default when nothing is measured: lavapipe likes registers, GPUs shared memory. */
function defaultVariant(gpu: Gpu, g: Geometry, l: Launch): string {
  const software = adapterKind(gpu) === "software";
  if (gemvLegal(g, l)) {
    if (!software) return "gemv-l64";
    // One load of x per lane instead of MR (gemv_sg.wgsl); at M = 8 ~10× gemv-l1 on lavapipe.
    return gemvSgEnabled(gpu) ? (g.m <= 2 ? "gemv-sg-r4" : "gemv-sg-r8") : "gemv-l1";
  }
  // 8 rows per gemv_sg launch: 1.8× the GEMM tiles' decode rate at batch 32 (bench/RESULTS.md).
  if (software && gemvChunkable(gpu, g, l)) return "gemv-sg-r8";
  if (software && vec4Legal(g, l)) return gpu.features.subgroups ? "sg-16x4-vec4" : "reg-8x4-vec4";
  if (software) return "reg-8x4-scalar";
  return "wg-8x8";
}

function findVariant(name: string): GemmVariant | GemvVariant {
  const v = GEMM_VARIANTS.find((x) => x.name === name) ?? GEMV_VARIANTS.find((x) => x.name === name);
  if (!v) {
    const all = [...GEMM_VARIANTS, ...GEMV_VARIANTS].map((x) => x.name).join(", ");
    throw new Error(`matmul: unknown variant '${name}' (expected one of ${all})`);
  }
  return v;
}

function isGemv(v: GemmVariant | GemvVariant): v is GemvVariant {
  return "lanes" in v;
}

function checkForced(gpu: Gpu, g: Geometry, l: Launch, v: GemmVariant | GemvVariant): void {
  if (((!isGemv(v) && v.subgroups) || (isGemv(v) && v.rn)) && !gpu.features.subgroups) {
    throw new Error(`matmul: variant '${v.name}' needs the subgroups feature, which this adapter lacks`);
  }
  if (isGemv(v) && !gemvLegal(g, l) && !(v.rn && gemvChunkable(gpu, g, l))) {
    throw new Error(
      `matmul: variant '${v.name}' needs x·Wᵀ with M ≤ ${GEMV_MAX_ROWS} (gemv-sg: ≤ ${GEMV_CHUNKED_MAX_ROWS}), ` +
        `no batch and K % 4 == 0 ` +
        `(got M=${g.m}, K=${l.k}, batch=${g.batch}, transA=${g.transA}, transB=${g.transB})`,
    );
  }
  if (!isGemv(v) && v.load === "vec4" && !vec4Legal(g, l)) {
    throw new Error(
      `matmul: variant '${v.name}' needs K and the contiguous dimensions to be multiples of 4 ` +
        `(got M=${g.m}, N=${l.n}, K=${l.k}, transA=${g.transA}, transB=${g.transB}); use a scalar or wg variant`,
    );
  }
}

/** Picks the variant for a launch: forced, measured, or the adapter default (noting it for tuning). */
function chooseVariant(gpu: Gpu, g: Geometry, l: Launch, forced?: string): GemmVariant | GemvVariant {
  if (forced) {
    const v = findVariant(forced);
    checkForced(gpu, g, l, v);
    return v;
  }
  const family = gemvLegal(g, l) ? "gemv" : "gemm";
  const cls = shapeClass(g, l, family);
  const names = candidateVariants(gpu, g, l).map((v) => v.name);
  const cached = cachedVariant(gpu, family, cls, names);
  if (cached && names.includes(cached)) return findVariant(cached);
  notePending(gpu, { family, shapeClass: cls, prepare: () => scratchCandidates(gpu, g, l), variants: names });
  return findVariant(defaultVariant(gpu, g, l));
}

const dummies = new WeakMap<Gpu, Tensor>();
/** Bound in place of an absent bias (a binding cannot be left empty). */
export function dummyBias(gpu: Gpu): Tensor {
  let t = dummies.get(gpu);
  if (!t || t.disposed) {
    t = gpu.zeros([4]);
    dummies.set(gpu, t);
  }
  return t;
}

function record(
  gpu: Gpu,
  v: GemmVariant | GemvVariant,
  g: Geometry,
  l: Launch,
  a: Tensor,
  c: Tensor,
  bias: Tensor,
  alpha: number,
): void {
  const enable = g.bDtype === "f16" ? "enable f16;" : "";
  const flags = (l.bias ? 1 : 0) | (l.accumulate ? 2 : 0);
  if (isGemv(v)) {
    const params = {
      n: l.n,
      k4: l.k / 4,
      ldx4: g.lda / 4,
      ldw4: l.k / 4,
      ldy: g.n,
      off_x4: l.offA / 4,
      off_w4: 0,
      off_y: l.offC,
      alpha,
      flags,
      off_bias: l.offBias,
    };
    if (v.rn) {
      // Rows of x in launches of ≤ 8 (more than one only for the chunked case), by offsets.
      for (let r0 = 0; r0 < g.m; r0 += GEMV_MAX_ROWS) {
        gpu.commands.dispatch({
          shader: "gemv_sg",
          entry: "gemv_sg",
          defines: { MR: Math.min(GEMV_MAX_ROWS, g.m - r0), RN: v.rn, ...sgWeightDefines(g.bDtype, "W") },
          bindings: [a, l.b, bias, c],
          params: { ...params, off_x4: (l.offA + r0 * g.lda) / 4, off_y: l.offC + r0 * g.n },
          workgroups: grid1d(gpu, Math.ceil(l.n / v.rows), 1),
        });
      }
      return;
    }
    gpu.commands.dispatch({
      shader: "gemv",
      entry: "gemv",
      defines: { MR: g.m, K_LANES: v.lanes, ROWS: v.rows, B_TYPE: g.bDtype, ENABLE_F16: enable },
      bindings: [a, l.b, bias, c],
      params,
      workgroups: grid1d(gpu, Math.ceil(l.n / v.rows), 1),
    });
    return;
  }
  const ldb = g.transB ? l.k : l.n;
  const params = {
    m: g.m,
    n: l.n,
    k: l.k,
    lda: g.lda,
    ldb,
    ldc: g.n,
    off_a: l.offA,
    off_b: 0,
    off_c: l.offC,
    batch_a: g.batchA,
    batch_b: g.batchB,
    batch_c: g.m * g.n,
    alpha,
    flags,
    off_bias: l.offBias,
  };
  const bDefines = v.subgroups ? sgWeightDefines(g.bDtype, "B") : { B_TYPE: g.bDtype, ENABLE_F16: enable };
  gpu.commands.dispatch({
    shader: v.subgroups ? "matmul_sg" : "matmul",
    entry: v.entry,
    defines: { TM: v.tm, TN4: v.tn4, TRANS_A: g.transA, TRANS_B: g.transB, ...bDefines },
    bindings: [a, l.b, bias, c],
    params,
    workgroups: [Math.ceil(l.n / (v.tn4 * 32)), Math.ceil(g.m / (v.tm * 8)), g.batch],
  });
}

/** Scratch operands of one launch's shape, and a record() per candidate variant, for tuning. */
function scratchCandidates(gpu: Gpu, g: Geometry, l: Launch): { candidates: TuneCandidate[]; dispose: () => void } {
  const sg: Geometry = { ...g, n: l.n, k: l.k, lda: g.transA ? g.m : l.k };
  sg.batchA = g.batchA === 0 ? 0 : g.m * l.k;
  sg.batchB = g.batchB === 0 ? 0 : l.n * l.k;
  const a = gpu.zeros(g.transA ? [sg.batch, l.k, g.m] : [sg.batch, g.m, l.k]);
  const b = gpu.zeros(g.transB ? [l.n, l.k] : [l.k, l.n], g.bDtype);
  const bBatched = sg.batchB === 0 ? b : gpu.zeros([sg.batch * l.n * l.k], g.bDtype);
  const c = gpu.zeros([sg.batch, g.m, l.n]);
  const sl: Launch = { ...l, b: bBatched, offA: 0, offC: 0, offBias: 0, bias: false, accumulate: false };
  const bias = dummyBias(gpu);
  const candidates = candidateVariants(gpu, sg, sl).map((v) => ({
    variant: v.name,
    record: () => record(gpu, v, sg, sl, a, c, bias, 1),
  }));
  return {
    candidates,
    dispose: () => {
      for (const t of new Set([a, b, bBatched, c])) t.dispose();
    },
  };
}

/** Validated geometry and launches of a matmul call. */
function plan(
  a: Tensor,
  b: Tensor | ShardedMatrix,
  opts: MatmulOptions,
): { g: Geometry; launches: Launch[]; outShape: number[] } {
  const gpu = a.gpu;
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  if (a.dtype !== "f32") throw new Error(`matmul: A must be f32, got ${a.dtype}`);
  if (b.dtype !== "f32" && b.dtype !== "f16") throw new Error(`matmul: B must be f32 or f16, got ${b.dtype}`);
  if (b.dtype === "f16" && !gpu.features.shaderF16) {
    throw new Error("matmul: B is f16 but this adapter lacks shader-f16; upload the weights as f32");
  }
  const sa = rows2(a, "A");
  const sb = b instanceof ShardedMatrix ? { batch: 1, r: b.rows, c: b.cols } : rows2(b, "B");
  const m = transA ? sa.c : sa.r;
  const k = transA ? sa.r : sa.c;
  const kb = transB ? sb.c : sb.r;
  const n = transB ? sb.r : sb.c;
  const shapes = `A [${a.shape.join(", ")}]${transA ? "ᵀ" : ""}, B [${b instanceof ShardedMatrix ? [b.rows, b.cols] : b.shape}]${transB ? "ᵀ" : ""}`;
  if (k !== kb) throw new Error(`matmul: inner dimensions differ (${shapes}: K=${k} vs ${kb})`);
  if (m === 0 || n === 0 || k === 0) throw new Error(`matmul: empty operand (${shapes})`);
  const batch = opts.batch ?? Math.max(sa.batch, sb.batch);
  for (const [name, nb] of [
    ["A", sa.batch],
    ["B", sb.batch],
  ] as const) {
    if (nb !== 1 && nb !== batch)
      throw new Error(`matmul: ${name} has batch ${nb}, expected 1 (broadcast) or ${batch}`);
  }
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`matmul: batch must be a positive integer, got ${batch}`);
  if (b instanceof ShardedMatrix && batch !== 1) throw new Error("matmul: a sharded B cannot be batched");
  const g: Geometry = {
    m,
    n,
    k,
    batch,
    lda: sa.c,
    batchA: sa.batch === 1 ? 0 : m * k,
    batchB: sb.batch === 1 ? 0 : n * k,
    transA,
    transB,
    bDtype: b.dtype,
  };
  const outShape = batch > 1 || a.shape.length === 3 || sb.batch > 1 ? [batch, m, n] : [m, n];
  const accumulate = opts.accumulate ?? false;
  if (accumulate && !opts.out) throw new Error("matmul: accumulate needs opts.out (the tensor to add into)");
  const out = opts.out;
  if (out) {
    if (out.dtype !== "f32") throw new Error(`matmul: out must be f32, got ${out.dtype}`);
    if (out.size !== batch * m * n) {
      throw new Error(`matmul: out has ${out.size} elements [${out.shape.join(", ")}], expected ${batch}·${m}·${n}`);
    }
  }
  if (opts.bias) {
    if (opts.bias.dtype !== "f32" || opts.bias.size !== n) {
      throw new Error(
        `matmul: bias must be f32 with N=${n} elements, got ${opts.bias.dtype} [${opts.bias.shape.join(", ")}]`,
      );
    }
  }
  const hasBias = opts.bias !== undefined;
  let launches: Launch[];
  if (!(b instanceof ShardedMatrix)) {
    launches = [{ b, n, k, offA: 0, offC: 0, offBias: 0, bias: hasBias, accumulate }];
  } else if (transB) {
    // Row shards of Bᵀ are column blocks of C.
    launches = b.shards.map((s) => ({
      b: s.tensor,
      n: s.rows,
      k,
      offA: 0,
      offC: s.rowStart,
      offBias: s.rowStart,
      bias: hasBias,
      accumulate,
    }));
  } else {
    // Row shards of B are K blocks: each adds its partial product into C.
    launches = b.shards.map((s, i) => ({
      b: s.tensor,
      n,
      k: s.rows,
      offA: transA ? s.rowStart * m : s.rowStart,
      offC: 0,
      offBias: 0,
      bias: hasBias && i === 0,
      accumulate: accumulate || i > 0,
    }));
  }
  return { g, launches, outShape };
}

/**
 * C = alpha · op(A) · op(B) (+ bias) (+ C): f32 A, f32 or f16 B (f32 accumulation), batched.
 * A and B are rank 2, or rank 3 with a leading batch (1 broadcasts); B may be a ShardedMatrix.
 * Returns `opts.out` or a new [M, N] (or [batch, M, N]) tensor.
 */
export function matmul(a: Tensor, b: Tensor | ShardedMatrix, opts: MatmulOptions = {}): Tensor {
  const gpu = a.gpu;
  const { g, launches, outShape } = plan(a, b, opts);
  const out = opts.out ?? gpu.tensor(outShape);
  const bias = opts.bias ?? dummyBias(gpu);
  const alpha = opts.alpha ?? 1;
  for (const l of launches) record(gpu, chooseVariant(gpu, g, l, opts.variant), g, l, a, out, bias, alpha);
  return out;
}

/** The variant(s) matmul() would run for these arguments (for benchmarks and tests). */
export function matmulVariants(a: Tensor, b: Tensor | ShardedMatrix, opts: MatmulOptions = {}): string[] {
  const { g, launches } = plan(a, b, opts);
  return [...new Set(launches.map((l) => chooseVariant(a.gpu, g, l, opts.variant).name))];
}

/**
 * Measures every candidate variant for this call's shape class(es) now, unless already cached
 * (or FULGUR_AUTOTUNE=0), so later matmul() calls of that class use the winner.
 */
export async function tuneMatmul(
  a: Tensor,
  b: Tensor | ShardedMatrix,
  opts: MatmulOptions = {},
): Promise<TuneResult[]> {
  const gpu = a.gpu;
  const { g, launches } = plan(a, b, { ...opts, out: undefined, accumulate: false });
  const results: TuneResult[] = [];
  if (!autotuneEnabled()) return results;
  const seen = new Set<string>();
  for (const l of launches) {
    const family = gemvLegal(g, l) ? "gemv" : "gemm";
    const cls = shapeClass(g, l, family);
    if (seen.has(cls)) continue;
    seen.add(cls);
    const cached = cachedVariant(
      gpu,
      family,
      cls,
      candidateVariants(gpu, g, l).map((v) => v.name),
    );
    if (cached) {
      results.push({ variant: cached, ms: {} });
      continue;
    }
    const { candidates, dispose } = scratchCandidates(gpu, g, l);
    try {
      results.push(await tune(gpu, family, cls, candidates));
    } finally {
      dispose();
    }
  }
  return results;
}

/**
 * A linear layer: y = x · Wᵀ (+ bias) with HF-style W [out, in] (a Tensor or ShardedMatrix,
 * f32 or f16). x is [..., in]; y is [..., out].
 */
export function linear(x: Tensor, w: Tensor | ShardedMatrix, bias?: Tensor, out?: Tensor): Tensor {
  if (x.shape.length < 1) throw new Error("linear: x must have at least one dimension [..., in]");
  const inF = x.shape[x.shape.length - 1];
  const wShape = w instanceof ShardedMatrix ? [w.rows, w.cols] : w.shape;
  if (wShape.length !== 2 || wShape[1] !== inF) {
    throw new Error(`linear: W must be [out, ${inF}] for x [${x.shape.join(", ")}], got [${wShape.join(", ")}]`);
  }
  const lead = x.shape.slice(0, -1);
  const rows = lead.reduce((p, d) => p * d, 1);
  const y = out ?? x.gpu.tensor([...lead, wShape[0]]);
  matmul(x.reshape([rows, inF]), w, { transB: true, bias, out: y });
  return y;
}
