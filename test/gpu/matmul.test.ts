// The matmul family on the real device (lavapipe in CI) against the f64 plain-loop reference:
// transposes, awkward shapes, bias/accumulate/alpha, batch with broadcast, every variant forced,
// GEMV for decode rows, f16 weights, sharded weights, errors, and variant autotuning.
// Shaders covered: matmul.wgsl (reg/wg variants), matmul_sg.wgsl (subgroup-shuffle sg-* variants), gemv.wgsl,
// gemv_sg.wgsl (more cases in gemv-sg.test.ts).
//
// Tolerance: with |a|, |b| ≤ 1 a length-K f32 dot product has rounding error at most
// ~K·u·Σ|a_k·b_k| ≤ K²·u (u = 2^-24), so results are compared with atol = K²·2^-24 (+1e-6 for
// K tiny), times |alpha| where it scales the product. f16 weights are compared against the
// reference run on the same f16-rounded weights, so the same f32 tolerance applies.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cachedVariant, cachePath, clearMemoryCache, pendingClasses, tunePending } from "../../src/gpu/autotune.ts";
import { acquireGpu, f16ToF32, f32ToF16, type Gpu, ShardedMatrix, type Tensor } from "../../src/gpu/index.ts";
import {
  GEMM_VARIANTS,
  GEMV_VARIANTS,
  linear,
  type MatmulOptions,
  matmul,
  matmulVariants,
  tuneMatmul,
} from "../../src/gpu/kernels/matmul.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { uniform } from "../helpers/random.ts";
import { matmulRef } from "../reference/matmul.ts";

const cacheDir = mkdtempSync(join(tmpdir(), "fulgur-autotune-"));
const savedEnv = { dir: process.env.FULGUR_CACHE_DIR, tune: process.env.FULGUR_AUTOTUNE };
beforeAll(() => {
  process.env.FULGUR_CACHE_DIR = cacheDir;
  process.env.FULGUR_AUTOTUNE = "0";
});
afterAll(() => {
  process.env.FULGUR_CACHE_DIR = savedEnv.dir;
  process.env.FULGUR_AUTOTUNE = savedEnv.tune;
  rmSync(cacheDir, { recursive: true, force: true });
});

const gpu = useGpu();

const tol = (k: number, alpha = 1) => ({ atol: Math.abs(alpha) * k * k * 2 ** -24 + 1e-6, rtol: 0 });

const roundF16 = (x: Float32Array) => x.map((v) => f16ToF32(f32ToF16(v)));

interface Case {
  m: number;
  n: number;
  k: number;
  opts?: MatmulOptions;
  /** Leading batch of A / B storage (absent: rank 2, broadcast). */
  batchA?: number;
  batchB?: number;
  bDtype?: "f32" | "f16";
  withBias?: boolean;
  withC?: boolean;
  seed?: number;
}

/** Runs one matmul on random data and compares with the reference; returns the variants used. */
async function check(g: Gpu, c: Case, label: string): Promise<void> {
  const { m, n, k } = c;
  const o = c.opts ?? {};
  const seed = c.seed ?? m * 131 + n * 17 + k;
  const batch = o.batch ?? Math.max(c.batchA ?? 1, c.batchB ?? 1);
  const aData = uniform((c.batchA ?? 1) * m * k, seed);
  let bData = uniform((c.batchB ?? 1) * n * k, seed + 1);
  if (c.bDtype === "f16") bData = roundF16(bData);
  const aShape = o.transA ? [k, m] : [m, k];
  const bShape = o.transB ? [n, k] : [k, n];
  const a = g.tensor(c.batchA ? [c.batchA, ...aShape] : aShape, "f32", aData);
  const b = g.tensor(c.batchB ? [c.batchB, ...bShape] : bShape, c.bDtype ?? "f32", bData);
  const biasData = c.withBias ? uniform(n, seed + 2) : undefined;
  const cData = c.withC ? uniform(batch * m * n, seed + 3) : undefined;
  const bias = biasData ? g.tensor([n], "f32", biasData) : undefined;
  const out = cData ? g.tensor([batch, m, n], "f32", cData) : undefined;
  const y = matmul(a, b, { ...o, bias, out, accumulate: c.withC });
  const expected = matmulRef(aData, bData, m, n, k, {
    transA: o.transA,
    transB: o.transB,
    alpha: o.alpha,
    bias: biasData,
    c: cData,
    batch,
    batchedA: (c.batchA ?? 1) > 1,
    batchedB: (c.batchB ?? 1) > 1,
  });
  expectClose(await y.read(), expected, tol(k, o.alpha ?? 1), label);
  for (const t of [a, b, bias, y]) t?.dispose();
}

