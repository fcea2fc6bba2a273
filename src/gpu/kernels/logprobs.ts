// Launchers for logprobs.wgsl: log-softmax, target-token logprobs and entropy over vocabulary-
// sized rows of tempered logits (z = logits / T), plus the backward passes the RL trainer needs.
//
// Logits are one f32 tensor [rows, vocab] inside one storage binding: the launcher takes
// whatever rows the caller gives and refuses more than fit; callers chunk rows (a 151936-wide
// row is 594 KiB, so ~220 rows fit lavapipe's 128 MiB binding).

import { adapterKind } from "../autotune.ts";
import type { Gpu } from "../device.ts";
import { grid1d } from "../grid.ts";
import type { Defines, ShaderParams } from "../pipeline.ts";
import type { Tensor } from "../tensor.ts";
import { requireShape, vectorDefines } from "./launch.ts";

const SHADER = "logprobs";
/**
 * How a row is cut into tiles: a workgroup of `workgroupSize` invocations covers
 * workgroupSize · items vectors, each invocation holding its `items` vectors in registers.
 */
export interface VocabTiling {
  workgroupSize: 32 | 64 | 128 | 256;
  items: number;
}

/**
 * Per adapter kind, as measured by bench/kernels/vocab.ts: on lavapipe workgroup barriers are the
 * cost, so few invocations with many registers (64 × 32, ~1.8× the 256 × 8 tile there); real GPUs
 * want many invocations with few registers each (256 × 8: 32 vec4 registers would cut occupancy).
 */
export function defaultVocabTiling(gpu: Gpu): VocabTiling {
  return adapterKind(gpu) === "software" ? { workgroupSize: 64, items: 32 } : { workgroupSize: 256, items: 8 };
}

export interface TemperatureOptions {
  /** Softmax temperature T > 0: the distribution is softmax(logits / T). Default 1. */
  temperature?: number;
  /** Tile shape; defaults per adapter kind (defaultVocabTiling). */
  tiling?: VocabTiling;
}

export interface BackwardOptions extends TemperatureOptions {
  /** Where to write dLogits [rows, vocab]; allocated when absent. */
  out?: Tensor;
  /** Add into `out` instead of overwriting it (to sum several losses' gradients). */
  accumulate?: boolean;
  /**
   * The logits are columns [col0, col0 + cols) of the full vocabulary (one block of the LM head,
   * see lmhead.ts); targets are full-vocabulary ids. Default 0.
   */
  col0?: number;
}

interface RowLayout {
  gpu: Gpu;
  logits: Tensor;
  rows: number;
  vocab: number;
  width: 1 | 4;
  tiles: number;
  invT: number;
  defines: Defines;
}

function layoutOf(fn: string, logits: Tensor, options: TemperatureOptions): RowLayout {
  if (logits.dtype !== "f32") throw new Error(`${fn}: logits must be f32, got ${logits.dtype}`);
  if (logits.shape.length !== 2 || logits.shape[0] < 1 || logits.shape[1] < 1) {
    throw new Error(`${fn}: logits must be [rows ≥ 1, vocab ≥ 1], got [${logits.shape.join(", ")}]`);
  }
  const t = options.temperature ?? 1;
  if (!Number.isFinite(t) || t <= 0) throw new Error(`${fn}: temperature must be a finite number > 0, got ${t}`);
  const [rows, vocab] = logits.shape;
  const gpu = logits.gpu;
  if (logits.byteLength > gpu.maxBindingSize) {
    const fit = Math.floor(gpu.maxBindingSize / (vocab * 4));
    throw new Error(
      `${fn}: ${rows} rows × ${vocab} logits exceed one storage binding (${gpu.maxBindingSize} bytes); ` +
        `pass at most ${fit} rows per call`,
    );
  }
  const maxGroups = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (rows > maxGroups) throw new Error(`${fn}: at most ${maxGroups} rows per call, got ${rows}`);
  const width = vocab % 4 === 0 ? 4 : 1;
  const tiling = options.tiling ?? defaultVocabTiling(gpu);
  if (![32, 64, 128, 256].includes(tiling.workgroupSize) || !Number.isInteger(tiling.items) || tiling.items < 1) {
    throw new Error(
      `${fn}: tiling needs workgroupSize 32/64/128/256 and integer items ≥ 1, got ${JSON.stringify(tiling)}`,
    );
  }
  const tiles = Math.ceil(vocab / width / (tiling.workgroupSize * tiling.items));
  if (tiles > maxGroups) throw new Error(`${fn}: ${tiles} tiles per row exceed ${maxGroups}; use a larger tiling`);
  const defines = { ...vectorDefines(width), ITEMS: tiling.items, WG: tiling.workgroupSize };
  return { gpu, logits, rows, vocab, width, tiles, invT: 1 / t, defines };
}

