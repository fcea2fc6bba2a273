// RoPE (HF rotate-half) on the real device vs an f64 reference at positions up to 32k and beyond,
// its inverse as the backward (reference and finite differences), in-place use and validation.
import { describe, expect, it } from "vitest";
import { rope, ropeFrequencyTable } from "../../src/gpu/kernels/rope.ts";
import { parseModelConfig, ropeInverseFrequencies } from "../../src/model/config.ts";
import { expectClose, maxAbsDiff } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { gradCheck } from "../helpers/gradcheck.ts";
import { ints, uniform } from "../helpers/random.ts";
import { ropeNaiveF32, ropeRef } from "../reference/rope.ts";

const gpu = useGpu();

// Inputs in [-1, 1). The kernel's angle is exact modulo a turn up to 2^-32 turns; converting the
// reduced angle to f32 adds ≤ 2^-24·π ≈ 2e-7 rad; sin/cos and the rotation add a few f32 ulps.
// So |error| ≲ 5e-7 for |x| ≤ 1, at every position. 2e-6 leaves a margin, and is ~500x below
// the error of the naive f32 angle (checked below), so the test proves the careful angle matters.
const TOL = { atol: 2e-6, rtol: 0 };

// [tokens, nHeads, headDim, theta, max position]
const CASES: [number, number, number, number, number][] = [
  [1, 1, 2, 1e4, 32768],
  [7, 2, 6, 1e4, 32768], // headDim/2 odd: scalar build
  [129, 3, 64, 1e6, 32768], // vec4 build
  [7, 14, 64, 1e6, 32768],
  [5, 2, 128, 1e4, 32768],
  [9, 2, 80, 1e6, 2 ** 31], // far beyond any context length: still exact modulo a turn
];

function positionsFor(tokens: number, maxPos: number, seed: number): Uint32Array {
  const p = ints(tokens, seed, maxPos);
  p[0] = maxPos - 1;
  if (tokens > 1) p[1] = 0;
  return p;
}

