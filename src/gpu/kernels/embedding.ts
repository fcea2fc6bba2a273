// Launchers for embedding.wgsl: the token-embedding gather from a plain or row-sharded table, its
// deterministic gradient scatter-add (segmented on the CPU, where the token ids come from), and
// a validated upload of token ids.

import type { Gpu } from "../device.ts";
import { type Shard, ShardedMatrix } from "../shard.ts";
import type { Tensor } from "../tensor.ts";
import { require2d, requireF32, requireShape, requireU32, rowsGrid, sameBuffer, vectorDefines } from "./launch.ts";
import { type Int8Matrix, int8Shards, type ShardedInt8 } from "./quant.ts";

const WG = 64;

/** A [vocab, dim] table as one tensor or row shards, seen uniformly (f16 only where `f16ok`). */
function tableShards(
  op: string,
  table: Tensor | ShardedMatrix,
  f16ok = false,
): { vocab: number; dim: number; shards: Shard[]; f16: boolean } {
  const f16 = f16ok && table.dtype === "f16";
  if (table instanceof ShardedMatrix) {
    if (table.dtype !== "f32" && !f16) throw new Error(`${op}: table must be f32, got ${table.dtype}`);
    return { vocab: table.rows, dim: table.cols, shards: table.shards, f16 };
  }
  if (!f16) requireF32(table, op, "table");
  const [vocab, dim] = require2d(table, op, "table");
  return { vocab, dim, shards: [{ tensor: table, rowStart: 0, rows: vocab }], f16 };
}

/**
 * Uploads token ids as a u32 tensor after checking each is an integer in [0, vocab): the place
 * where bad ids can still be reported (the gather kernel can only clamp them).
 */
export function uploadTokenIds(gpu: Gpu, ids: ArrayLike<number>, vocab: number): Tensor {
  checkIds("uploadTokenIds", ids, vocab);
  return gpu.tensor([ids.length], "u32", ids);
}

function checkIds(op: string, ids: ArrayLike<number>, vocab: number): void {
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new Error(`${op}: token id ${id} at position ${t} is outside the vocabulary [0, ${vocab})`);
    }
  }
}

/**
 * out [tokens, dim] = table[ids]. `table` is [vocab, dim] f32 or f16, as one tensor or a ShardedMatrix
 * (one dispatch per shard, each writing the tokens whose ids fall in its rows), or an int8 matrix
 * (quant.ts; widened with its row scales). `ids` is u32 [tokens]; ids ≥ vocab are clamped to
 * vocab − 1 (validate with `uploadTokenIds`).
 */
export function embedding(
  table: Tensor | ShardedMatrix | Int8Matrix | ShardedInt8,
  ids: Tensor,
  options: { out?: Tensor } = {},
): Tensor {
  const op = "embedding";
  requireU32(ids, op, "ids");
  if (ids.shape.length !== 1) throw new Error(`${op}: ids must be 1-D [tokens], got [${ids.shape.join(", ")}]`);
  const { vocab, dim, shards, f16 } =
    "kind" in table
      ? {
          vocab: table.rows,
          dim: table.cols,
          shards: int8Shards(table).map((s) => ({ tensor: s.m.q, rowStart: s.rowStart, rows: s.m.rows })),
          f16: false,
        }
      : tableShards(op, table, true);
  if (vocab === 0 || dim === 0) throw new Error(`${op}: table is empty ([${vocab}, ${dim}])`);
  const tokens = ids.shape[0];
  const gpu = ids.gpu;
  const out = options.out ?? gpu.tensor([tokens, dim]);
  requireF32(out, op, "out");
  requireShape(out, [tokens, dim], op, "out");
  if (sameBuffer(out, ids) || shards.some((s) => sameBuffer(out, s.tensor))) {
    throw new Error(`${op}: out must not share a buffer with the table or ids`);
  }
  if ("kind" in table) {
    gatherInt8(table, ids, out);
    return out;
  }
  const width: 1 | 4 = dim % 4 === 0 && !f16 ? 4 : 1;
  const cols = dim / width;
  for (const shard of shards) {
    gpu.commands.dispatch({
      shader: "embedding",
      entry: f16 ? "embedding_gather_f16" : "embedding_gather",
      defines: vectorDefines(width),
      bindings: [shard.tensor, ids, out],
      params: {
        count: tokens,
        cols,
        row_start: shard.rowStart,
        rows: shard.rows,
        vocab,
        tokens: 0,
        unique: 0,
        seg_first: 0,
      },
      workgroups: rowsGrid(gpu, cols, WG, tokens),
    });
  }
  return out;
}