const TRANSPOSES = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
] as const;

describe("matmul vs reference", () => {
  it("every transpose combination on awkward shapes (1, 7, 129, non-multiples of tiles)", async () => {
    const g = gpu();
    const shapes = [
      [1, 1, 1],
      [7, 5, 3],
      [1, 129, 7],
      [129, 7, 33],
      [33, 129, 129],
      [20, 36, 44],
      [65, 1, 8],
    ];
    for (const [m, n, k] of shapes) {
      for (const [transA, transB] of TRANSPOSES) {
        await check(g, { m, n, k, opts: { transA, transB } }, `${m}x${n}x${k} tA=${transA} tB=${transB}`);
      }
    }
  });

  it("bias, accumulate and alpha, together and apart", async () => {
    const g = gpu();
    for (const [transA, transB] of TRANSPOSES) {
      await check(g, { m: 9, n: 12, k: 16, opts: { transA, transB }, withBias: true }, `bias ${transA}${transB}`);
      await check(
        g,
        { m: 9, n: 13, k: 7, opts: { transA, transB, alpha: -0.5 }, withC: true },
        `acc ${transA}${transB}`,
      );
      await check(
        g,
        { m: 17, n: 24, k: 20, opts: { transA, transB, alpha: 2.5 }, withBias: true, withC: true },
        `all ${transA}${transB}`,
      );
    }
  });

  it("batches with per-operand strides and broadcast (batch stride 0)", async () => {
    const g = gpu();
    for (const [transA, transB] of TRANSPOSES) {
      const t = { transA, transB };
      await check(g, { m: 5, n: 12, k: 8, opts: t, batchA: 3, batchB: 3 }, `both batched ${transA}${transB}`);
      await check(g, { m: 7, n: 9, k: 5, opts: t, batchA: 4 }, `B broadcast ${transA}${transB}`);
      await check(g, { m: 8, n: 16, k: 12, opts: t, batchB: 2, withBias: true }, `A broadcast ${transA}${transB}`);
      await check(g, { m: 4, n: 4, k: 4, opts: { ...t, batch: 3 }, withC: true }, `both broadcast ${transA}${transB}`);
    }
  });

  it("runs every GEMM variant, forced, on aligned and unaligned shapes", async () => {
    const g = gpu();
    for (const v of GEMM_VARIANTS) {
      if (v.subgroups && !g.features.subgroups) continue;
      for (const [transA, transB] of TRANSPOSES) {
        const opts = { transA, transB, variant: v.name };
        await check(g, { m: 36, n: 40, k: 20, opts, withBias: true }, `${v.name} aligned ${transA}${transB}`);
        await check(g, { m: 8, n: 12, k: 8, opts: { ...opts, batch: 2 }, batchA: 2, withC: true }, `${v.name} batch`);
        if (v.load === "scalar") {
          await check(g, { m: 13, n: 7, k: 5, opts }, `${v.name} unaligned ${transA}${transB}`);
        }
      }
    }
  });

  it("uses GEMV for decode rows (M = 1..8) and matches the reference, every GEMV variant", async () => {
    const g = gpu();
    for (let m = 1; m <= 8; m++) {
      const x = g.tensor([m, 68]);
      const w = g.tensor([129, 68]);
      expect(matmulVariants(x, w, { transB: true })[0]).toMatch(/^gemv-/);
      x.dispose();
      w.dispose();
      await check(g, { m, n: 129, k: 68, opts: { transB: true } }, `gemv default M=${m}`);
    }
    for (const v of GEMV_VARIANTS) {
      if (v.rn && !g.features.subgroups) continue;
      for (const m of [1, 3, 8]) {
        const opts = { transB: true, variant: v.name, alpha: 0.75 };
        await check(g, { m, n: 131, k: 260, opts, withBias: true, withC: true }, `${v.name} M=${m}`);
        await check(g, { m, n: 1, k: 4, opts }, `${v.name} M=${m} tiny`);
      }
    }
  });

  it("takes f16 weights (B) with f32 accumulation in GEMM and GEMV", async () => {
    const g = gpu();
    if (!g.features.shaderF16) return; // adapters without shader-f16 keep only the f32 path
    // matmul_sg reads f16 B as u32 pairs (its own path): both of its tile shapes.
    const sg = g.features.subgroups ? ["sg-16x4-vec4", "sg-8x8-vec4"] : [];
    for (const [transA, transB] of TRANSPOSES) {
      for (const variant of ["reg-8x4-vec4", "reg-4x4-scalar", "wg-8x4", ...sg]) {
        const opts = { transA, transB, variant };
        await check(
          g,
          { m: 20, n: 24, k: 36, opts, bDtype: "f16", withBias: true },
          `f16 ${variant} ${transA}${transB}`,
        );
      }
      await check(g, { m: 7, n: 9, k: 5, opts: { transA, transB }, bDtype: "f16" }, `f16 unaligned ${transA}${transB}`);
    }
    for (const m of [1, 5]) {
      await check(g, { m, n: 70, k: 132, opts: { transB: true }, bDtype: "f16" }, `f16 gemv M=${m}`);
    }
  });

  it("linear(): x[..., in] · Wᵀ + bias with HF-style W [out, in]", async () => {
    const g = gpu();
    const xData = uniform(2 * 3 * 20, 1);
    const wData = uniform(11 * 20, 2);
    const bData = uniform(11, 3);
    const x = g.tensor([2, 3, 20], "f32", xData);
    const w = g.tensor([11, 20], "f32", wData);
    const bias = g.tensor([11], "f32", bData);
    const y = linear(x, w, bias);
    expect(y.shape).toEqual([2, 3, 11]);
    expectClose(await y.read(), matmulRef(xData, wData, 6, 11, 20, { transB: true, bias: bData }), tol(20), "linear");
    expect(() => linear(x, g.tensor([11, 21]))).toThrow(/W must be \[out, 20\]/);
  });
});

