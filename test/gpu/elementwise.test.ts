// Elementwise kernels (add, addInPlace, mul, scale, fill) on the real device vs an f64 reference,
// on sizes that exercise the vec4 body, the scalar tail, and both together.
import { describe, expect, it } from "vitest";
import { add, addInPlace, fill, mul, scale } from "../../src/gpu/kernels/elementwise.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { uniform } from "../helpers/random.ts";
import { axpyRef, mulRef, scaleRef } from "../reference/elementwise.ts";

const gpu = useGpu();

// Inputs are in [-1, 1); each output is one or two f32 roundings of a value of magnitude ≤ 2, so
// the error is ≤ 2 ulp(2) ≈ 4.8e-7. 1e-6 absolute keeps a margin; a wrong element is off by O(1).
const TOL = { atol: 1e-6, rtol: 0 };
const SIZES = [1, 3, 4, 7, 129, 896, 512 * 896 + 3];

describe("elementwise", () => {
  it.each(SIZES)("add, mul and scale out of place match the reference (n=%i)", async (n) => {
    const g = gpu();
    const ad = uniform(n, 1);
    const bd = uniform(n, 2);
    const a = g.tensor([n], "f32", ad);
    const b = g.tensor([n], "f32", bd);
    const sum = add(a, b);
    const prod = mul(a, b);
    const scaled = scale(a, -2.5);
    expectClose(await sum.read(), axpyRef(ad, bd), TOL, `add n=${n}`);
    expectClose(await prod.read(), mulRef(ad, bd), TOL, `mul n=${n}`);
    expectClose(await scaled.read(), scaleRef(ad, -2.5), { atol: 3e-6, rtol: 0 }, `scale n=${n}`);
    // Inputs are untouched.
    expect(Array.from(await a.read())).toEqual(Array.from(ad));
    for (const t of [a, b, sum, prod, scaled]) t.dispose();
  });

  it.each(SIZES)("in-place variants write into their operand (n=%i)", async (n) => {
    const g = gpu();
    const ad = uniform(n, 3);
    const bd = uniform(n, 4);
    const a = g.tensor([n], "f32", ad);
    const b = g.tensor([n], "f32", bd);
    expect(add(a, b, a)).toBe(a); // a += b
    expectClose(await a.read(), axpyRef(ad, bd), TOL, "add out=a");
    const a2 = Float32Array.from(await a.read());
    expect(add(a, b, b)).toBe(b); // b = a + b
    expectClose(await b.read(), axpyRef(a2, bd), TOL, "add out=b");
    const b2 = Float32Array.from(await b.read());
    addInPlace(a, b, -0.5);
    expectClose(await a.read(), axpyRef(a2, b2, -0.5), TOL, "addInPlace");
    const a3 = Float32Array.from(await a.read());
    mul(a, b, a);
    expectClose(await a.read(), mulRef(a3, b2), { atol: 4e-6, rtol: 0 }, "mul out=a");
    const a4 = Float32Array.from(await a.read());
    scale(a, 3, a);
    expectClose(await a.read(), scaleRef(a4, 3), { atol: 1e-5, rtol: 1e-6 }, "scale in place");
    addInPlace(b, b, 1); // b += b
    expectClose(await b.read(), scaleRef(b2, 2), { atol: 0, rtol: 1e-7 }, "addInPlace onto itself");
    a.dispose();
    b.dispose();
  });

  it("fill writes exactly the tensor's elements (tail included) and nothing past them", async () => {
    const g = gpu();
    const whole = g.tensor([16], "f32", uniform(16, 5));
    const before = await whole.read();
    for (const n of [1, 3, 7, 12]) {
      fill(whole.view([n], 0), n + 0.25);
      const after = await whole.read();
      for (let i = 0; i < n; i++) expect(after[i]).toBe(n + 0.25);
      for (let i = 12; i < 16; i++) expect(after[i]).toBe(before[i]);
      if (n < 12) expect(after[n]).not.toBe(n + 0.25);
    }
    fill(whole, Number.NEGATIVE_INFINITY);
    expect(Array.from(await whole.read()).every((v) => v === Number.NEGATIVE_INFINITY)).toBe(true);
    whole.dispose();
  });

  it("rejects mismatched sizes, wrong dtypes and partially overlapping outputs", async () => {
    const g = gpu();
    const a = g.tensor([8]);
    const b = g.tensor([7]);
    const ints = g.tensor([8], "u32");
    expect(() => add(a, b)).toThrow(/sizes differ/);
    expect(() => mul(a, ints)).toThrow(/b must be f32, got u32/);
    expect(() => addInPlace(a, b)).toThrow(/sizes differ/);
    expect(() => add(a, a, g.tensor([4]))).toThrow(/out has 4 elements, expected 8/);
    const big = g.tensor([128]);
    // Views of one buffer at different offsets cannot be bound read-only and writable together.
    const other = g.tensor([64]);
    expect(() => add(big.view([64], 0), other, big.view([64], 64))).toThrow(/shares a buffer with an input/);
    // Exactly an input is the in-place path, but not while the other input lives in its buffer.
    expect(() => add(big.view([64], 0), big.view([64], 64), big.view([64], 64))).toThrow(/other input shares/);
    expect(() => mul(other, other, other)).toThrow(/out is a, and the other input shares/);
    expect(() => scale(big.view([64], 0), 2, big.view([64], 64))).toThrow(/overlaps/);
    expect(() => fill(ints, 1)).toThrow(/must be f32/);
    await g.sync(); // nothing invalid was recorded on the way
  });
});
