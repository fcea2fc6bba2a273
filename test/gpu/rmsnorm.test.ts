// RMSNorm forward and backward on the real device vs an f64 reference, through both row-sum
// builds (subgroups and the workgroup-memory tree), plus finite-difference gradient checks.
import { describe, expect, it } from "vitest";
import type { Gpu } from "../../src/gpu/index.ts";
import { rmsnorm, rmsnormBackward, rmsnormBackwardInput } from "../../src/gpu/kernels/rmsnorm.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { gradCheck } from "../helpers/gradcheck.ts";
import { normal, uniform } from "../helpers/random.ts";
import { rmsnormBackwardRef, rmsnormRef } from "../reference/rmsnorm.ts";

const withFeatures = useGpu();
const withoutSubgroups = useGpu({ disableFeatures: ["subgroups"] });

const EPS = 1e-6;
// Values are O(1). Each row sum is accumulated in f32 in ≥ 32 independent partial sums (one per
// invocation, 4 lanes each for vec4 rows) of at most ~610 terms (4864 over 8 invocations), then
// reduced by subgroup or pairwise: relative error ~ sqrt(terms)·2^-24 ≲ 2e-6 in practice.
// 1e-5 keeps a margin while an indexing or reduction bug is off by O(0.1).
const FWD = { atol: 1e-5, rtol: 1e-5 };
// dweight also sums over rows (≤ 130 here), so it gets a looser absolute bound.
const DW = { atol: 5e-5, rtol: 1e-4 };
const SHAPES: [number, number][] = [
  [1, 1],
  [3, 7],
  [130, 129],
  [5, 896],
  [2, 4864],
  [67, 64],
];

function check(label: string, device: () => Gpu, variant: { workgroupSize?: number; subgroups?: boolean } = {}) {
  describe(label, () => {
    it.each(SHAPES)("forward and backward match the reference for [%i, %i]", async (rows, dim) => {
      const g = device();
      const xd = normal(rows * dim, rows + dim, 2);
      const wd = uniform(dim, 2, 0.5, 1.5);
      const dyd = uniform(rows * dim, 3);
      const x = g.tensor([rows, dim], "f32", xd);
      const w = g.tensor([dim], "f32", wd);
      const dy = g.tensor([rows, dim], "f32", dyd);
      const { y, rstd } = rmsnorm(x, w, EPS, variant);
      const ref = rmsnormRef(xd, wd, rows, dim, EPS);
      expectClose(await y.read(), ref.y, FWD, `y [${rows}, ${dim}]`);
      expectClose(await rstd.read(), ref.rstd, FWD, `rstd [${rows}, ${dim}]`);
      const { dx, dweight } = rmsnormBackward(dy, x, w, rstd, variant);
      const bref = rmsnormBackwardRef(dyd, xd, wd, rows, dim, EPS);
      expectClose(await dx.read(), bref.dx, FWD, `dx [${rows}, ${dim}]`);
      expectClose(await dweight.read(), bref.dweight, DW, `dweight [${rows}, ${dim}]`);
      for (const t of [x, w, dy, y, rstd, dx, dweight]) t.dispose();
    });
  });
}

check("rmsnorm with subgroups where the adapter has them", withFeatures);
check("rmsnorm with the workgroup-memory tree", withoutSubgroups);
check("rmsnorm with 256-invocation workgroups", withFeatures, { workgroupSize: 256 });
check("rmsnorm with 8-invocation workgroups, no subgroups", withFeatures, { workgroupSize: 8, subgroups: false });

