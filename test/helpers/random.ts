// Seeded randomness for tests: the same seed gives the same inputs on every machine.

import { mulberry32 } from "../../src/random.ts";

/** Floats in [0, 1) from `seed`: the project's one seeded source, mulberry32. */
export const rng = mulberry32;

/** Uniform floats in [lo, hi). */
export function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/** Standard normal floats (Box-Muller) times `scale`. */
export function normal(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

/** Integers in [0, max). */
export function ints(n: number, seed: number, max: number): Uint32Array {
  const r = rng(seed);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * max);
  return out;
}
