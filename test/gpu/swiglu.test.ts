// SwiGLU forward and backward on the real device vs an f64 reference, for separate gate/up
// tensors and the fused [tokens, 2·ffn] layout, with finite-difference gradient checks.
import { describe, expect, it } from "vitest";
import {
  geglu,
  gegluBackward,
  swiglu,
  swigluBackward,
  swigluFused,
  swigluFusedBackward,
} from "../../src/gpu/kernels/swiglu.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { gradCheck } from "../helpers/gradcheck.ts";
import { normal, uniform } from "../helpers/random.ts";
import {
  gegluBackwardRef,
  gegluRef,
  geluTanh,
  joinGateUp,
  splitGateUp,
  swigluBackwardRef,
  swigluRef,
} from "../reference/swiglu.ts";

const gpu = useGpu();

// gate ~ N(0, 3²) (tails reach ±15), up and dh in [-1, 1). WGSL's exp is accurate to a few ulp
// for these arguments and each output is a handful of f32 ops, so the error is a few ulp of
// values ≤ ~15: 2e-6 absolute plus 1e-5 relative covers it; a wrong element is off by O(1).
const TOL = { atol: 2e-6, rtol: 1e-5 };

const SHAPES: [number, number][] = [
  [1, 1],
  [1, 7],
  [3, 129],
  [7, 896],
  [16, 4864],
];

function gateValues(n: number, seed: number): Float32Array {
  const g = normal(n, seed, 3);
  // Saturated ends: sigmoid must give exactly 0 / 1 there, never NaN.
  if (n > 2) {
    g[0] = -100;
    g[1] = 100;
  }
  return g;
}

describe("swiglu, separate gate and up", () => {
  it.each(SHAPES)("forward and backward match the reference for [%i, %i]", async (tokens, ffn) => {
    const g = gpu();
    const n = tokens * ffn;
    const gd = gateValues(n, n);
    const ud = uniform(n, 2);
    const dhd = uniform(n, 3);
    const gate = g.tensor([tokens, ffn], "f32", gd);
    const up = g.tensor([tokens, ffn], "f32", ud);
    const dh = g.tensor([tokens, ffn], "f32", dhd);
    expectClose(await swiglu(gate, up).read(), swigluRef(gd, ud), TOL, "h");
    const { dgate, dup } = swigluBackward(dh, gate, up);
    const ref = swigluBackwardRef(dhd, gd, ud);
    expectClose(await dgate.read(), ref.dgate, TOL, "dgate");
    expectClose(await dup.read(), ref.dup, TOL, "dup");
  });

  it("passes a finite-difference gradient check for gate and up", async () => {
    const g = gpu();
    const [tokens, ffn] = [3, 5];
    const gd = normal(tokens * ffn, 31, 2);
    const ud = uniform(tokens * ffn, 32);
    const r = uniform(tokens * ffn, 33);
    const loss = async (gv: Float32Array, uv: Float32Array) => {
      const gate = g.tensor([tokens, ffn], "f32", gv);
      const up = g.tensor([tokens, ffn], "f32", uv);
      const h = await swiglu(gate, up).read();
      gate.dispose();
      up.dispose();
      let l = 0;
      for (let i = 0; i < h.length; i++) l += h[i] * r[i];
      return l;
    };
    const { dgate, dup } = swigluBackward(
      g.tensor([tokens, ffn], "f32", r),
      g.tensor([tokens, ffn], "f32", gd),
      g.tensor([tokens, ffn], "f32", ud),
    );
    await gradCheck(gd, await dgate.read(), (gv) => loss(gv, ud), { samples: 15 }, "dgate");
    await gradCheck(ud, await dup.read(), (uv) => loss(gd, uv), { samples: 15 }, "dup");
  });
});

