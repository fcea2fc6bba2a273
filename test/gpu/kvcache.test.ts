// KV cache and cached attention (kvcache.wgsl): writes land at [slot, pos]; prefill then decode
// token by token reproduces full causal attention (the training kernel and the f64 reference)
// for several slots of different lengths per call; split (flash-decoding) and unsplit paths agree.
import { describe, expect, it } from "vitest";
import { acquireGpu, type Gpu } from "../../src/gpu/index.ts";
import { attention, packedSeqStart } from "../../src/gpu/kernels/attention.ts";
import { cachedAttention, createKvCache, kvWrite, splitPlan } from "../../src/gpu/kernels/kvcache.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { normal } from "../helpers/random.ts";
import { attentionReference } from "../reference/attention.ts";

const gpu = useGpu();

interface Heads {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Sliding window (Gemma 3's local layers, Mistral); absent: the whole prefix. */
  window?: number;
}

/** Rows of a [tokens, heads, D] array picked by token index. */
function gatherRows(data: Float32Array, rowSize: number, tokens: number[]): Float32Array {
  const out = new Float32Array(tokens.length * rowSize);
  tokens.forEach((t, i) => {
    out.set(data.subarray(t * rowSize, (t + 1) * rowSize), i * rowSize);
  });
  return out;
}

describe("kvWrite", () => {
  it("writes each token at [slot, pos] and skips out-of-range rows", async () => {
    const g = gpu();
    const shape = { maxSlots: 3, maxLen: 5, nKvHeads: 2, headDim: 8 };
    const cache = createKvCache(g, shape);
    const rowSize = shape.nKvHeads * shape.headDim;
    const slots = [2, 0, 2, 3, 1];
    const poss = [4, 0, 1, 0, 9]; // the last two rows are out of range (slot 3, pos 9)
    const kData = normal(slots.length * rowSize, 1);
    const vData = normal(slots.length * rowSize, 2);
    kvWrite(
      cache.k,
      cache.v,
      g.tensor([5, 2, 8], "f32", kData),
      g.tensor([5, 2, 8], "f32", vData),
      g.tensor([5], "u32", slots),
      g.tensor([5], "u32", poss),
    );
    const expectK = new Float32Array(3 * 5 * rowSize);
    const expectV = new Float32Array(3 * 5 * rowSize);
    for (let t = 0; t < 3; t++) {
      const at = (slots[t] * shape.maxLen + poss[t]) * rowSize;
      expectK.set(kData.subarray(t * rowSize, (t + 1) * rowSize), at);
      expectV.set(vData.subarray(t * rowSize, (t + 1) * rowSize), at);
    }
    expect(Array.from(await cache.k.read())).toEqual(Array.from(expectK));
    expect(Array.from(await cache.v.read())).toEqual(Array.from(expectV));
  });
});

/**
 * Serves `lengths.length` sequences, one per slot (slot ids permuted), prefilling the first
 * `prompts[i]` tokens of each in one call and decoding the rest one token per running sequence
 * per call. Returns the outputs in packed order, comparable with training attention.
 */
async function serve(
  g: Gpu,
  h: Heads,
  lengths: number[],
  prompts: number[],
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  splitSize?: number,
): Promise<Float32Array> {
  const maxLen = Math.max(...lengths) + 3;
  const cache = createKvCache(g, { maxSlots: lengths.length + 1, maxLen, nKvHeads: h.nKvHeads, headDim: h.headDim });
  const slotOf = lengths.map((_, i) => lengths.length - i); // reversed, slot 0 unused
  const starts = lengths.map((_, i) => lengths.slice(0, i).reduce((a, b) => a + b, 0));
  const qRow = h.nHeads * h.headDim;
  const kvRow = h.nKvHeads * h.headDim;
  const result = new Float32Array(q.length);
  // Each step: which (sequence, position) rows go in this call.
  const steps: [number, number][][] = [
    lengths.flatMap((_, i) => range(prompts[i]).map((p) => [i, p] as [number, number])),
  ];
  for (let p = Math.min(...prompts); p < Math.max(...lengths); p++) {
    const rows = lengths.flatMap((n, i) => (p >= prompts[i] && p < n ? [[i, p] as [number, number]] : []));
    if (rows.length > 0) steps.push(rows);
  }
  for (const rows of steps) {
    const tokens = rows.map(([i, p]) => starts[i] + p);
    const T = rows.length;
    const slot = g.tensor(
      [T],
      "u32",
      rows.map(([i]) => slotOf[i]),
    );
    const pos = g.tensor(
      [T],
      "u32",
      rows.map(([, p]) => p),
    );
    const kT = g.tensor([T, h.nKvHeads, h.headDim], "f32", gatherRows(k, kvRow, tokens));
    const vT = g.tensor([T, h.nKvHeads, h.headDim], "f32", gatherRows(v, kvRow, tokens));
    const qT = g.tensor([T, h.nHeads, h.headDim], "f32", gatherRows(q, qRow, tokens));
    kvWrite(cache.k, cache.v, kT, vT, slot, pos);
    const maxContext = Math.max(...rows.map(([, p]) => p + 1));
    const out = await cachedAttention(qT, cache.k, cache.v, slot, pos, { ...h, maxContext, splitSize }).read();
    tokens.forEach((t, r) => {
      result.set(out.subarray(r * qRow, (r + 1) * qRow), t * qRow);
    });
    for (const x of [slot, pos, kT, vT, qT]) x.dispose();
  }
  cache.k.dispose();
  cache.v.dispose();
  return result;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

describe("cachedAttention", () => {
  const cases: { h: Heads; lengths: number[]; prompts: number[]; splitSize?: number }[] = [
    { h: { nHeads: 14, nKvHeads: 2, headDim: 64 }, lengths: [5, 19, 1], prompts: [3, 10, 1] },
    { h: { nHeads: 4, nKvHeads: 2, headDim: 7 }, lengths: [9, 4], prompts: [1, 4] },
    { h: { nHeads: 2, nKvHeads: 1, headDim: 128 }, lengths: [12, 7, 30], prompts: [12, 2, 20], splitSize: 4 },
    // Windowed: prompts longer and shorter than the window, decode walking past it, and splits
    // lying wholly before the window (empty partials the combine pass must weigh as 0).
    { h: { nHeads: 4, nKvHeads: 2, headDim: 8, window: 5 }, lengths: [13, 4, 1], prompts: [9, 2, 1] },
    { h: { nHeads: 2, nKvHeads: 1, headDim: 7, window: 3 }, lengths: [12, 7, 30], prompts: [12, 2, 20], splitSize: 4 },
    { h: { nHeads: 2, nKvHeads: 2, headDim: 64, window: 1 }, lengths: [6, 3], prompts: [2, 3] },
    // Gemma 3 1B's heads (head_dim 256, 4:1 GQA) with a window.
    { h: { nHeads: 4, nKvHeads: 1, headDim: 256, window: 4 }, lengths: [9, 2], prompts: [5, 2] },
  ];
  for (const c of cases) {
    const name = `H${c.h.nHeads}/KV${c.h.nKvHeads} D${c.h.headDim}${c.h.window ? ` window ${c.h.window}` : ""} lengths [${c.lengths}] prompts [${c.prompts}]`;
    it(`prefill then decode equals full causal attention: ${name}${c.splitSize ? ` split ${c.splitSize}` : ""}`, async () => {
      const g = gpu();
      const seqStart = packedSeqStart(c.lengths);
      const T = seqStart.length;
      const q = normal(T * c.h.nHeads * c.h.headDim, 11);
      const k = normal(T * c.h.nKvHeads * c.h.headDim, 12);
      const v = normal(T * c.h.nKvHeads * c.h.headDim, 13);
      const served = await serve(g, c.h, c.lengths, c.prompts, q, k, v, c.splitSize);
      const training = attention(
        g.tensor([T, c.h.nHeads, c.h.headDim], "f32", q),
        g.tensor([T, c.h.nKvHeads, c.h.headDim], "f32", k),
        g.tensor([T, c.h.nKvHeads, c.h.headDim], "f32", v),
        g.tensor([T], "u32", seqStart),
        c.h,
      );
      const ref = attentionReference(q, k, v, seqStart, c.h);
      // Same f32 arithmetic as the training kernel up to the order of split merges: a few ulps.
      expectClose(served, await training.out.read(), { atol: 1e-5, rtol: 1e-4 }, `served vs training ${name}`);
      expectClose(served, ref.out, { atol: 2e-5, rtol: 1e-4 }, `served vs reference ${name}`);
    });
  }

  it("splits long decode contexts and matches the unsplit kernel and the reference", async () => {
    const g = gpu();
    const h = { nHeads: 4, nKvHeads: 2, headDim: 64 };
    const lengths = [700, 33, 1];
    const shape = { maxSlots: 3, maxLen: 1024, nKvHeads: 2, headDim: 64 };
    const cache = createKvCache(g, shape);
    const seqStart = packedSeqStart(lengths);
    const T = seqStart.length;
    const q = normal(T * 4 * 64, 21, 2);
    const k = normal(T * 2 * 64, 22, 2);
    const v = normal(T * 2 * 64, 23);
    // Sequence i lives in slot i.
    const slotIds = lengths.flatMap((n, i) => new Array<number>(n).fill(i));
    const posIds = Array.from(seqStart, (s, t) => t - s);
    kvWrite(
      cache.k,
      cache.v,
      g.tensor([T, 2, 64], "f32", k),
      g.tensor([T, 2, 64], "f32", v),
      g.tensor([T], "u32", slotIds),
      g.tensor([T], "u32", posIds),
    );
    // Decode rows: the last token of each sequence.
    const last = [699, 732, 733];
    const qRows = g.tensor([3, 4, 64], "f32", gatherRows(q, 4 * 64, last));
    const slot = g.tensor([3], "u32", [0, 1, 2]);
    const pos = g.tensor([3], "u32", [699, 32, 0]);
    const ref = attentionReference(q, k, v, seqStart, h);
    const expected = gatherRows(Float32Array.from(ref.out), 4 * 64, last);
    expect(splitPlan(3 * 4, 1024).splits).toBeGreaterThan(1);
    const variants = [{}, { maxContext: 700 }, { splitSize: 37 }, { splitSize: 1024 }, { headsPerInvocation: 1 }];
    for (const opts of variants) {
      const out = await cachedAttention(qRows, cache.k, cache.v, slot, pos, { ...h, ...opts }).read();
      // 700-key softmax with scores of a few units: errors stay at a few ulps of O(1) outputs.
      expectClose(out, expected, { atol: 2e-5, rtol: 1e-4 }, `decode ${JSON.stringify(opts)}`);
    }
    // A 129-key window over the 700-key context: most splits lie wholly before the window.
    const windowed = attentionReference(q, k, v, seqStart, { ...h, window: 129 });
    const expectedWindowed = gatherRows(Float32Array.from(windowed.out), 4 * 64, last);
    for (const opts of [{}, { splitSize: 37 }, { splitSize: 1024 }]) {
      const out = await cachedAttention(qRows, cache.k, cache.v, slot, pos, { ...h, window: 129, ...opts }).read();
      expectClose(out, expectedWindowed, { atol: 2e-5, rtol: 1e-4 }, `windowed decode ${JSON.stringify(opts)}`);
    }
  });

  it("rejects caches over the binding limit, mismatched heads and bad options clearly", async () => {
    const small = await acquireGpu({ maxBindingSize: 64 * 1024 });
    try {
      expect(() => createKvCache(small, { maxSlots: 4, maxLen: 128, nKvHeads: 2, headDim: 64 })).toThrow(
        /maxStorageBufferBindingSize \(65536\); lower maxSlots·maxLen to at most 128/,
      );
    } finally {
      small.destroy();
    }
    const g = gpu();
    const cache = createKvCache(g, { maxSlots: 2, maxLen: 8, nKvHeads: 2, headDim: 8 });
    const q = g.tensor([1, 4, 8]);
    const s = g.tensor([1], "u32", [0]);
    const h = { nHeads: 4, nKvHeads: 2, headDim: 8 };
    expect(() => cachedAttention(q, cache.k, cache.v, s, s, { ...h, nKvHeads: 1 })).toThrow(/caches hold 2 kv heads/);
    expect(() => cachedAttention(q, cache.k, cache.v, s, s, { ...h, maxContext: 9 })).toThrow(/maxContext/);
    expect(() => cachedAttention(q, cache.k, cache.v, s, s, { ...h, splitSize: 0 })).toThrow(/splitSize/);
    expect(() => cachedAttention(q, cache.k, cache.v, g.tensor([1]), s, h)).toThrow(/slot must be u32/);
    expect(() => kvWrite(cache.k, cache.v, g.tensor([1, 2, 4]), g.tensor([1, 2, 4]), s, s)).toThrow(
      /k has shape \[1, 2, 4\], expected \[1, 2, 8\]/,
    );
    expect(() => createKvCache(g, { maxSlots: 0, maxLen: 8, nKvHeads: 2, headDim: 8 })).toThrow(/maxSlots/);
  });
});
