// Embedding gather and gradient scatter-add on the real device vs an f64 reference: repeated ids,
// row-sharded tables (a 64 KiB binding limit), id validation and clamping, determinism, and a
// finite-difference gradient check.
import { describe, expect, it } from "vitest";
import { f16ToF32, f32ToF16, ShardedMatrix } from "../../src/gpu/index.ts";
import { embedding, embeddingBackward, scatterPlan, uploadTokenIds } from "../../src/gpu/kernels/embedding.ts";
import { quantizeInt8Rows, uploadInt8, uploadInt8Sharded } from "../../src/gpu/kernels/quant.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { gradCheck } from "../helpers/gradcheck.ts";
import { ints, uniform } from "../helpers/random.ts";
import { embeddingBackwardRef, embeddingRef } from "../reference/embedding.ts";
import { refDequantInt8 } from "../reference/quant.ts";

const gpu = useGpu();
const smallBindings = useGpu({ maxBindingSize: 64 * 1024 });

// The gather copies floats: exact. The scatter adds ≤ `tokens` values in [-1, 1) to a value in
// [-1, 1) in f32: error ≤ tokens·ulp(tokens) ≈ 129·1.5e-5 in the worst case with all tokens on one
// id, far less in practice; 2e-5 absolute holds for the few-repeats cases and catches a lost or
// doubled token (an O(1) error).
const SCATTER_TOL = { atol: 2e-5, rtol: 1e-6 };

// [tokens, vocab, dim]; small vocabularies force many repeated ids.
const CASES: [number, number, number][] = [
  [1, 1, 1],
  [7, 3, 7],
  [129, 50, 129],
  [129, 1000, 896],
  [64, 10, 4],
];