function params(
  l: RowLayout,
  block: { tiles: number; tile0: number; col0: number } = noBlock(l),
): ShaderParams["logprobs"] {
  return {
    rows: l.rows,
    vocab_v: l.vocab / l.width,
    tiles: block.tiles,
    inv_t: l.invT,
    tile0: block.tile0,
    col0: block.col0,
  };
}

/** A whole row: its own tiles, from column 0. */
function noBlock(l: RowLayout): { tiles: number; tile0: number; col0: number } {
  return { tiles: l.tiles, tile0: 0, col0: 0 };
}

function checkOut(fn: string, l: RowLayout, out: Tensor | undefined, accumulate: boolean | undefined): Tensor {
  if (!out) {
    if (accumulate) throw new Error(`${fn}: accumulate needs an \`out\` tensor to add into`);
    return l.gpu.tensor([l.rows, l.vocab]);
  }
  if (out.dtype !== "f32" || out.size !== l.rows * l.vocab) {
    throw new Error(`${fn}: out must be f32 [${l.rows}, ${l.vocab}], got ${out.dtype} [${out.shape.join(", ")}]`);
  }
  return out;
}

/** Records the tile pass: one (max, Σexp, Σexp·(z − max)) triple per (row, tile). Caller disposes. */
function recordPartials(l: RowLayout, withEntropy: boolean): Tensor {
  const partials = l.gpu.tensor([l.rows, l.tiles, 4]);
  l.gpu.commands.dispatch({
    shader: SHADER,
    entry: "partials",
    defines: l.defines,
    constants: { WITH_T: withEntropy ? 1 : 0 },
    bindings: [l.logits, partials],
    params: params(l),
    workgroups: [l.tiles, l.rows],
  });
  return partials;
}

/** Records both reduction levels, producing per-row lse and entropy. */
function recordStats(l: RowLayout, withEntropy: boolean): { lse: Tensor; entropy: Tensor } {
  const partials = recordPartials(l, withEntropy);
  const lse = l.gpu.tensor([l.rows]);
  const entropy = l.gpu.tensor([l.rows]);
  l.gpu.commands.dispatch({
    shader: SHADER,
    entry: "combine_stats",
    defines: l.defines,
    bindings: [partials, lse, entropy],
    params: params(l),
    workgroups: grid1d(l.gpu, l.rows, 64),
  });
  partials.dispose();
  return { lse, entropy };
}

/** log softmax(logits / T) → f32 [rows, vocab]. */
export function logSoftmax(logits: Tensor, options: TemperatureOptions & { out?: Tensor } = {}): Tensor {
  const l = layoutOf("logSoftmax", logits, options);
  const out = checkOut("logSoftmax", l, options.out, false);
  const { lse, entropy } = recordStats(l, false);
  entropy.dispose();
  l.gpu.commands.dispatch({
    shader: SHADER,
    entry: "log_softmax_out",
    defines: l.defines,
    bindings: [logits, lse, out],
    params: params(l),
    workgroups: [l.tiles, l.rows],
  });
  lse.dispose();
  return out;
}

/**
 * The logprob of each row's target token under softmax(logits / T), and the row's
 * log-sum-exp of logits / T (kept for the backward pass). Targets must be < vocab.
 */
export function tokenLogprobs(
  logits: Tensor,
  targets: Tensor,
  options: TemperatureOptions = {},
): { logprobs: Tensor; lse: Tensor } {
  const l = layoutOf("tokenLogprobs", logits, options);
  requireShape(targets, [l.rows], "tokenLogprobs", "targets", "u32");
  const partials = recordPartials(l, false);
  const logprobs = l.gpu.tensor([l.rows]);
  const lse = l.gpu.tensor([l.rows]);
  l.gpu.commands.dispatch({
    shader: SHADER,
    entry: "combine_token",
    defines: l.defines,
    bindings: [partials, logits, targets, logprobs, lse],
    params: params(l),
    workgroups: grid1d(l.gpu, l.rows, 64),
  });
  partials.dispose();
  return { logprobs, lse };
}

