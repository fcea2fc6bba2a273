// gemv_q.wgsl (decode GEMV straight from int8/int4 weights) on the real device against the
// plain-loop references: the weights widened by test/reference/quant.ts, then
// test/reference/gemv.ts in f64. M = 1, 2, 7, 8 rows; awkward N (1, 7, 129, and one past a
// workgroup's 64·RN rows); K from one word (int8: 4; int4: one group of 32) to 132/160; bias,
// accumulate and alpha; every variant (rows per invocation, and K split over 64 lanes); the
// widening path ("dequant") gives the same numbers; tuning; bad arguments are refused.
//
// Tolerance: |x| ≤ 1 and |W| ≤ 1 after widening, so a length-K f32 dot product is within K²·2^-24.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { clearMemoryCache, pendingClasses, tunePending } from "../../src/gpu/autotune.ts";
import { GEMV_Q_CANDIDATES, GEMV_Q_VARIANTS, gemvQuantized } from "../../src/gpu/kernels/gemv-quant.ts";
import { INT4_GROUP, type QuantizedMatrix, uploadQuantized } from "../../src/gpu/kernels/quant.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { uniform } from "../helpers/random.ts";
import { gemvRef } from "../reference/gemv.ts";
import { refDequantInt4, refDequantInt8 } from "../reference/quant.ts";

const gpu = useGpu();
const tol = (k: number, alpha = 1) => ({ atol: Math.abs(alpha) * k * k * 2 ** -24 + 1e-6, rtol: 0 });

interface Case {
  kind: QuantizedMatrix["kind"];
  m: number;
  n: number;
  k: number;
  variant?: string;
  alpha?: number;
  bias?: boolean;
  accumulate?: boolean;
}

async function check(c: Case): Promise<void> {
  const g = gpu();
  const label = JSON.stringify(c);
  const seed = c.m * 1009 + c.n * 31 + c.k + (c.kind === "int4" ? 7 : 0);
  const xData = uniform(c.m * c.k, seed);
  const w = uploadQuantized(g, c.kind, uniform(c.n * c.k, seed + 1), c.n, c.k);
  const packed = (await w.q.readInts()) as Uint32Array;
  const scales = await w.scales.read();
  const wide =
    c.kind === "int8"
      ? refDequantInt8(packed, scales, c.n, c.k)
      : refDequantInt4(packed, scales, c.n * c.k, INT4_GROUP);
  const biasData = c.bias ? uniform(c.n, seed + 2) : undefined;
  const y0 = c.accumulate ? uniform(c.m * c.n, seed + 3) : undefined;
  const x = g.tensor([c.m, c.k], "f32", xData);
  const bias = biasData ? g.tensor([c.n], "f32", biasData) : undefined;
  const out = y0 ? g.tensor([c.m, c.n], "f32", y0) : undefined;
  const y = gemvQuantized(x, w, { variant: c.variant, alpha: c.alpha, bias, out, accumulate: c.accumulate });
  const expected = gemvRef(xData, wide, c.m, c.n, c.k, { alpha: c.alpha, bias: biasData, y0 });
  expectClose(await y.read(), expected, tol(c.k, c.alpha), label);
  for (const t of [x, w.q, w.scales, bias, y]) t?.dispose();
}

