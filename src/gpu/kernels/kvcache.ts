// Launchers for kvcache.wgsl: per-layer K/V caches [maxSlots, maxLen, nKvHeads, headDim] for
// continuous batching (a slot is one running sequence), writing new tokens into them, and
// attention of query rows over their slot's cached prefix — prefill (T = prompt length) and
// decode (T = one row per running sequence) alike, split across invocations for long contexts.

import type { Gpu } from "../device.ts";
import { grid1d } from "../grid.ts";
import { BYTES_PER_ELEMENT, type Tensor } from "../tensor.ts";
import { type AttentionOptions, attentionVariant, resolveHeads, variantDefines } from "./attention.ts";
import { requireShape } from "./launch.ts";

export interface KvCacheShape {
  maxSlots: number;
  maxLen: number;
  nKvHeads: number;
  headDim: number;
}

export interface KvCache {
  /** [maxSlots, maxLen, nKvHeads, headDim] */
  k: Tensor;
  v: Tensor;
}

export interface CachedAttentionOptions extends AttentionOptions {
  /**
   * Upper bound on pos[t] + 1 over the rows of this call (the longest context in the batch).
   * Positions live on the GPU, so this hint is what sizes the split; defaults to maxLen.
   */
  maxContext?: number;
  /** Keys per split; by default chosen so that rows × heads × splits keeps the GPU busy. */
  splitSize?: number;
}

const WG = 64;
/** Invocations worth having in flight before more splits stop paying for their combine pass. */
const TARGET_INVOCATIONS = 2048;
/** Fewer keys than this per split and the per-split overhead (partials, combine) dominates. */
const MIN_SPLIT = 64;

function cacheBytes(shape: KvCacheShape): number {
  return shape.maxSlots * shape.maxLen * shape.nKvHeads * shape.headDim * BYTES_PER_ELEMENT.f32;
}

function checkCacheFits(gpu: Gpu, shape: KvCacheShape, what: string): void {
  const bytes = cacheBytes(shape);
  if (bytes > gpu.maxBindingSize) {
    const maxRows = Math.floor(gpu.maxBindingSize / (shape.nKvHeads * shape.headDim * 4));
    throw new Error(
      `${what}: a K or V cache of [${shape.maxSlots}, ${shape.maxLen}, ${shape.nKvHeads}, ${shape.headDim}] f32 ` +
        `is ${bytes} bytes, over this adapter's maxStorageBufferBindingSize (${gpu.maxBindingSize}); ` +
        `lower maxSlots·maxLen to at most ${maxRows} (one cache per layer)`,
    );
  }
}

/** Allocates one layer's zeroed K and V caches, checking they fit one binding each. */
export function createKvCache(gpu: Gpu, shape: KvCacheShape): KvCache {
  const what = "createKvCache";
  for (const [name, value] of Object.entries(shape)) {
    if (!Number.isInteger(value) || value < 1)
      throw new Error(`${what}: ${name} must be a positive integer, got ${value}`);
  }
  checkCacheFits(gpu, shape, what);
  const dims = [shape.maxSlots, shape.maxLen, shape.nKvHeads, shape.headDim];
  return { k: gpu.zeros(dims), v: gpu.zeros(dims) };
}

function cacheShapeOf(kCache: Tensor, vCache: Tensor, what: string): KvCacheShape {
  if (kCache.shape.length !== 4) {
    throw new Error(`${what}: kCache must be [maxSlots, maxLen, nKvHeads, headDim], got [${kCache.shape.join(", ")}]`);
  }
  const [maxSlots, maxLen, nKvHeads, headDim] = kCache.shape;
  requireShape(kCache, kCache.shape, what, "kCache", "f32");
  requireShape(vCache, kCache.shape, what, "vCache", "f32");
  const shape = { maxSlots, maxLen, nKvHeads, headDim };
  checkCacheFits(kCache.gpu, shape, what);
  return shape;
}

/**
 * Writes each token's k/v rows ([tokens, nKvHeads, headDim]) into the caches at
 * [slot[t], pos[t]]. Rows whose slot or pos is out of range are skipped.
 */
export function kvWrite(kCache: Tensor, vCache: Tensor, k: Tensor, v: Tensor, slot: Tensor, pos: Tensor): void {
  const what = "kvWrite";
  const c = cacheShapeOf(kCache, vCache, what);
  if (k.shape.length !== 3)
    throw new Error(`${what}: k must be [tokens, nKvHeads, headDim], got [${k.shape.join(", ")}]`);
  const tokens = k.shape[0];
  requireShape(k, [tokens, c.nKvHeads, c.headDim], what, "k", "f32");
  requireShape(v, [tokens, c.nKvHeads, c.headDim], what, "v", "f32");
  requireShape(slot, [tokens], what, "slot", "u32");
  requireShape(pos, [tokens], what, "pos", "u32");
  const defines = variantDefines(c.headDim, { headsPerInvocation: 1 });
  const hdv = Number(defines.HDV);
  const gpu = k.gpu;
  gpu.commands.dispatch({
    shader: "kvcache",
    entry: "kv_write",
    defines,
    bindings: [k, v, slot, pos, kCache, vCache],
    params: {
      tokens,
      n_heads: 0,
      n_kv: c.nKvHeads,
      group: 0,
      max_slots: c.maxSlots,
      max_len: c.maxLen,
      chunk: 0,
      splits: 0,
      scale: 0,
      window: 0,
    },
    workgroups: grid1d(gpu, tokens * c.nKvHeads * hdv, WG),
  });
}