describe("geglu (Gemma's gelu-tanh gate), separate gate and up", () => {
  it.each(SHAPES)("forward and backward match the reference for [%i, %i]", async (tokens, ffn) => {
    const g = gpu();
    const n = tokens * ffn;
    // Saturated ends (±100, where g³ is 1e6 and tanh must be exactly ±1) included.
    const gd = gateValues(n, n + 1);
    const ud = uniform(n, 4);
    const dhd = uniform(n, 5);
    const gate = g.tensor([tokens, ffn], "f32", gd);
    const up = g.tensor([tokens, ffn], "f32", ud);
    const dh = g.tensor([tokens, ffn], "f32", dhd);
    expectClose(await geglu(gate, up).read(), gegluRef(gd, ud), TOL, "h");
    const { dgate, dup } = gegluBackward(dh, gate, up);
    const ref = gegluBackwardRef(dhd, gd, ud);
    expectClose(await dgate.read(), ref.dgate, TOL, "dgate");
    expectClose(await dup.read(), ref.dup, TOL, "dup");
  });

  it("is PyTorch's tanh approximation, not the erf GELU nor SiLU", () => {
    // torch.nn.functional.gelu(torch.tensor(1.0, dtype=torch.float64), approximate="tanh")
    expect(geluTanh(1)).toBeCloseTo(0.8411919906082768, 14);
    // The exact (erf) GELU at 1 is 0.8413447460685429: the two differ in the 4th digit.
    expect(Math.abs(geluTanh(1) - 0.8413447460685429)).toBeGreaterThan(1e-4);
  });

  it("passes a finite-difference gradient check for gate and up", async () => {
    const g = gpu();
    const [tokens, ffn] = [3, 7];
    const gd = normal(tokens * ffn, 41, 2);
    const ud = uniform(tokens * ffn, 42);
    const r = uniform(tokens * ffn, 43);
    const loss = async (gv: Float32Array, uv: Float32Array) => {
      const gate = g.tensor([tokens, ffn], "f32", gv);
      const up = g.tensor([tokens, ffn], "f32", uv);
      const h = await geglu(gate, up).read();
      gate.dispose();
      up.dispose();
      let l = 0;
      for (let i = 0; i < h.length; i++) l += h[i] * r[i];
      return l;
    };
    const { dgate, dup } = gegluBackward(
      g.tensor([tokens, ffn], "f32", r),
      g.tensor([tokens, ffn], "f32", gd),
      g.tensor([tokens, ffn], "f32", ud),
    );
    await gradCheck(gd, await dgate.read(), (gv) => loss(gv, ud), { samples: 15 }, "dgate");
    await gradCheck(ud, await dup.read(), (uv) => loss(gd, uv), { samples: 15 }, "dup");
  });
});

describe("swiglu, fused [tokens, 2·ffn] layout", () => {
  it.each(SHAPES)("forward and backward match the reference for [%i, %i]", async (tokens, ffn) => {
    const g = gpu();
    const n = tokens * ffn;
    const gd = gateValues(n, n + 1);
    const ud = uniform(n, 4);
    const dhd = uniform(n, 5);
    const gateUp = g.tensor([tokens, 2 * ffn], "f32", joinGateUp(gd, ud, tokens, ffn));
    const dh = g.tensor([tokens, ffn], "f32", dhd);
    const h = swigluFused(gateUp);
    expect(h.shape).toEqual([tokens, ffn]);
    expectClose(await h.read(), swigluRef(gd, ud), TOL, "fused h");
    const dGateUp = swigluFusedBackward(dh, gateUp);
    const [dgate, dup] = splitGateUp(await dGateUp.read(), tokens, ffn);
    const ref = swigluBackwardRef(dhd, gd, ud);
    expectClose(dgate, ref.dgate, TOL, "fused dgate");
    expectClose(dup, ref.dup, TOL, "fused dup");
  });

  it("passes a finite-difference gradient check", async () => {
    const g = gpu();
    const [tokens, ffn] = [2, 8];
    const xd = normal(tokens * 2 * ffn, 41, 2);
    const r = uniform(tokens * ffn, 42);
    const loss = async (xv: Float32Array) => {
      const x = g.tensor([tokens, 2 * ffn], "f32", xv);
      const h = await swigluFused(x).read();
      x.dispose();
      let l = 0;
      for (let i = 0; i < h.length; i++) l += h[i] * r[i];
      return l;
    };
    const grad = swigluFusedBackward(g.tensor([tokens, ffn], "f32", r), g.tensor([tokens, 2 * ffn], "f32", xd));
    await gradCheck(xd, await grad.read(), loss, { samples: 20 }, "fused dGateUp");
  });
});

describe("swiglu validation", () => {
  it("rejects mismatched shapes, dtypes and aliased outputs with clear messages", () => {
    const g = gpu();
    const a = g.tensor([4, 8]);
    const b = g.tensor([4, 8]);
    expect(() => swiglu(a, g.tensor([4, 7]))).toThrow(/up \(must match gate\) has shape \[4, 7\], expected \[4, 8\]/);
    expect(() => swiglu(a, g.tensor([4, 8], "i32"))).toThrow(/up must be f32, got i32/);
    expect(() => swiglu(a, b, { out: a })).toThrow(/must not share a buffer/);
    expect(() => swigluBackward(g.tensor([4, 4]), a, b)).toThrow(/dh \(must match gate\)/);
    expect(() => swigluFused(g.tensor([4, 7]))).toThrow(/even width, got 7/);
    expect(() => swigluFused(g.tensor([32]))).toThrow(/must be 2-D/);
    expect(() => swigluFusedBackward(g.tensor([4, 3]), a)).toThrow(/dh has shape \[4, 3\], expected \[4, 4\]/);
  });
});