describe("sharded weights", () => {
  let small: Gpu;
  beforeAll(async () => {
    small = await acquireGpu({ maxBindingSize: 64 * 1024 });
  });
  afterAll(() => small?.destroy());

  async function shardedCheck(m: number, rows: number, cols: number, opts: MatmulOptions, label: string) {
    const transB = opts.transB ?? false;
    const k = transB ? cols : rows;
    const n = transB ? rows : cols;
    const aData = uniform(m * k, rows + m);
    const wData = uniform(rows * cols, cols);
    const biasData = uniform(n, 5);
    const w = ShardedMatrix.upload(small, rows, cols, wData);
    expect(w.shards.length).toBeGreaterThan(1);
    const a = small.tensor(opts.transA ? [k, m] : [m, k], "f32", aData);
    const bias = small.tensor([n], "f32", biasData);
    const y = matmul(a, w, { ...opts, bias });
    const expected = matmulRef(aData, wData, m, n, k, { ...opts, bias: biasData });
    expectClose(await y.read(), expected, tol(k, opts.alpha ?? 1), label);
    for (const t of [a, bias, y, w]) t.dispose();
  }

  it("x·Wᵀ with W row-sharded: each shard writes its column block (GEMM and GEMV paths)", async () => {
    // 64 KiB bindings: a 520×64 f32 weight is 3 shards (256, 256, 8 rows).
    await shardedCheck(29, 520, 64, { transB: true }, "sharded gemm");
    await shardedCheck(2, 520, 64, { transB: true, alpha: 0.5 }, "sharded gemv");
    await shardedCheck(5, 300, 129, { transB: true }, "sharded unaligned K");
  });

  it("x·W with W row-sharded: shards are K blocks accumulated into C", async () => {
    // 520×40 f32 is 2 shards (384, 136 rows): K blocks of 384 and 136.
    await shardedCheck(9, 520, 40, {}, "sharded K blocks");
    await shardedCheck(9, 520, 40, { transA: true, alpha: 2 }, "sharded K blocks transA");
  });
});