/** How many splits and keys per split a call with `rows` × heads query rows uses. */
export function splitPlan(rowHeads: number, context: number, splitSize?: number): { splits: number; chunk: number } {
  if (splitSize !== undefined) {
    if (!Number.isInteger(splitSize) || splitSize < 1) {
      throw new Error(`cachedAttention: splitSize must be a positive integer, got ${splitSize}`);
    }
    return { splits: Math.ceil(context / splitSize), chunk: splitSize };
  }
  const wanted = Math.ceil(TARGET_INVOCATIONS / rowHeads);
  const splits = Math.max(1, Math.min(wanted, Math.floor(context / MIN_SPLIT)));
  return { splits, chunk: Math.ceil(context / splits) };
}

/**
 * Attention of query rows q [tokens, nHeads, headDim] over the cache: row t attends
 * cache[slot[t], 0 ..= pos[t]], or its last `opts.window` keys (write the rows' own k/v with `kvWrite` first). Returns
 * out [tokens, nHeads, headDim]. Long contexts are split across invocations and combined.
 */
export function cachedAttention(
  q: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  slot: Tensor,
  pos: Tensor,
  opts: CachedAttentionOptions,
): Tensor {
  const what = "cachedAttention";
  const { scale, group, window } = resolveHeads(opts, what);
  const c = cacheShapeOf(kCache, vCache, what);
  const { nHeads, nKvHeads, headDim } = opts;
  if (c.nKvHeads !== nKvHeads || c.headDim !== headDim) {
    throw new Error(
      `${what}: caches hold ${c.nKvHeads} kv heads of ${c.headDim}, options say ${nKvHeads} of ${headDim}`,
    );
  }
  if (q.shape.length !== 3)
    throw new Error(`${what}: q must be [tokens, nHeads, headDim], got [${q.shape.join(", ")}]`);
  const tokens = q.shape[0];
  requireShape(q, [tokens, nHeads, headDim], what, "q", "f32");
  requireShape(slot, [tokens], what, "slot", "u32");
  requireShape(pos, [tokens], what, "pos", "u32");
  const context = opts.maxContext ?? c.maxLen;
  if (!Number.isInteger(context) || context < 1 || context > c.maxLen) {
    throw new Error(`${what}: maxContext must be an integer in 1..${c.maxLen} (the cache length), got ${context}`);
  }
  const gpu = q.gpu;
  const variant = attentionVariant(gpu, opts, what);
  const hpi = variant.headsPerInvocation;
  const defines = variantDefines(headDim, variant);
  const hdv = Number(defines.HDV);
  const rowHeads = tokens * nHeads;
  const { splits, chunk } = splitPlan(rowHeads / hpi, context, opts.splitSize);
  const params = {
    tokens,
    n_heads: nHeads,
    n_kv: nKvHeads,
    group,
    max_slots: c.maxSlots,
    max_len: c.maxLen,
    chunk,
    splits,
    scale,
    window,
  };
  const out = gpu.tensor([tokens, nHeads, headDim]);
  if (splits === 1) {
    gpu.commands.dispatch({
      shader: "kvcache",
      entry: "cached_direct",
      defines,
      bindings: [q, kCache, vCache, slot, pos, out],
      params,
      workgroups: grid1d(gpu, rowHeads / hpi, WG),
    });
    return out;
  }
  const partO = gpu.tensor([tokens, nHeads, splits, headDim]);
  const partMl = gpu.tensor([tokens, nHeads, splits, 2]);
  gpu.commands.dispatch({
    shader: "kvcache",
    entry: "cached_partial",
    defines,
    bindings: [q, kCache, vCache, slot, pos, partO, partMl],
    params,
    workgroups: grid1d(gpu, (rowHeads / hpi) * splits, WG),
  });
  gpu.commands.dispatch({
    shader: "kvcache",
    entry: "cached_combine",
    defines,
    bindings: [partO, partMl, out],
    params,
    workgroups: grid1d(gpu, rowHeads * hdv, WG),
  });
  // Later work recorded into this batch may reuse these buffers; the GPU runs it in order.
  partO.dispose();
  partMl.dispose();
  return out;
}
