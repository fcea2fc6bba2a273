// The LM head's logprobs and entropy straight from hidden states, by vocabulary blocks: logits
// are computed one column block of the head at a time ([rows, cols] with cols ≪ vocab, by the
// tuned matmul), folded into per-row partial softmax statistics and the target's logit
// (logprobs.wgsl's blockPartials), and dropped; a last pass combines the statistics. The
// backward recomputes each block's logits and accumulates d(hidden) (and the head's own
// gradient when it is trained) block by block. Peak memory is rows × (cols + tiles · 4) floats,
// linear in tokens, where materialising logits costs rows × vocab (512 × 151936 × 4 B = 311 MB).
// Every output element has one writer: no atomics. An int8 head (quant.ts) is widened to f32 one
// block at a time, right before the block's GEMMs, so it costs one block of f32 memory.

import type { ShardedMatrix } from "../shard.ts";
import type { Tensor } from "../tensor.ts";
import { requireShape } from "./launch.ts";
import {
  blockPartials,
  blockTiles,
  combineBlocks,
  defaultVocabTiling,
  entropyBackwardWithStats,
  tokenLogprobsBackward,
  type VocabTiling,
} from "./logprobs.ts";
import { matmul } from "./matmul.ts";
import { dequantInt8, type Int8Matrix, int8Shards, type ShardedInt8 } from "./quant.ts";

/** What the head may be: W [vocab, dim] f32 or f16, or int8 with row scales; sharded or not. */
export type HeadMatrix = Tensor | ShardedMatrix | Int8Matrix | ShardedInt8;

/** Bytes of one block's logits by default: small next to any model, big enough for a full GEMM. */
const DEFAULT_BLOCK_BYTES = 16 * 1024 * 1024;

export interface HeadBlockOptions {
  /** Softmax temperature T > 0. Default 1. */
  temperature?: number;
  /** Vocabulary columns per block (rounded down to the binding alignment); default from a 16 MiB budget. */
  blockCols?: number;
  tiling?: VocabTiling;
}

/**
 * One column block of the head: rows [col0, col0 + cols) of W, as a view of one shard (`w`) or of
 * the int8 matrix (`int8`, widened by withBlockWeight).
 */
interface Block {
  w?: Tensor;
  int8?: Int8Matrix;
  col0: number;
  cols: number;
  tile0: number;
}

/** Runs `use` on the block's weights as an f32/f16 tensor, widening an int8 block for the call. */
function withBlockWeight<T>(b: Block, use: (w: Tensor) => T): T {
  if (b.w) return use(b.w);
  const w = dequantInt8(b.int8 as Int8Matrix);
  const r = use(w);
  // Safe before the GPU ran: the pool hands the buffer out again only to later-recorded work.
  w.dispose();
  return r;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}

/**
 * Cuts the head [vocab, dim] into blocks inside its shards. A block's view must start on the
 * adapter's storage offset alignment, so block widths are multiples of `align` rows.
 */
export function headBlocks(
  head: HeadMatrix,
  rows: number,
  options: HeadBlockOptions = {},
): { blocks: Block[]; tiles: number; blockCols: number } {
  // Each shard's rows as one tensor (an int8 shard's packed words, with `m` the matrix itself).
  let shards: { tensor: Tensor; rowStart: number; rows: number; m?: Int8Matrix }[];
  if ("kind" in head)
    shards = int8Shards(head).map((s) => ({ tensor: s.m.q, rowStart: s.rowStart, rows: s.m.rows, m: s.m }));
  else if ("shards" in head) shards = head.shards;
  else shards = [{ tensor: head, rowStart: 0, rows: head.shape[0] }];
  const int8 = "kind" in head;
  const gpu = shards[0].tensor.gpu;
  const dim = "cols" in head ? head.cols : head.shape[1];
  const alignBytes = gpu.limits.minStorageBufferOffsetAlignment;
  const alignFor = (rowBytes: number) => alignBytes / gcd(alignBytes, rowBytes);
  // An int8 block views both its packed rows (dim bytes each) and their scales (4 bytes each).
  const align = int8 ? lcm(alignFor(dim), alignFor(4)) : alignFor(dim * (shards[0].tensor.dtype === "f16" ? 2 : 4));
  const budget = Math.min(gpu.maxBindingSize, DEFAULT_BLOCK_BYTES);
  // The logits block is rows × cols f32; an int8 block is also widened to cols × dim f32.
  const wanted = options.blockCols ?? Math.floor(budget / (Math.max(1, rows, int8 ? dim : 1) * 4));
  if (!Number.isInteger(wanted) || wanted < 1)
    throw new Error(`headBlocks: blockCols must be an integer ≥ 1, got ${wanted}`);
  const blockCols = Math.max(align, Math.floor(wanted / align) * align);
  if (rows * blockCols * 4 > gpu.maxBindingSize) {
    throw new Error(
      `headBlocks: ${rows} rows × ${blockCols} columns of logits exceed one storage binding; pass fewer rows`,
    );
  }
  const tiling = options.tiling ?? defaultVocabTiling(gpu);
  const blocks: Block[] = [];
  let tiles = 0;
  for (const shard of shards) {
    // Equal widths (the last may be narrower by < align): the pool reuses one logits buffer
    // for every block only when they share a size class.
    const width = Math.ceil(Math.ceil(shard.rows / Math.ceil(shard.rows / blockCols)) / align) * align;
    for (let r = 0; r < shard.rows; r += width) {
      const cols = Math.min(width, shard.rows - r);
      const m = shard.m;
      const view = m
        ? {
            int8: {
              ...m,
              rows: cols,
              q: m.q.view([cols, dim / 4], (r * dim) / 4),
              scales: m.scales.view([cols], r),
            },
          }
        : { w: shard.tensor.view([cols, dim], r * dim) };
      blocks.push({ ...view, col0: shard.rowStart + r, cols, tile0: tiles });
      tiles += blockTiles(gpu, cols, tiling);
    }
  }
  return { blocks, tiles, blockCols };
}