describe("embedding", () => {
  it.each(CASES)(
    "gather and scatter-add match the reference (tokens=%i vocab=%i dim=%i)",
    async (tokens, vocab, dim) => {
      const g = gpu();
      const table = uniform(vocab * dim, vocab + dim);
      const idsHost = ints(tokens, tokens, vocab);
      idsHost[tokens - 1] = vocab - 1;
      const ids = uploadTokenIds(g, idsHost, vocab);
      const out = embedding(g.tensor([vocab, dim], "f32", table), ids);
      expect(out.shape).toEqual([tokens, dim]);
      expect(Array.from(await out.read())).toEqual(Array.from(embeddingRef(table, dim, idsHost), Math.fround));

      const dyd = uniform(tokens * dim, 99);
      const initial = uniform(vocab * dim, 98);
      const dTable = g.tensor([vocab, dim], "f32", initial);
      embeddingBackward(g.tensor([tokens, dim], "f32", dyd), idsHost, dTable);
      expectClose(await dTable.read(), embeddingBackwardRef(dyd, dim, idsHost, initial), SCATTER_TOL, "dTable");
    },
  );

  it.each(CASES)(
    "gathers from an f16 table (a frozen embedding) like the reference (tokens=%i vocab=%i dim=%i)",
    async (tokens, vocab, dim) => {
      const g = gpu();
      const table = uniform(vocab * dim, vocab + dim + 1).map((v) => f16ToF32(f32ToF16(v)));
      const idsHost = ints(tokens, tokens + 1, vocab);
      idsHost[tokens - 1] = vocab - 1;
      const out = embedding(g.tensor([vocab, dim], "f16", table), uploadTokenIds(g, idsHost, vocab));
      expect(Array.from(await out.read())).toEqual(Array.from(embeddingRef(table, dim, idsHost)));
    },
  );

  it("gathers from a row-sharded f16 table; the scatter refuses an f16 table", async () => {
    const g = smallBindings();
    const [vocab, dim, tokens] = [700, 129, 40];
    const table = uniform(vocab * dim, 71).map((v) => f16ToF32(f32ToF16(v)));
    const sharded = ShardedMatrix.upload(g, vocab, dim, table, "f16");
    expect(sharded.shards.length).toBeGreaterThan(2);
    const idsHost = ints(tokens, 72, vocab);
    sharded.shards.forEach((s, i) => {
      idsHost[2 * i] = s.rowStart;
      idsHost[2 * i + 1] = s.rowStart + s.rows - 1;
    });
    const out = embedding(sharded, uploadTokenIds(g, idsHost, vocab));
    expect(Array.from(await out.read())).toEqual(Array.from(embeddingRef(table, dim, idsHost)));
    expect(() => embeddingBackward(g.zeros([tokens, dim]), idsHost, sharded)).toThrow(/table must be f32, got f16/);
  });

  it.each([
    [1, 1, 4],
    [7, 3, 8],
    [129, 129, 132],
    [40, 1000, 896],
  ])("gathers from an int8 table like its widening (tokens=%i vocab=%i dim=%i)", async (tokens, vocab, dim) => {
    const g = gpu();
    const table = uniform(vocab * dim, tokens + dim);
    const { packed, scales } = quantizeInt8Rows(table, vocab, dim);
    const widened = refDequantInt8(packed, scales, vocab, dim);
    const idsHost = ints(tokens, vocab + 1, vocab);
    idsHost[0] = vocab - 1;
    const want = Array.from(embeddingRef(widened, dim, idsHost));
    const ids = uploadTokenIds(g, idsHost, vocab);
    expect(Array.from(await embedding(uploadInt8(g, table, vocab, dim), ids).read())).toEqual(want);
    // The same table in row shards of 64 rows (a real vocabulary exceeds one binding).
    const sharded = uploadInt8Sharded(g, table, vocab, dim, 64 * dim);
    expect(sharded.shards.length).toBe(Math.ceil(vocab / 64));
    expect(Array.from(await embedding(sharded, ids).read())).toEqual(want);
  });

  it("sums many repeats of one id and is bitwise deterministic", async () => {
    const g = gpu();
    const [tokens, vocab, dim] = [300, 4, 12];
    const idsHost = Uint32Array.from({ length: tokens }, (_, t) => (t % 5 === 0 ? 3 : t % 2));
    const dyd = uniform(tokens * dim, 5);
    const dy = g.tensor([tokens, dim], "f32", dyd);
    const first = g.zeros([vocab, dim]);
    const second = g.zeros([vocab, dim]);
    embeddingBackward(dy, idsHost, first);
    embeddingBackward(dy, idsHost, second);
    const a = await first.read();
    expect(Array.from(await second.read())).toEqual(Array.from(a));
    expectClose(
      a,
      embeddingBackwardRef(dyd, dim, idsHost, new Float32Array(vocab * dim)),
      { atol: 1e-4, rtol: 0 },
      "dTable",
    );
    // Row 2 is never used: untouched.
    expect(Array.from(a.subarray(2 * dim, 3 * dim)).every((v) => v === 0)).toBe(true);
  });

  it("groups token positions by id in ascending order", () => {
    const plan = scatterPlan([5, 2, 5, 0, 2, 5]);
    expect(Array.from(plan.uniqueIds)).toEqual([0, 2, 5]);
    expect(Array.from(plan.starts)).toEqual([0, 1, 3, 6]);
    expect(Array.from(plan.order)).toEqual([3, 1, 4, 0, 2, 5]);
  });

  it.each([
    [300, 129, 100],
    [700, 128, 120],
  ])("works on a row-sharded table (vocab=%i dim=%i tokens=%i, 64 KiB bindings)", async (vocab, dim, tokens) => {
    const g = smallBindings();
    const table = uniform(vocab * dim, 61);
    const sharded = ShardedMatrix.upload(g, vocab, dim, table);
    expect(sharded.shards.length).toBeGreaterThan(2);
    const idsHost = ints(tokens, 62, vocab);
    // Hit the first and last row of every shard.
    sharded.shards.forEach((s, i) => {
      idsHost[2 * i] = s.rowStart;
      idsHost[2 * i + 1] = s.rowStart + s.rows - 1;
    });
    const out = embedding(sharded, uploadTokenIds(g, idsHost, vocab));
    expect(Array.from(await out.read())).toEqual(Array.from(embeddingRef(table, dim, idsHost), Math.fround));

    const dyd = uniform(tokens * dim, 63);
    const dTable = ShardedMatrix.upload(g, vocab, dim, new Float32Array(vocab * dim));
    embeddingBackward(g.tensor([tokens, dim], "f32", dyd), idsHost, dTable);
    const ref = embeddingBackwardRef(dyd, dim, idsHost, new Float32Array(vocab * dim));
    expectClose(await dTable.read(), ref, SCATTER_TOL, "sharded dTable");
  });

  it("passes a finite-difference gradient check", async () => {
    const g = gpu();
    const [tokens, vocab, dim] = [6, 5, 3];
    const idsHost = [1, 4, 1, 0, 1, 4];
    const ids = uploadTokenIds(g, idsHost, vocab);
    const table = uniform(vocab * dim, 71);
    const r = uniform(tokens * dim, 72);
    const loss = async (tv: Float32Array) => {
      const t = g.tensor([vocab, dim], "f32", tv);
      const y = await embedding(t, ids).read();
      t.dispose();
      let l = 0;
      for (let i = 0; i < y.length; i++) l += y[i] * r[i];
      return l;
    };
    const grad = g.zeros([vocab, dim]);
    embeddingBackward(g.tensor([tokens, dim], "f32", r), idsHost, grad);
    await gradCheck(table, await grad.read(), loss, { samples: 15 }, "dTable");
  });

  it("validates ids where they are known and clamps them on the GPU", async () => {
    const g = gpu();
    expect(() => uploadTokenIds(g, [0, 5, 2], 5)).toThrow(
      /token id 5 at position 1 is outside the vocabulary \[0, 5\)/,
    );
    expect(() => uploadTokenIds(g, [0, -1], 5)).toThrow(/token id -1/);
    expect(() => uploadTokenIds(g, [0.5], 5)).toThrow(/token id 0.5/);
    const table = uniform(5 * 4, 81);
    // Raw ids straight to the GPU: 9 is clamped to the last row.
    const out = embedding(g.tensor([5, 4], "f32", table), g.tensor([2], "u32", [9, 0]));
    expect(Array.from(await out.read())).toEqual(Array.from(embeddingRef(table, 4, [4, 0]), Math.fround));
    const dy = g.tensor([2, 4]);
    expect(() => embeddingBackward(dy, [9, 0], g.zeros([5, 4]))).toThrow(/token id 9 at position 0/);
  });

  it("rejects bad shapes and dtypes with clear messages", () => {
    const g = gpu();
    const table = g.tensor([10, 4]);
    const ids = g.tensor([3], "u32");
    expect(() => embedding(table, g.tensor([3]))).toThrow(/ids must be u32, got f32/);
    expect(() => embedding(g.tensor([40]), ids)).toThrow(/table must be 2-D/);
    expect(() => embedding(table, g.tensor([3, 1], "u32"))).toThrow(/ids must be 1-D/);
    expect(() => embedding(table, ids, { out: g.tensor([3, 5]) })).toThrow(/out has shape \[3, 5\], expected \[3, 4\]/);
    expect(() => embeddingBackward(g.tensor([2, 4]), [1, 2, 3], table)).toThrow(
      /dy has shape \[2, 4\], expected \[3, 4\]/,
    );
  });
});