/** Entropy −Σ p log p of softmax(logits / T) per row → f32 [rows]. */
export function entropy(logits: Tensor, options: TemperatureOptions = {}): Tensor {
  const l = layoutOf("entropy", logits, options);
  const stats = recordStats(l, true);
  stats.lse.dispose();
  return stats.entropy;
}

/**
 * Gradient of tokenLogprobs w.r.t. the logits: dLogits = (onehot(target) − softmax(logits/T)) ·
 * dLogprobs / T, using the `lse` the forward pass returned.
 */
export function tokenLogprobsBackward(
  dLogprobs: Tensor,
  logits: Tensor,
  targets: Tensor,
  lse: Tensor,
  options: BackwardOptions = {},
): Tensor {
  const fn = "tokenLogprobsBackward";
  const l = layoutOf(fn, logits, options);
  requireShape(dLogprobs, [l.rows], fn, "dLogprobs", "f32");
  requireShape(targets, [l.rows], fn, "targets", "u32");
  requireShape(lse, [l.rows], fn, "lse", "f32");
  const out = checkOut(fn, l, options.out, options.accumulate);
  l.gpu.commands.dispatch({
    shader: SHADER,
    entry: "token_backward",
    defines: l.defines,
    constants: { ACCUMULATE: options.accumulate ? 1 : 0 },
    bindings: [logits, targets, lse, dLogprobs, out],
    params: params(l, { tiles: l.tiles, tile0: 0, col0: checkCol0(fn, options.col0) }),
    workgroups: [l.tiles, l.rows],
  });
  return out;
}

/**
 * Gradient of entropy(logits / T) w.r.t. the logits: dLogits_i = −p_i (log p_i + H) · dEntropy / T.
 * Recomputes the row statistics (one extra read of the logits) so callers keep nothing.
 */
export function entropyBackward(dEntropy: Tensor, logits: Tensor, options: BackwardOptions = {}): Tensor {
  const fn = "entropyBackward";
  const l = layoutOf(fn, logits, options);
  requireShape(dEntropy, [l.rows], fn, "dEntropy", "f32");
  const out = checkOut(fn, l, options.out, options.accumulate);
  const { lse, entropy } = recordStats(l, true);
  l.gpu.commands.dispatch({
    shader: SHADER,
    entry: "entropy_backward",
    defines: l.defines,
    constants: { ACCUMULATE: options.accumulate ? 1 : 0 },
    bindings: [logits, lse, entropy, dEntropy, out],
    params: params(l),
    workgroups: [l.tiles, l.rows],
  });
  lse.dispose();
  entropy.dispose();
  return out;
}

function checkCol0(fn: string, col0: number | undefined): number {
  const c = col0 ?? 0;
  if (!Number.isInteger(c) || c < 0) throw new Error(`${fn}: col0 must be an integer ≥ 0, got ${col0}`);
  return c;
}

/**
 * Gradient of entropy w.r.t. the logits given the rows' full-vocabulary statistics (`lse`,
 * `entropy`, from tokenLogprobs/entropy or combineBlocks) instead of recomputing them: what a
 * column block of the LM head needs, since its logits are only part of each row.
 */
export function entropyBackwardWithStats(
  dEntropy: Tensor,
  logits: Tensor,
  lse: Tensor,
  entropyValues: Tensor,
  options: BackwardOptions = {},
): Tensor {
  const fn = "entropyBackwardWithStats";
  const l = layoutOf(fn, logits, options);
  requireShape(dEntropy, [l.rows], fn, "dEntropy", "f32");
  requireShape(lse, [l.rows], fn, "lse", "f32");
  requireShape(entropyValues, [l.rows], fn, "entropy", "f32");
  const out = checkOut(fn, l, options.out, options.accumulate);
  l.gpu.commands.dispatch({
    shader: SHADER,
    entry: "entropy_backward",
    defines: l.defines,
    constants: { ACCUMULATE: options.accumulate ? 1 : 0 },
    bindings: [logits, lse, entropyValues, dEntropy, out],
    params: params(l),
    workgroups: [l.tiles, l.rows],
  });
  return out;
}

