// Launcher for rope.wgsl: rotary position embedding (HF rotate-half convention) on q or k laid
// out as [tokens, heads, headDim], its inverse (the backward), and the per-(theta, headDim)
// frequency table in 64-bit fixed point that keeps angles exact modulo a turn.

import type { Gpu } from "../device.ts";
import { grid1d } from "../grid.ts";
import type { Tensor } from "../tensor.ts";
import { requireF32, requireU32, sameBuffer, sameMemory, vectorDefines } from "./launch.ts";

export interface RopeOptions {
  /** Base of the frequencies: inv_freq[i] = theta^(−2i/headDim) (Llama 2: 1e4, Qwen2: 1e6). */
  theta: number;
  /**
   * Explicit inverse frequencies (headDim/2 values), overriding `theta`: for rescaled RoPE such as
   * Llama 3's (config.ts `ropeInverseFrequencies`). Pass the same array object each call: its
   * table is uploaded once per device and array.
   */
  invFreq?: Float64Array;
  nHeads: number;
  headDim: number;
  /** Apply the inverse rotation (the backward: dx = Rᵀ·dy). */
  inverse?: boolean;
  /** Output tensor; may be `x` itself for an in-place rotation. Allocated when absent. */
  out?: Tensor;
}

const TWO_POW_32 = 2 ** 32;

/**
 * The frequency table rope.wgsl reads: for i < headDim/2, f_i = theta^(−2i/headDim) / 2π as a
 * 64-bit binary fraction, hi words first then lo words. Computed in f64, so the fraction is
 * accurate to ~1e-17 turns per unit of position.
 */
export function ropeFrequencyTable(theta: number | ArrayLike<number>, headDim: number): Uint32Array {
  const half = headDim / 2;
  const table = new Uint32Array(headDim);
  for (let i = 0; i < half; i++) {
    const inv = typeof theta === "number" ? theta ** ((-2 * i) / headDim) : theta[i];
    const turns = inv / (2 * Math.PI);
    const scaled = turns * TWO_POW_32; // exact: a power-of-two scale
    const hi = Math.floor(scaled);
    table[i] = hi % TWO_POW_32; // turns < 1, so this only matters when inv_freq ≥ 2π
    table[half + i] = Math.floor((scaled - hi) * TWO_POW_32);
  }
  return table;
}

const tables = new WeakMap<Gpu, Map<string, Tensor>>();
const explicitTables = new WeakMap<Gpu, WeakMap<Float64Array, Tensor>>();

/** The uploaded table of explicit inverse frequencies, made once per device and array. */
function explicitFrequencyTensor(gpu: Gpu, invFreq: Float64Array, headDim: number): Tensor {
  if (invFreq.length !== headDim / 2) {
    throw new Error(`rope: invFreq has ${invFreq.length} values, expected headDim/2 = ${headDim / 2}`);
  }
  let perGpu = explicitTables.get(gpu);
  if (!perGpu) {
    perGpu = new WeakMap();
    explicitTables.set(gpu, perGpu);
  }
  let t = perGpu.get(invFreq);
  if (!t || t.disposed) {
    t = gpu.tensor([headDim], "u32", ropeFrequencyTable(invFreq, headDim));
    perGpu.set(invFreq, t);
  }
  return t;
}

/** The uploaded table for (theta or explicit inverse frequencies, headDim), made once per device. */
function frequencyTensor(gpu: Gpu, theta: number | Float64Array, headDim: number): Tensor {
  if (typeof theta !== "number") return explicitFrequencyTensor(gpu, theta, headDim);
  let perGpu = tables.get(gpu);
  if (!perGpu) {
    perGpu = new Map();
    tables.set(gpu, perGpu);
  }
  const key = `${theta}:${headDim}`;
  let t = perGpu.get(key);
  if (!t || t.disposed) {
    t = gpu.tensor([headDim], "u32", ropeFrequencyTable(theta, headDim));
    perGpu.set(key, t);
  }
  return t;
}

/**
 * Rotates every head of x ([tokens, nHeads, headDim] or [tokens, nHeads·headDim], f32) by the
 * angles of its token's position (`positions`: u32 [tokens], restarting per packed sequence as
 * the caller chooses). `inverse` applies the transpose rotation, which is the backward pass.
 * `out` may be x itself. Returns the output tensor.
 */
export function rope(x: Tensor, positions: Tensor, options: RopeOptions): Tensor {
  const op = "rope";
  const { nHeads, headDim } = options;
  const theta = options.invFreq ?? options.theta;
  requireF32(x, op, "x");
  requireU32(positions, op, "positions");
  if (!Number.isFinite(options.theta) || options.theta <= 1) {
    throw new Error(`${op}: theta must be a finite number > 1, got ${options.theta}`);
  }
  if (!Number.isInteger(nHeads) || nHeads < 1)
    throw new Error(`${op}: nHeads must be a positive integer, got ${nHeads}`);
  if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) {
    throw new Error(`${op}: headDim must be a positive even integer, got ${headDim}`);
  }
  if (positions.shape.length !== 1) throw new Error(`${op}: positions must be 1-D [tokens], got [${positions.shape}]`);
  const tokens = positions.shape[0];
  const width = nHeads * headDim;
  const okShape =
    (x.shape.length === 3 && x.shape[0] === tokens && x.shape[1] === nHeads && x.shape[2] === headDim) ||
    (x.shape.length === 2 && x.shape[0] === tokens && x.shape[1] === width);
  if (!okShape) {
    throw new Error(
      `${op}: x has shape [${x.shape.join(", ")}], expected [${tokens}, ${nHeads}, ${headDim}] ` +
        `or [${tokens}, ${width}] (tokens from positions)`,
    );
  }
  const gpu = x.gpu;
  const out = options.out ?? gpu.tensor(x.shape);
  requireF32(out, op, "out");
  if (out.size !== x.size) throw new Error(`${op}: out has ${out.size} elements, expected ${x.size}`);
  const inPlace = sameMemory(out, x);
  if (!inPlace && sameBuffer(out, x))
    throw new Error(`${op}: out overlaps x in one buffer; pass x itself or a separate tensor`);
  if (sameBuffer(out, positions)) throw new Error(`${op}: out must not share a buffer with positions`);

  const half = headDim / 2;
  const width4 = half % 4 === 0;
  const groups = width4 ? half / 4 : half;
  const freqs = frequencyTensor(gpu, theta, headDim);
  const count = tokens * groups;
  gpu.commands.dispatch({
    shader: "rope",
    entry: inPlace ? "rope_inplace" : "rope",
    defines: vectorDefines(width4 ? 4 : 1),
    bindings: inPlace ? [x, positions, freqs] : [x, positions, freqs, out],
    params: { count, groups, heads: nHeads, sign: options.inverse ? -1 : 1 },
    workgroups: grid1d(gpu, count, 64),
  });
  return out;
}