describe("errors", () => {
  it("rejects mismatched shapes, bad options and impossible variants with clear messages", () => {
    const g = gpu();
    const a = g.tensor([4, 8]);
    const b = g.tensor([6, 4]);
    expect(() => matmul(a, b)).toThrow(/inner dimensions differ.*K=8 vs 6/);
    expect(() => matmul(a, g.tensor([8, 4]), { accumulate: true })).toThrow(/accumulate needs opts.out/);
    expect(() => matmul(a, g.tensor([8, 4]), { bias: g.tensor([5]) })).toThrow(/bias must be f32 with N=4/);
    expect(() => matmul(a, g.tensor([8, 4]), { out: g.tensor([3, 3]) })).toThrow(/out has 9 elements/);
    expect(() => matmul(a, g.tensor([8, 4]), { variant: "nope" })).toThrow(/unknown variant 'nope'/);
    expect(() => matmul(g.tensor([3, 7]), g.tensor([7, 5]), { variant: "reg-8x4-vec4" })).toThrow(/multiples of 4/);
    expect(() => matmul(g.tensor([20, 8]), g.tensor([4, 8]), { transB: true, variant: "gemv-l4" })).toThrow(/M ≤ 8/);
    expect(() => matmul(g.tensor([2, 3, 4]), g.tensor([3, 4, 4]))).toThrow(
      /A has batch 2, expected 1 \(broadcast\) or 3/,
    );
    expect(() => matmul(g.tensor([2, 2, 2, 2]), b)).toThrow(/rank 2/);
    expect(() => matmul(g.tensor([4, 8], "u32"), g.tensor([8, 4]))).toThrow(/A must be f32/);
  });

  it("falls back without shader-f16 and subgroups: clear errors, plain variants by default", async () => {
    const plain = await acquireGpu({ disableFeatures: ["shaderF16", "subgroups"] });
    try {
      expect(() => matmul(plain.tensor([4, 4]), plain.tensor([4, 4], "f16"))).toThrow(/lacks shader-f16/);
      expect(() => matmul(plain.tensor([8, 8]), plain.tensor([8, 8]), { variant: "sg-8x4-vec4" })).toThrow(
        /needs the subgroups feature/,
      );
      const aData = uniform(16 * 12, 41);
      const bData = uniform(12 * 20, 42);
      const a = plain.tensor([16, 12], "f32", aData);
      const b = plain.tensor([12, 20], "f32", bData);
      expect(matmulVariants(a, b)[0]).not.toMatch(/^sg-/);
      expectClose(await matmul(a, b).read(), matmulRef(aData, bData, 16, 20, 12), tol(12), "no-subgroup default");
    } finally {
      plain.destroy();
    }
  });
});

describe("autotune", () => {
  it("measures candidates, caches the winner in memory and on disk, and reuses it", async () => {
    const g = gpu();
    process.env.FULGUR_AUTOTUNE = "1";
    try {
      const a = g.tensor([24, 32], "f32", uniform(24 * 32, 9));
      const w = g.tensor([40, 32], "f32", uniform(40 * 32, 10));
      const [result] = await tuneMatmul(a, w, { transB: true });
      // 24 rows: the GEMM tiles, and gemv_sg in launches of 8 rows where the adapter has subgroups.
      const names = [
        ...GEMM_VARIANTS.filter((v) => !v.subgroups || g.features.subgroups),
        ...GEMV_VARIANTS.filter((v) => v.rn && g.features.subgroups),
      ].map((v) => v.name);
      expect(names).toContain(result.variant);
      expect(Object.keys(result.ms).sort()).toEqual([...names].sort());
      expect(matmulVariants(a, w, { transB: true })).toEqual([result.variant]);
      // the choice is on disk under FULGUR_CACHE_DIR and survives a cold memory cache
      const path = cachePath(g);
      expect(path.startsWith(cacheDir)).toBe(true);
      const file = JSON.parse(readFileSync(path, "utf8"));
      expect(Object.values(file.choices).map((c) => (c as { variant: string }).variant)).toContain(result.variant);
      clearMemoryCache(g);
      expect(matmulVariants(a, w, { transB: true })).toEqual([result.variant]);
      // and the tuned kernel computes the right thing
      await check(g, { m: 24, n: 40, k: 32, opts: { transB: true } }, "tuned");

      // A launcher meeting a new class notes it; tunePending() measures it once.
      const x = g.tensor([3, 32], "f32", uniform(3 * 32, 11));
      matmul(x, w, { transB: true });
      expect(pendingClasses(g).some((c) => c.startsWith("gemv|"))).toBe(true);
      const tuned = await tunePending(g);
      const gemvKey = Object.keys(tuned).find((c) => c.startsWith("gemv|"))!;
      expect(GEMV_VARIANTS.map((v) => v.name)).toContain(tuned[gemvKey].variant);
      expect(pendingClasses(g)).toEqual([]);
      expect(cachedVariant(g, "gemv", gemvKey.slice(5))).toBe(tuned[gemvKey].variant);
      expect(existsSync(path)).toBe(true);
    } finally {
      process.env.FULGUR_AUTOTUNE = "0";
    }
  });

  it("with FULGUR_AUTOTUNE=0 uses the adapter default and notes nothing", () => {
    const g = gpu();
    clearMemoryCache(g);
    const a = g.tensor([64, 64]);
    const b: Tensor = g.tensor([64, 64]);
    const [variant] = matmulVariants(a, b);
    expect(GEMM_VARIANTS.map((v) => v.name)).toContain(variant);
    matmul(a, b);
    expect(pendingClasses(g)).toEqual([]);
  });
});