describe("rope", () => {
  it.each(CASES)(
    "tokens=%i heads=%i headDim=%i theta=%d matches the f64 reference up to pos %i",
    async (tokens, nHeads, headDim, theta, maxPos) => {
      const g = gpu();
      const xd = uniform(tokens * nHeads * headDim, tokens + headDim);
      const pd = positionsFor(tokens, maxPos, headDim);
      const x = g.tensor([tokens, nHeads, headDim], "f32", xd);
      const pos = g.tensor([tokens], "u32", pd);
      const opts = { theta, nHeads, headDim };
      const y = rope(x, pos, opts);
      expectClose(await y.read(), ropeRef(xd, pd, nHeads, headDim, theta), TOL, "rope");
      const back = rope(x, pos, { ...opts, inverse: true });
      expectClose(await back.read(), ropeRef(xd, pd, nHeads, headDim, theta, true), TOL, "inverse rope");
      // Inverse after forward restores the input.
      expectClose(await rope(y, pos, { ...opts, inverse: true }).read(), xd, TOL, "round trip");
      // In place gives the same result as out of place.
      expect(rope(x, pos, { ...opts, out: x })).toBe(x);
      expect(Array.from(await x.read())).toEqual(Array.from(await y.read()));
    },
  );

  it.each([
    [7, 3, 64],
    [129, 1, 6],
  ])(
    "tokens=%i heads=%i headDim=%i: explicit (llama3-rescaled) inverse frequencies match the reference",
    async (tokens, nHeads, headDim) => {
      const g = gpu();
      const base = parseModelConfig({
        architectures: ["LlamaForCausalLM"],
        hidden_size: nHeads * headDim,
        head_dim: headDim,
        intermediate_size: 8,
        num_attention_heads: nHeads,
        num_hidden_layers: 1,
        vocab_size: 8,
        rope_theta: 500000,
        rope_scaling: {
          rope_type: "llama3",
          factor: 32,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 8192,
        },
      });
      const invFreq = ropeInverseFrequencies(base);
      const xd = uniform(tokens * nHeads * headDim, tokens * 3 + headDim);
      const pd = positionsFor(tokens, 131072, headDim + 1);
      const x = g.tensor([tokens, nHeads, headDim], "f32", xd);
      const pos = g.tensor([tokens], "u32", pd);
      const opts = { theta: 500000, invFreq, nHeads, headDim };
      expectClose(await rope(x, pos, opts).read(), ropeRef(xd, pd, nHeads, headDim, invFreq), TOL, "scaled rope");
      expectClose(
        await rope(x, pos, { ...opts, inverse: true }).read(),
        ropeRef(xd, pd, nHeads, headDim, invFreq, true),
        TOL,
        "scaled inverse",
      );
      // The scaling changes the result (so theta alone would fail this test).
      expect(
        maxAbsDiff(ropeRef(xd, pd, nHeads, headDim, 500000), ropeRef(xd, pd, nHeads, headDim, invFreq)),
      ).toBeGreaterThan(0.1);
      expect(() => rope(x, pos, { ...opts, invFreq: invFreq.subarray(1) })).toThrow(/invFreq has/);
    },
  );

  it("is far more accurate than the naive f32 angle at long positions", async () => {
    const g = gpu();
    const [tokens, nHeads, headDim, theta] = [64, 2, 64, 1e6];
    const xd = uniform(tokens * nHeads * headDim, 21);
    const pd = Uint32Array.from({ length: tokens }, (_, t) => 32768 - 1 - t * 7);
    const y = rope(g.tensor([tokens, nHeads, headDim], "f32", xd), g.tensor([tokens], "u32", pd), {
      theta,
      nHeads,
      headDim,
    });
    const exact = ropeRef(xd, pd, nHeads, headDim, theta);
    const gpuError = maxAbsDiff(await y.read(), exact);
    const naiveError = maxAbsDiff(ropeNaiveF32(xd, pd, nHeads, headDim, theta), exact);
    expect(gpuError).toBeLessThan(TOL.atol);
    expect(naiveError).toBeGreaterThan(100 * TOL.atol);
  });

  it("accepts the flat [tokens, nHeads·headDim] layout", async () => {
    const g = gpu();
    const [tokens, nHeads, headDim] = [3, 2, 8];
    const xd = uniform(tokens * nHeads * headDim, 22);
    const pd = Uint32Array.from([5, 0, 1]);
    const y = rope(g.tensor([tokens, nHeads * headDim], "f32", xd), g.tensor([tokens], "u32", pd), {
      theta: 1e4,
      nHeads,
      headDim,
    });
    expect(y.shape).toEqual([tokens, nHeads * headDim]);
    expectClose(await y.read(), ropeRef(xd, pd, nHeads, headDim, 1e4), TOL, "flat layout");
  });

  it("backward (the inverse rotation) passes a finite-difference gradient check", async () => {
    const g = gpu();
    for (const [tokens, nHeads, headDim] of [
      [3, 2, 6],
      [2, 1, 16],
    ]) {
      const opts = { theta: 1e4, nHeads, headDim };
      const xd = uniform(tokens * nHeads * headDim, 23);
      const r = uniform(xd.length, 24);
      const pos = g.tensor([tokens], "u32", [3, 1000, 31000].slice(0, tokens));
      const loss = async (xv: Float32Array) => {
        const x = g.tensor([tokens, nHeads, headDim], "f32", xv);
        const y = await rope(x, pos, opts).read();
        x.dispose();
        let l = 0;
        for (let i = 0; i < y.length; i++) l += y[i] * r[i];
        return l;
      };
      const dx = rope(g.tensor([tokens, nHeads, headDim], "f32", r), pos, { ...opts, inverse: true });
      await gradCheck(xd, await dx.read(), loss, { samples: 16 }, `rope dx [${tokens}, ${nHeads}, ${headDim}]`);
    }
  });

  it("encodes inv_freq / 2π as a 64-bit binary fraction", () => {
    const table = ropeFrequencyTable(1e4, 8);
    for (let i = 0; i < 4; i++) {
      const turns = table[i] / 2 ** 32 + table[4 + i] / 2 ** 64;
      expect(Math.abs(turns - 1e4 ** (-i / 4) / (2 * Math.PI))).toBeLessThan(1e-17);
    }
  });

  it("rejects bad shapes, dtypes and options with clear messages", () => {
    const g = gpu();
    const x = g.tensor([4, 2, 8]);
    const pos = g.tensor([4], "u32");
    const opts = { theta: 1e4, nHeads: 2, headDim: 8 };
    expect(() => rope(x, g.tensor([4]), opts)).toThrow(/positions must be u32, got f32/);
    expect(() => rope(x, g.tensor([3], "u32"), opts)).toThrow(/expected \[3, 2, 8\] or \[3, 16\]/);
    expect(() => rope(x, pos, { ...opts, headDim: 7 })).toThrow(/headDim must be a positive even integer/);
    expect(() => rope(x, pos, { ...opts, nHeads: 0 })).toThrow(/nHeads must be a positive integer/);
    expect(() => rope(x, pos, { ...opts, theta: Number.NaN })).toThrow(/theta must be/);
    expect(() => rope(x, pos, { ...opts, out: g.tensor([4, 2, 4]) })).toThrow(/out has 32 elements, expected 64/);
    const big = g.tensor([128]);
    expect(() => rope(big.view([4, 16], 0), pos, { ...opts, out: big.view([4, 16], 64) })).toThrow(/overlaps x/);
  });
});