/** Triples one column block of `cols` logits per row adds to a partials buffer (see blockPartials). */
export function blockTiles(gpu: Gpu, cols: number, tiling: VocabTiling = defaultVocabTiling(gpu)): number {
  const width = cols % 4 === 0 ? 4 : 1;
  return Math.ceil(cols / width / (tiling.workgroupSize * tiling.items));
}

/**
 * One column block [col0, col0 + cols) of every row's logits, `logits` [rows, cols]: writes its
 * (max, Σexp, Σexp·(z − max)) triples into `partials` [rows, tiles, 4] at slots tile0… (the
 * block's blockTiles), and the tempered logit of each row's target into `targetZ` [rows] when
 * the target falls in this block. Blocks that cover the vocabulary once, then combineBlocks,
 * give tokenLogprobs and entropy without any [rows, vocab] tensor.
 */
export function blockPartials(
  logits: Tensor,
  targets: Tensor,
  partials: Tensor,
  targetZ: Tensor,
  block: { col0: number; tile0: number },
  options: TemperatureOptions & { entropy?: boolean } = {},
): void {
  const fn = "blockPartials";
  const l = layoutOf(fn, logits, options);
  requireShape(targets, [l.rows], fn, "targets", "u32");
  requireShape(targetZ, [l.rows], fn, "targetZ", "f32");
  if (
    partials.dtype !== "f32" ||
    partials.shape.length !== 3 ||
    partials.shape[0] !== l.rows ||
    partials.shape[2] !== 4
  ) {
    throw new Error(
      `${fn}: partials must be f32 [${l.rows}, tiles, 4], got ${partials.dtype} [${partials.shape.join(", ")}]`,
    );
  }
  const tiles = partials.shape[1];
  if (!Number.isInteger(block.tile0) || block.tile0 < 0 || block.tile0 + l.tiles > tiles) {
    throw new Error(
      `${fn}: tiles ${block.tile0}..${block.tile0 + l.tiles} of this block exceed the ${tiles} in partials`,
    );
  }
  const where = { tiles, tile0: block.tile0, col0: checkCol0(fn, block.col0) };
  l.gpu.commands.dispatch({
    shader: SHADER,
    entry: "partials",
    defines: l.defines,
    constants: { WITH_T: options.entropy === false ? 0 : 1 },
    bindings: [logits, partials],
    params: params(l, where),
    workgroups: [l.tiles, l.rows],
  });
  l.gpu.commands.dispatch({
    shader: SHADER,
    entry: "gather_target",
    defines: l.defines,
    bindings: [logits, targets, targetZ],
    params: params(l, where),
    workgroups: grid1d(l.gpu, l.rows, 64),
  });
}

/**
 * Folds a partials buffer that blockPartials filled for every block of the vocabulary: per row
 * the target's logprob, the lse (for the backward) and the entropy (meaningful when the blocks
 * were recorded with `entropy`).
 */
export function combineBlocks(
  partials: Tensor,
  targetZ: Tensor,
  options: TemperatureOptions = {},
): { logprobs: Tensor; lse: Tensor; entropy: Tensor } {
  const fn = "combineBlocks";
  const [rows, tiles] = partials.shape;
  requireShape(partials, [rows, tiles, 4], fn, "partials", "f32");
  requireShape(targetZ, [rows], fn, "targetZ", "f32");
  const t = options.temperature ?? 1;
  if (!Number.isFinite(t) || t <= 0) throw new Error(`${fn}: temperature must be a finite number > 0, got ${t}`);
  const gpu = partials.gpu;
  const logprobs = gpu.tensor([rows]);
  const lse = gpu.tensor([rows]);
  const ent = gpu.tensor([rows]);
  const tiling = options.tiling ?? defaultVocabTiling(gpu);
  gpu.commands.dispatch({
    shader: SHADER,
    entry: "combine_head",
    defines: { ...vectorDefines(1), ITEMS: tiling.items, WG: tiling.workgroupSize },
    bindings: [partials, targetZ, ent, logprobs, lse],
    params: { rows, vocab_v: 0, tiles, inv_t: 1 / t, tile0: 0, col0: 0 },
    workgroups: grid1d(gpu, rows, 64),
  });
  return { logprobs, lse, entropy: ent };
}
