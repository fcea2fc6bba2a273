// LoRA forward/backward on the device against the f64 reference, plus finite-difference gradient
// checks through the GPU forward for x, A and B.
//
// Tolerance: every output is a sum of f32 dot products of length ≤ K = max(in, out, rows) over
// inputs bounded by 1 (W, A, B are scaled down, so |terms| stay ≤ 1): atol = 4·K²·2^-24 covers
// the two chained products (u, then u·Bᵀ) and the final addition.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gpu, Tensor } from "../../src/gpu/index.ts";
import { loraBackward, loraForward } from "../../src/gpu/kernels/lora.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { gradCheck } from "../helpers/gradcheck.ts";
import { uniform } from "../helpers/random.ts";
import { type LoraShapes, loraBackwardRef, loraForwardRef } from "../reference/lora.ts";

const savedTune = process.env.FULGUR_AUTOTUNE;
beforeAll(() => {
  process.env.FULGUR_AUTOTUNE = "0";
});
afterAll(() => {
  process.env.FULGUR_AUTOTUNE = savedTune;
});

const gpu = useGpu();

const tol = (s: LoraShapes) => {
  const k = Math.max(s.inF, s.outF, s.rows);
  return { atol: 4 * k * k * 2 ** -24 + 1e-6, rtol: 0 };
};

interface Problem {
  s: LoraShapes;
  scale: number;
  x: Float32Array;
  w: Float32Array;
  a: Float32Array;
  b: Float32Array;
}

function problem(s: LoraShapes, seed: number): Problem {
  return {
    s,
    scale: 16 / s.rank / 8,
    x: uniform(s.rows * s.inF, seed),
    w: uniform(s.outF * s.inF, seed + 1, -0.5, 0.5),
    a: uniform(s.rank * s.inF, seed + 2, -0.5, 0.5),
    b: uniform(s.outF * s.rank, seed + 3, -0.5, 0.5),
  };
}

function upload(g: Gpu, p: Problem): { x: Tensor; w: Tensor; a: Tensor; b: Tensor } {
  const { s } = p;
  return {
    x: g.tensor([s.rows, s.inF], "f32", p.x),
    w: g.tensor([s.outF, s.inF], "f32", p.w),
    a: g.tensor([s.rank, s.inF], "f32", p.a),
    b: g.tensor([s.outF, s.rank], "f32", p.b),
  };
}

const SHAPES: LoraShapes[] = [
  { rows: 7, inF: 36, outF: 20, rank: 4 },
  { rows: 3, inF: 64, outF: 48, rank: 16 }, // decode: the GEMV path
  { rows: 33, inF: 129, outF: 65, rank: 16 }, // unaligned: scalar loads
  { rows: 1, inF: 8, outF: 1, rank: 1 },
];

describe("loraForward", () => {
  it("matches y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ and returns u = x·Aᵀ", async () => {
    const g = gpu();
    for (const [i, s] of SHAPES.entries()) {
      const p = problem(s, 10 * i + 1);
      const t = upload(g, p);
      const { y, u } = loraForward(t.x, t.w, t.a, t.b, p.scale);
      const ref = loraForwardRef(p.x, p.w, p.a, p.b, p.scale, s);
      expect(y.shape).toEqual([s.rows, s.outF]);
      expect(u.shape).toEqual([s.rows, s.rank]);
      expectClose(await y.read(), ref.y, tol(s), `y ${JSON.stringify(s)}`);
      expectClose(await u.read(), ref.u, tol(s), `u ${JSON.stringify(s)}`);
    }
  });

  it("adds a bias and writes into given tensors", async () => {
    const g = gpu();
    const s = SHAPES[0];
    const p = problem(s, 5);
    const t = upload(g, p);
    const biasData = uniform(s.outF, 6);
    const out = g.tensor([s.rows, s.outF]);
    const uOut = g.tensor([s.rows, s.rank]);
    const { y, u } = loraForward(t.x, t.w, t.a, t.b, p.scale, {
      bias: g.tensor([s.outF], "f32", biasData),
      out,
      u: uOut,
    });
    expect(y).toBe(out);
    expect(u).toBe(uOut);
    const ref = loraForwardRef(p.x, p.w, p.a, p.b, p.scale, s);
    expectClose(
      await y.read(),
      ref.y.map((v, i) => v + biasData[i % s.outF]),
      tol(s),
      "y + bias",
    );
  });

  it("rejects mismatched shapes", () => {
    const g = gpu();
    const x = g.tensor([2, 8]);
    const w = g.tensor([6, 8]);
    expect(() => loraForward(x, w, g.tensor([2, 7]), g.tensor([6, 2]), 1)).toThrow(/A must be \[r, 8\]/);
    expect(() => loraForward(x, w, g.tensor([2, 8]), g.tensor([6, 3]), 1)).toThrow(/B must be \[6, 2\]/);
    expect(() => loraForward(x, g.tensor([6, 9]), g.tensor([2, 8]), g.tensor([6, 2]), 1)).toThrow(/W must be/);
  });
});