describe("rmsnorm details", () => {
  it("uses the subgroup build only when the device has the feature", () => {
    expect(withoutSubgroups().features.subgroups).toBe(false);
  });

  it("accumulates dweight into an existing gradient and writes into given outputs", async () => {
    const g = withFeatures();
    for (const rows of [5, 200]) {
      const dim = 12;
      const xd = uniform(rows * dim, 7);
      const wd = uniform(dim, 8);
      const dyd = uniform(rows * dim, 9);
      const prior = uniform(dim, 10);
      const x = g.tensor([rows, dim], "f32", xd);
      const w = g.tensor([dim], "f32", wd);
      const dy = g.tensor([rows, dim], "f32", dyd);
      const out = g.tensor([rows, dim]);
      const rstdOut = g.tensor([rows]);
      const { y, rstd } = rmsnorm(x, w, EPS, { out, rstd: rstdOut });
      expect(y).toBe(out);
      expect(rstd).toBe(rstdOut);
      const dweight = g.tensor([dim], "f32", prior);
      rmsnormBackward(dy, x, w, rstd, { dweight, accumulate: true });
      const ref = rmsnormBackwardRef(dyd, xd, wd, rows, dim, EPS).dweight.map((v, j) => v + prior[j]);
      expectClose(await dweight.read(), ref, DW, `accumulated dweight rows=${rows}`);
      rmsnormBackward(dy, x, w, rstd, { dweight });
      const fresh = rmsnormBackwardRef(dyd, xd, wd, rows, dim, EPS).dweight;
      expectClose(await dweight.read(), fresh, DW, `overwritten dweight rows=${rows}`);
    }
  });

  it("handles more rows than one grid dimension allows", async () => {
    const g = withFeatures();
    const rows = g.limits.maxComputeWorkgroupsPerDimension + 5;
    const dim = 4;
    const xd = uniform(rows * dim, 11);
    const wd = uniform(dim, 12);
    const x = g.tensor([rows, dim], "f32", xd);
    const w = g.tensor([dim], "f32", wd);
    const { y } = rmsnorm(x, w, EPS, { workgroupSize: 8 });
    expectClose(await y.read(), rmsnormRef(xd, wd, rows, dim, EPS).y, FWD, "folded rows");
  });

  it("(1 + w) norms (Gemma, weightOffset 1): forward and backward match the reference for 1×7, 7×129, 5×896", async () => {
    const g = withFeatures();
    for (const [rows, dim] of [
      [1, 7],
      [7, 129],
      [5, 896],
    ]) {
      const xd = normal(rows * dim, rows * dim, 2);
      // Gemma stores w near 0 (the norm scales by 1 + w), including negative values.
      const wd = uniform(dim, 5, -0.5, 0.5);
      const dyd = uniform(rows * dim, 6);
      const x = g.tensor([rows, dim], "f32", xd);
      const w = g.tensor([dim], "f32", wd);
      const dy = g.tensor([rows, dim], "f32", dyd);
      const { y, rstd } = rmsnorm(x, w, EPS, { weightOffset: 1 });
      const ref = rmsnormRef(xd, wd, rows, dim, EPS, 1);
      expectClose(await y.read(), ref.y, FWD, `y (1 + w) [${rows}, ${dim}]`);
      // The offset matters: the plain norm of the same weights is far off.
      const plain = rmsnormRef(xd, wd, rows, dim, EPS);
      expect(Math.abs(plain.y[0] - ref.y[0])).toBeGreaterThan(0.1 * Math.abs(xd[0]));
      const { dx, dweight } = rmsnormBackward(dy, x, w, rstd, { weightOffset: 1 });
      const bref = rmsnormBackwardRef(dyd, xd, wd, rows, dim, EPS, 1);
      expectClose(await dx.read(), bref.dx, FWD, `dx (1 + w) [${rows}, ${dim}]`);
      expectClose(await dweight.read(), bref.dweight, DW, `dweight (1 + w) [${rows}, ${dim}]`);
      const dxOnly = rmsnormBackwardInput(dy, x, w, rstd, { weightOffset: 1 });
      expectClose(await dxOnly.read(), bref.dx, FWD, `dx only (1 + w) [${rows}, ${dim}]`);
      for (const t of [x, w, dy, y, rstd, dx, dweight, dxOnly]) t.dispose();
    }
  });

  it("(1 + w) norms pass finite-difference gradient checks for x and weight", async () => {
    const g = withFeatures();
    const [rows, dim] = [3, 7];
    const xd = uniform(rows * dim, 23);
    const wd = uniform(dim, 24, -0.5, 0.5);
    const r = uniform(rows * dim, 25);
    const dy = g.tensor([rows, dim], "f32", r);
    const opts = { weightOffset: 1 };
    const lossAt = async (xv: Float32Array, wv: Float32Array) => {
      const x = g.tensor([rows, dim], "f32", xv);
      const w = g.tensor([dim], "f32", wv);
      const { y, rstd } = rmsnorm(x, w, EPS, opts);
      const yv = await y.read();
      for (const t of [x, w, y, rstd]) t.dispose();
      let loss = 0;
      for (let i = 0; i < yv.length; i++) loss += yv[i] * r[i];
      return loss;
    };
    const x = g.tensor([rows, dim], "f32", xd);
    const w = g.tensor([dim], "f32", wd);
    const { rstd } = rmsnorm(x, w, EPS, opts);
    const { dx, dweight } = rmsnormBackward(dy, x, w, rstd, opts);
    await gradCheck(xd, await dx.read(), (xv) => lossAt(xv, wd), { samples: 12 }, "dx (1 + w)");
    await gradCheck(wd, await dweight.read(), (wv) => lossAt(xd, wv), { samples: 7 }, "dweight (1 + w)");
  });

  it("passes finite-difference gradient checks for x and weight", async () => {
    const g = withFeatures();
    for (const [rows, dim] of [
      [3, 7],
      [2, 12],
    ]) {
      const xd = uniform(rows * dim, 13);
      const wd = uniform(dim, 14, 0.5, 1.5);
      const r = uniform(rows * dim, 15);
      const dy = g.tensor([rows, dim], "f32", r);
      const lossAt = async (xv: Float32Array, wv: Float32Array) => {
        const x = g.tensor([rows, dim], "f32", xv);
        const w = g.tensor([dim], "f32", wv);
        const { y, rstd } = rmsnorm(x, w, EPS);
        const yv = await y.read();
        for (const t of [x, w, y, rstd]) t.dispose();
        let loss = 0;
        for (let i = 0; i < yv.length; i++) loss += yv[i] * r[i];
        return loss;
      };
      const x = g.tensor([rows, dim], "f32", xd);
      const w = g.tensor([dim], "f32", wd);
      const { rstd } = rmsnorm(x, w, EPS);
      const { dx, dweight } = rmsnormBackward(dy, x, w, rstd);
      await gradCheck(xd, await dx.read(), (xv) => lossAt(xv, wd), { samples: 12 }, `dx [${rows}, ${dim}]`);
      await gradCheck(wd, await dweight.read(), (wv) => lossAt(xd, wv), { samples: 12 }, `dweight [${rows}, ${dim}]`);
    }
  });

  it("rejects bad shapes, dtypes and options with clear messages", () => {
    const g = withFeatures();
    const x = g.tensor([4, 8]);
    const w = g.tensor([8]);
    expect(() => rmsnorm(x, g.tensor([7]), EPS)).toThrow(/weight has shape \[7\], expected \[8\]/);
    expect(() => rmsnorm(g.tensor([32]), w, EPS)).toThrow(/x must be 2-D/);
    expect(() => rmsnorm(g.tensor([4, 8], "u32"), w, EPS)).toThrow(/x must be f32, got u32/);
    expect(() => rmsnorm(x, w, -1)).toThrow(/eps must be/);
    expect(() => rmsnorm(x, w, EPS, { workgroupSize: 48 })).toThrow(/power of two/);
    const { rstd } = rmsnorm(x, w, EPS);
    expect(() => rmsnormBackward(g.tensor([4, 7]), x, w, rstd)).toThrow(/dy has shape/);
    expect(() => rmsnormBackward(x, x, w, g.tensor([3]))).toThrow(/rstd has shape \[3\], expected \[4\]/);
    expect(() => rmsnormBackward(x, x, w, rstd, { accumulate: true })).toThrow(/accumulate needs an existing dweight/);
    expect(() => rmsnorm(x, w, EPS, { out: x })).toThrow(/must not share a buffer/);
  });
});

describe("rmsnormBackwardInput", () => {
  it("gives the same dx as the full backward, for rows × dims 1×7, 7×129, 33×896", async () => {
    const g = withFeatures();
    for (const [rows, dim] of [
      [1, 7],
      [7, 129],
      [33, 896],
    ]) {
      const x = g.tensor([rows, dim], "f32", normal(rows * dim, rows + dim));
      const w = g.tensor([dim], "f32", uniform(dim, dim, 0.5, 1.5));
      const dy = g.tensor([rows, dim], "f32", normal(rows * dim, 3 * dim));
      const { rstd } = rmsnorm(x, w, EPS);
      const full = rmsnormBackward(dy, x, w, rstd);
      const only = rmsnormBackwardInput(dy, x, w, rstd);
      // Same kernel, same inputs: bit-identical.
      expect(Array.from(await only.read())).toEqual(Array.from(await full.dx.read()));
    }
  });
});