describe("gemv_q vs reference", () => {
  // Each (kind, M, RN) is its own pipeline, and a cold LLVM compile on a loaded lavapipe takes
  // seconds: hence M = 1, 2, 7, 8 and the generous timeouts.
  for (const kind of ["int8", "int4"] as const) {
    const ks = kind === "int8" ? [4, 12, 132] : [32, 160];
    it(`${kind}: every variant, M = 1, 2, 7, 8, awkward N and K`, { timeout: 600_000 }, async () => {
      if (!gpu().features.subgroups) return; // the shader needs subgroups; the widening path serves the rest
      for (const v of GEMV_Q_VARIANTS) {
        for (const m of [1, 2, 7, 8]) {
          for (const n of [1, 7, 129, 64 * (v.rn ?? 1) + 1]) {
            await check({ kind, m, n, k: ks[(m + n) % ks.length], variant: v.name });
          }
        }
      }
    });

    it(`${kind}: bias, accumulate and alpha; the widening path agrees`, { timeout: 600_000 }, async () => {
      if (!gpu().features.subgroups) return;
      const k = kind === "int8" ? 68 : 96;
      for (const variant of [undefined, "gemv-q-r8", "gemv-q-l64", "dequant"]) {
        await check({ kind, m: 3, n: 129, k, variant, bias: true });
        await check({ kind, m: 8, n: 33, k, variant, accumulate: true, alpha: -0.5 });
        await check({ kind, m: 1, n: 7, k, variant, bias: true, accumulate: true, alpha: 2 });
      }
    });
  }

  it("measures its variants and the widening path per shape class, then uses the winner", {
    timeout: 600_000,
  }, async () => {
    const g = gpu();
    if (!g.features.subgroups) return;
    const saved = { dir: process.env.FULGUR_CACHE_DIR, tune: process.env.FULGUR_AUTOTUNE };
    const dir = mkdtempSync(join(tmpdir(), "fulgur-gemv-q-"));
    process.env.FULGUR_CACHE_DIR = dir;
    process.env.FULGUR_AUTOTUNE = "1";
    try {
      clearMemoryCache(g);
      const w = uploadQuantized(g, "int8", uniform(96 * 64, 5), 96, 64);
      const x = g.tensor([3, 64], "f32", uniform(3 * 64, 6));
      gemvQuantized(x, w);
      const key = pendingClasses(g).find((c) => c.startsWith("gemv-q|"));
      expect(key).toBe("gemv-q|int8:m3:n128:k64");
      const tuned = await tunePending(g);
      expect(Object.keys(tuned[key!].ms).sort()).toEqual([...GEMV_Q_CANDIDATES].sort());
      // The winner is cached (memory and disk): the next call of the class notes nothing.
      clearMemoryCache(g);
      gemvQuantized(x, w);
      expect(pendingClasses(g)).toEqual([]);
      for (const t of [x, w.q, w.scales]) t.dispose();
    } finally {
      process.env.FULGUR_CACHE_DIR = saved.dir;
      process.env.FULGUR_AUTOTUNE = saved.tune;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("writes a column range of a wider output (one row shard of a head), fused and widened", async () => {
    const g = gpu();
    if (!g.features.subgroups) return;
    const [m, n, k, wideN, col] = [3, 70, 20, 200, 65];
    const xData = uniform(m * k, 81);
    const w = uploadQuantized(g, "int8", uniform(n * k, 82), n, k);
    const wideRef = refDequantInt8((await w.q.readInts()) as Uint32Array, await w.scales.read(), n, k);
    const x = g.tensor([m, k], "f32", xData);
    const y0 = uniform(m * wideN, 83);
    const part = gemvRef(xData, wideRef, m, n, k, {});
    for (const variant of ["gemv-q-r4", "gemv-q-l64", "dequant"]) {
      for (const accumulate of [false, true]) {
        const out = g.tensor([m, wideN], "f32", y0);
        gemvQuantized(x, w, { variant, out, outColumn: col, accumulate });
        const got = await out.read();
        const want = Float64Array.from(y0);
        for (let r = 0; r < m; r++)
          for (let j = 0; j < n; j++)
            want[r * wideN + col + j] = part[r * n + j] + (accumulate ? y0[r * wideN + col + j] : 0);
        expectClose(got, want, tol(k), `${variant} accumulate=${accumulate}`);
        out.dispose();
      }
    }
    const narrow = g.zeros([m, col + n - 1]);
    expect(() => gemvQuantized(x, w, { out: narrow, outColumn: col })).toThrow(/out must be f32 \[3, ≥ 135\]/);
    for (const t of [x, narrow, w.q, w.scales]) t.dispose();
  });

  it("refuses bad arguments with a message", () => {
    const g = gpu();
    if (!g.features.subgroups) return;
    const w = uploadQuantized(g, "int8", uniform(8 * 16, 1), 8, 16);
    const x9 = g.zeros([9, 16]);
    const xBad = g.zeros([2, 12]);
    const x = g.zeros([2, 16]);
    expect(() => gemvQuantized(x9, w)).toThrow(/1\.\.8 rows/);
    expect(() => gemvQuantized(xBad, w)).toThrow(/x has shape \[2, 12\], expected \[2, 16\]/);
    expect(() => gemvQuantized(x, w, { variant: "gemv-q-r3" })).toThrow(/unknown variant 'gemv-q-r3'/);
    expect(() => gemvQuantized(x, w, { accumulate: true })).toThrow(/accumulate needs opts.out/);
    for (const t of [x9, xBad, x, w.q, w.scales]) t.dispose();
  });
});
