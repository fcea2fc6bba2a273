// gemv_sg.wgsl (small-M decode GEMV with x rows shared by subgroup shuffle) on the real device
// against the plain-loop reference (test/reference/gemv.ts): M = 1..8 rows, awkward N (1, 7, 129,
// and past one workgroup's 64·RN rows; K = 4, 12, 28, 68, 132), f32 and f16 weights, bias/accumulate/alpha, every RN;
// 9..32 rows run as launches of 8; shapes GEMV cannot take (K not a multiple of 4, M > 32) fall
// back to GEMM and stay correct;
// the adapter default picks it (and FULGUR_GEMV_SG=0 does not); a cached tuning that predates it
// is re-measured.
//
// Tolerance as in matmul.test.ts: |x|, |w| ≤ 1, so a length-K f32 dot product is within K²·2^-24.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adapterKind, cachePath, clearMemoryCache, pendingClasses, tunePending } from "../../src/gpu/autotune.ts";
import { f16ToF32, f32ToF16 } from "../../src/gpu/index.ts";
import { GEMV_VARIANTS, matmul, matmulVariants } from "../../src/gpu/kernels/matmul.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { uniform } from "../helpers/random.ts";
import { gemvRef } from "../reference/gemv.ts";

const cacheDir = mkdtempSync(join(tmpdir(), "fulgur-gemv-sg-"));
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
const SG = GEMV_VARIANTS.filter((v) => v.rn);
const tol = (k: number, alpha = 1) => ({ atol: Math.abs(alpha) * k * k * 2 ** -24 + 1e-6, rtol: 0 });
const roundF16 = (x: Float32Array) => x.map((v) => f16ToF32(f32ToF16(v)));

interface Case {
  m: number;
  n: number;
  k: number;
  variant?: string;
  dtype?: "f32" | "f16";
  alpha?: number;
  bias?: boolean;
  accumulate?: boolean;
}

async function check(c: Case, label: string): Promise<void> {
  const g = gpu();
  const seed = c.m * 1009 + c.n * 31 + c.k;
  const xData = uniform(c.m * c.k, seed);
  let wData = uniform(c.n * c.k, seed + 1);
  if (c.dtype === "f16") wData = roundF16(wData);
  const biasData = c.bias ? uniform(c.n, seed + 2) : undefined;
  const y0 = c.accumulate ? uniform(c.m * c.n, seed + 3) : undefined;
  const x = g.tensor([c.m, c.k], "f32", xData);
  const w = g.tensor([c.n, c.k], c.dtype ?? "f32", wData);
  const bias = biasData ? g.tensor([c.n], "f32", biasData) : undefined;
  const out = y0 ? g.tensor([c.m, c.n], "f32", y0) : undefined;
  const opts = { transB: true, variant: c.variant, alpha: c.alpha, bias, out, accumulate: c.accumulate };
  const y = matmul(x, w, opts);
  expectClose(
    await y.read(),
    gemvRef(xData, wData, c.m, c.n, c.k, { alpha: c.alpha, bias: biasData, y0 }),
    tol(c.k, c.alpha),
    label,
  );
  for (const t of [x, w, bias, y]) t?.dispose();
}