function checkInputs(fn: string, hidden: Tensor, head: HeadMatrix, targets: Tensor): [number, number] {
  if (hidden.dtype !== "f32" || hidden.shape.length !== 2) {
    throw new Error(`${fn}: hidden must be f32 [rows, dim], got ${hidden.dtype} [${hidden.shape.join(", ")}]`);
  }
  const [rows, dim] = hidden.shape;
  const headDim = "shards" in head || "kind" in head ? head.cols : head.shape[1];
  if (headDim !== dim) throw new Error(`${fn}: head has ${headDim} columns, hidden has ${dim}`);
  requireShape(targets, [rows], fn, "targets", "u32");
  return [rows, dim];
}

/**
 * log softmax(hidden · Wᵀ / T)[target] per row, the rows' lse (for the backward) and, when
 * asked, their entropy, without a [rows, vocab] tensor. `head` is W [vocab, dim] (f32 or f16,
 * sharded or not, or int8); `targets` u32 [rows] must be < vocab.
 */
export function headLogprobsByBlocks(
  hidden: Tensor,
  head: HeadMatrix,
  targets: Tensor,
  options: HeadBlockOptions & { entropy?: boolean } = {},
): { logprobs: Tensor; lse: Tensor; entropy: Tensor | null } {
  const [rows] = checkInputs("headLogprobsByBlocks", hidden, head, targets);
  const gpu = hidden.gpu;
  const { blocks, tiles } = headBlocks(head, rows, options);
  const partials = gpu.tensor([rows, tiles, 4]);
  const targetZ = gpu.zeros([rows]);
  for (const b of blocks) {
    const logits = withBlockWeight(b, (w) => matmul(hidden, w, { transB: true }));
    blockPartials(logits, targets, partials, targetZ, b, {
      temperature: options.temperature,
      tiling: options.tiling,
      entropy: options.entropy ?? false,
    });
    // Safe before the GPU ran: the pool hands the buffer out again only to later-recorded work.
    logits.dispose();
  }
  const r = combineBlocks(partials, targetZ, options);
  partials.dispose();
  targetZ.dispose();
  if (!options.entropy) {
    r.entropy.dispose();
    return { logprobs: r.logprobs, lse: r.lse, entropy: null };
  }
  return r;
}

export interface HeadBackwardOptions extends HeadBlockOptions {
  /** Gradient w.r.t. each row's entropy, with the entropy the forward returned. */
  entropy?: { value: Tensor; grad: Tensor };
  /** Where to write d(hidden) [rows, dim]; allocated when absent. Overwritten. */
  dHidden?: Tensor;
  /** The head's gradient f32 [vocab, dim] to add into (full-weight training); skipped when absent. */
  dHead?: Tensor;
}

/**
 * Gradient of Σ dLogprobs·logprob (+ Σ dEntropy·entropy) w.r.t. the hidden states, recomputing
 * each block's logits, with `lse` from headLogprobsByBlocks. Adds the head's gradient into
 * `dHead` when given.
 */
export function headBackwardByBlocks(
  hidden: Tensor,
  head: HeadMatrix,
  targets: Tensor,
  lse: Tensor,
  dLogprobs: Tensor,
  options: HeadBackwardOptions = {},
): Tensor {
  const fn = "headBackwardByBlocks";
  const [rows, dim] = checkInputs(fn, hidden, head, targets);
  requireShape(lse, [rows], fn, "lse", "f32");
  requireShape(dLogprobs, [rows], fn, "dLogprobs", "f32");
  const vocab = "shards" in head || "kind" in head ? head.rows : head.shape[0];
  if (options.dHead) requireShape(options.dHead, [vocab, dim], fn, "dHead", "f32");
  if (options.dHead && "kind" in head) throw new Error(`${fn}: an int8 head is frozen; it has no gradient`);
  const gpu = hidden.gpu;
  const dHidden = options.dHidden ?? gpu.tensor([rows, dim]);
  requireShape(dHidden, [rows, dim], fn, "dHidden", "f32");
  const { blocks } = headBlocks(head, rows, options);
  blocks.forEach((b, i) => {
    withBlockWeight(b, (w) => {
      const logits = matmul(hidden, w, { transB: true });
      const t = { temperature: options.temperature, tiling: options.tiling };
      const dLogits = tokenLogprobsBackward(dLogprobs, logits, targets, lse, { ...t, col0: b.col0 });
      if (options.entropy) {
        entropyBackwardWithStats(options.entropy.grad, logits, lse, options.entropy.value, {
          ...t,
          out: dLogits,
          accumulate: true,
        });
      }
      logits.dispose();
      matmul(dLogits, w, { out: dHidden, accumulate: i > 0 });
      if (options.dHead) {
        const rowsOfHead = options.dHead.view([b.cols, dim], b.col0 * dim);
        matmul(dLogits, hidden, { transA: true, accumulate: true, out: rowsOfHead });
      }
      dLogits.dispose();
    });
  });
  return dHidden;
}