/** embedding() from an int8 table: one invocation per word of a row (dim is a multiple of 4). */
function gatherInt8(table: Int8Matrix | ShardedInt8, ids: Tensor, out: Tensor): void {
  const gpu = ids.gpu;
  const tokens = ids.shape[0];
  const cols = table.cols / 4;
  for (const { m, rowStart } of int8Shards(table)) {
    gpu.commands.dispatch({
      shader: "embedding",
      entry: "embedding_gather_int8",
      defines: vectorDefines(4),
      bindings: [m.q, ids, out, m.scales],
      params: {
        count: tokens,
        cols,
        row_start: rowStart,
        rows: m.rows,
        vocab: table.rows,
        tokens: 0,
        unique: 0,
        seg_first: 0,
      },
      workgroups: rowsGrid(gpu, cols, WG, tokens),
    });
  }
}

/** Token indices grouped by id: what the scatter kernel walks. */
export interface ScatterPlan {
  /** Token indices sorted by (id, token). */
  order: Uint32Array;
  /** Segment s covers order[starts[s] .. starts[s + 1]). */
  starts: Uint32Array;
  /** The id of each segment, ascending. */
  uniqueIds: Uint32Array;
}

/** Groups token positions by id (stable), on the CPU. */
export function scatterPlan(ids: ArrayLike<number>): ScatterPlan {
  const order = Uint32Array.from({ length: ids.length }, (_, t) => t);
  order.sort((a, b) => ids[a] - ids[b] || a - b);
  const starts: number[] = [];
  const uniqueIds: number[] = [];
  for (let k = 0; k < order.length; k++) {
    const id = ids[order[k]];
    if (k === 0 || id !== uniqueIds[uniqueIds.length - 1]) {
      starts.push(k);
      uniqueIds.push(id);
    }
  }
  starts.push(order.length);
  return { order, starts: Uint32Array.from(starts), uniqueIds: Uint32Array.from(uniqueIds) };
}

/** First index in the ascending `sorted` whose value is ≥ `value`. */
function lowerBound(sorted: Uint32Array, value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Gradient of `embedding`: dTable[id] += Σ dy[t] over tokens t with ids[t] = id, accumulating
 * into dTable ([vocab, dim], a tensor or ShardedMatrix; zero it first for a fresh gradient).
 *
 * `ids` is the host copy of the token ids (the caller uploaded them, so it has them): tokens are
 * grouped by id on the CPU and each table row is written by exactly one invocation per column,
 * summing its tokens in ascending order — deterministic, with no float atomics (WGSL has none).
 * Ids outside [0, vocab) are an error.
 */
export function embeddingBackward(dy: Tensor, ids: ArrayLike<number>, dTable: Tensor | ShardedMatrix): void {
  const op = "embeddingBackward";
  const { vocab, dim, shards } = tableShards(op, dTable);
  requireF32(dy, op, "dy");
  requireShape(dy, [ids.length, dim], op, "dy");
  if (shards.some((s) => sameBuffer(dy, s.tensor))) throw new Error(`${op}: dy must not share a buffer with dTable`);
  checkIds(op, ids, vocab);
  const tokens = ids.length;
  if (tokens === 0) return;
  const gpu = dy.gpu;
  const { order, starts, uniqueIds } = scatterPlan(ids);
  const unique = uniqueIds.length;
  const packed = new Uint32Array(tokens + 2 * unique + 1);
  packed.set(order, 0);
  packed.set(starts, tokens);
  packed.set(uniqueIds, tokens + unique + 1);
  const plan = gpu.tensor([packed.length], "u32", packed);
  const width: 1 | 4 = dim % 4 === 0 ? 4 : 1;
  const cols = dim / width;
  for (const shard of shards) {
    const segFirst = lowerBound(uniqueIds, shard.rowStart);
    const segEnd = lowerBound(uniqueIds, shard.rowStart + shard.rows);
    const segments = segEnd - segFirst;
    if (segments === 0) continue;
    gpu.commands.dispatch({
      shader: "embedding",
      entry: "embedding_scatter",
      defines: vectorDefines(width),
      bindings: [dy, plan, shard.tensor],
      params: {
        count: segments,
        cols,
        row_start: shard.rowStart,
        rows: shard.rows,
        vocab,
        tokens,
        unique,
        seg_first: segFirst,
      },
      workgroups: rowsGrid(gpu, cols, WG, segments),
    });
  }
  // Safe before the GPU runs: the pool hands the buffer out again only to work submitted later.
  plan.dispose();
}