describe("loraBackward", () => {
  it("matches the reference dX, dA, dB", async () => {
    const g = gpu();
    for (const [i, s] of SHAPES.entries()) {
      const p = problem(s, 10 * i + 3);
      const t = upload(g, p);
      const dyData = uniform(s.rows * s.outF, 100 + i);
      const dy = g.tensor([s.rows, s.outF], "f32", dyData);
      const { u } = loraForward(t.x, t.w, t.a, t.b, p.scale);
      const { dx, da, db } = loraBackward(dy, t.x, u, t.w, t.a, t.b, p.scale);
      const ref = loraBackwardRef(dyData, p.x, p.w, p.a, p.b, p.scale, s);
      expectClose(await dx!.read(), ref.dx, tol(s), `dx ${JSON.stringify(s)}`);
      expectClose(await da.read(), ref.da, tol(s), `da ${JSON.stringify(s)}`);
      expectClose(await db.read(), ref.db, tol(s), `db ${JSON.stringify(s)}`);
    }
  });

  it("accumulates into existing dA/dB and can skip dX", async () => {
    const g = gpu();
    const s = SHAPES[0];
    const p = problem(s, 21);
    const t = upload(g, p);
    const dyData = uniform(s.rows * s.outF, 22);
    const dy = g.tensor([s.rows, s.outF], "f32", dyData);
    const { u } = loraForward(t.x, t.w, t.a, t.b, p.scale);
    const da0 = uniform(s.rank * s.inF, 23);
    const db0 = uniform(s.outF * s.rank, 24);
    const da = g.tensor([s.rank, s.inF], "f32", da0);
    const db = g.tensor([s.outF, s.rank], "f32", db0);
    const res = loraBackward(dy, t.x, u, t.w, t.a, t.b, p.scale, {
      accumulateGrads: true,
      needInputGrad: false,
      da,
      db,
    });
    expect(res.dx).toBeUndefined();
    expect(res.da).toBe(da);
    const ref = loraBackwardRef(dyData, p.x, p.w, p.a, p.b, p.scale, s);
    expectClose(
      await da.read(),
      ref.da.map((v, i) => v + da0[i]),
      tol(s),
      "da accumulated",
    );
    expectClose(
      await db.read(),
      ref.db.map((v, i) => v + db0[i]),
      tol(s),
      "db accumulated",
    );
    expect(() => loraBackward(dy, t.x, u, t.w, t.a, t.b, p.scale, { accumulateGrads: true })).toThrow(
      /accumulateGrads needs opts.da and opts.db/,
    );
    expect(() => loraBackward(g.tensor([s.rows, 3]), t.x, u, t.w, t.a, t.b, p.scale)).toThrow(/dY must be/);
  });

  it("passes finite-difference gradient checks for x, A and B through the GPU forward", async () => {
    const g = gpu();
    const s: LoraShapes = { rows: 3, inF: 8, outF: 6, rank: 2 };
    const p = problem(s, 31);
    const r = uniform(s.rows * s.outF, 32);
    const dy = g.tensor([s.rows, s.outF], "f32", r);
    const t = upload(g, p);
    const { u } = loraForward(t.x, t.w, t.a, t.b, p.scale);
    const { dx, da, db } = loraBackward(dy, t.x, u, t.w, t.a, t.b, p.scale);
    const grads = { x: await dx!.read(), a: await da.read(), b: await db.read() };

    // L = Σ y ⊙ R through the GPU forward, with one of x, A, B replaced.
    const loss = (which: "x" | "a" | "b") => async (v: Float32Array) => {
      const shape = which === "x" ? [s.rows, s.inF] : which === "a" ? [s.rank, s.inF] : [s.outF, s.rank];
      const swapped = g.tensor(shape, "f32", v);
      const args = { ...t, [which]: swapped };
      const { y, u: u2 } = loraForward(args.x, args.w, args.a, args.b, p.scale);
      const out = await y.read();
      for (const tensor of [swapped, y, u2]) tensor.dispose();
      let sum = 0;
      for (let i = 0; i < out.length; i++) sum += out[i] * r[i];
      return sum;
    };
    await gradCheck(p.x, grads.x, loss("x"), { samples: 12 }, "dx");
    await gradCheck(p.a, grads.a, loss("a"), { samples: 12 }, "dA");
    await gradCheck(p.b, grads.b, loss("b"), { samples: 12 }, "dB");
  });
});