describe("gemv_sg vs reference", () => {
  // Each (M, RN, dtype) is its own pipeline, and a cold LLVM compile on a loaded lavapipe takes
  // seconds: hence M = 1, 2, 7, 8 (not all of 1..8) and the generous timeouts.
  it("every RN variant, M = 1, 2, 7, 8, awkward N, f32 weights, with bias/accumulate/alpha", {
    timeout: 600_000,
  }, async () => {
    if (!gpu().features.subgroups) return; // the shader needs subgroups; gemv.wgsl serves the rest
    for (const v of SG) {
      for (const m of [1, 2, 7, 8]) {
        for (const [n, k] of [
          [1, 4],
          [7, 28],
          [129, 132],
          [64 * (v.rn ?? 1) + 3, 12],
        ]) {
          await check({ m, n, k, variant: v.name }, `${v.name} ${m}x${n}x${k}`);
        }
        await check(
          { m, n: 130, k: 68, variant: v.name, alpha: -0.75, bias: true, accumulate: true },
          `${v.name} M=${m} bias+acc+alpha`,
        );
      }
    }
  });

  it("f16 weights (read as u32 pairs) on the same shapes", { timeout: 600_000 }, async () => {
    const g = gpu();
    if (!g.features.subgroups || !g.features.shaderF16) return;
    for (const v of SG) {
      for (const m of [1, 8]) {
        for (const [n, k] of [
          [1, 4],
          [7, 28],
          [129, 132],
        ]) {
          await check({ m, n, k, variant: v.name, dtype: "f16" }, `${v.name} f16 ${m}x${n}x${k}`);
        }
        await check(
          { m, n: 70, k: 36, variant: v.name, dtype: "f16", bias: true, accumulate: true, alpha: 2 },
          `${v.name} f16 all`,
        );
      }
    }
  });

  it("runs 9..32 rows as launches of 8 (forced and, on a software adapter, by default)", {
    timeout: 600_000,
  }, async () => {
    const g = gpu();
    if (!g.features.subgroups) return;
    for (const m of [9, 16, 17, 32]) {
      for (const variant of ["gemv-sg-r2", "gemv-sg-r8"]) {
        await check({ m, n: 129, k: 68, variant }, `chunked ${variant} ${m}x129x68`);
      }
      await check(
        { m, n: 70, k: 36, variant: "gemv-sg-r4", dtype: "f16", bias: true, accumulate: true, alpha: -0.5 },
        `chunked f16 all ${m}`,
      );
      const x = g.tensor([m, 64]);
      const w = g.tensor([96, 64]);
      const [chosen] = matmulVariants(x, w, { transB: true });
      if (adapterKind(g) === "software") expect(chosen).toBe("gemv-sg-r8");
      x.dispose();
      w.dispose();
    }
  });

  it("K not a multiple of 4 (1, 7, 129) and M > 32 leave GEMV for GEMM, still correct", async () => {
    const g = gpu();
    for (const [m, n, k] of [
      [1, 7, 1],
      [7, 129, 7],
      [8, 1, 129],
      [33, 129, 132],
    ]) {
      const x = g.tensor([m, k]);
      const w = g.tensor([n, k]);
      expect(matmulVariants(x, w, { transB: true })[0]).not.toMatch(/^gemv/);
      if (g.features.subgroups) {
        expect(() => matmul(x, w, { transB: true, variant: "gemv-sg-r4" })).toThrow(/M ≤ 8 \(gemv-sg: ≤ 32\)/);
      }
      x.dispose();
      w.dispose();
      await check({ m, n, k }, `fallback ${m}x${n}x${k}`);
    }
  });
});

describe("gemv_sg selection", () => {
  it("is the default for decode rows on a software adapter with subgroups", () => {
    const g = gpu();
    clearMemoryCache(g);
    const x = g.tensor([8, 64]);
    const w = g.tensor([96, 64]);
    const [variant] = matmulVariants(x, w, { transB: true });
    if (adapterKind(g) === "software" && g.features.subgroups) expect(variant).toMatch(/^gemv-sg-/);
    else expect(variant).toMatch(/^gemv-/);
    // FULGUR_GEMV_SG=0 (benchmarks' A/B switch) takes gemv_sg out of the choice, read per call.
    process.env.FULGUR_GEMV_SG = "0";
    try {
      expect(matmulVariants(x, w, { transB: true })[0]).toMatch(/^gemv-l/);
    } finally {
      delete process.env.FULGUR_GEMV_SG;
    }
    x.dispose();
    w.dispose();
  });

  it("re-measures a cached GEMV choice made before today's variants existed", { timeout: 600_000 }, async () => {
    const g = gpu();
    if (!g.features.subgroups) return;
    process.env.FULGUR_AUTOTUNE = "1";
    try {
      clearMemoryCache(g);
      const x = g.tensor([8, 64], "f32", uniform(8 * 64, 3));
      const w = g.tensor([96, 64], "f32", uniform(96 * 64, 4));
      matmul(x, w, { transB: true });
      const tuned = await tunePending(g);
      const key = Object.keys(tuned).find((c) => c.startsWith("gemv|"));
      expect(key).toBeDefined();
      expect(Object.keys(tuned[key!].ms)).toEqual(expect.arrayContaining(SG.map((v) => v.name)));
      // Rewrite the disk cache as an older build would have left it: gemv-l4 chosen, sg unmeasured.
      const file = JSON.parse(readFileSync(cachePath(g), "utf8"));
      file.choices[key!] = {
        variant: "gemv-l4",
        ms: { "gemv-l1": 2, "gemv-l4": 1, "gemv-l16": 3, "gemv-l64": 4 },
        at: "",
      };
      writeFileSync(cachePath(g), JSON.stringify(file));
      clearMemoryCache(g);
      const [stale] = matmulVariants(x, w, { transB: true });
      expect(stale).not.toBe("gemv-l4");
      expect(pendingClasses(g)).toContain(key);
      // …while a full measurement is trusted.
      await tunePending(g);
      clearMemoryCache(g);
      matmul(x, w, { transB: true });
      expect(pendingClasses(g)).toEqual([]);
      x.dispose();
      w.dispose();
    } finally {
      process.env.FULGUR_AUTOTUNE = "0";
    }
  });
});
