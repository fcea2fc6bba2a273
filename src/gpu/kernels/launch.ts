// What every launcher shares: the one set of vector defines that lets a WGSL source run on f32 or
// vec4<f32> elements, and the input checks (dtype, shape, buffer aliasing) and row grids. One
// place, so a shader's `{{VT}}` means the same thing whichever launcher renders it.

import type { Gpu } from "../device.ts";
import type { Defines } from "../pipeline.ts";
import type { DType, Tensor } from "../tensor.ts";

/**
 * Defines for an element width of 1 or 4 floats: `VT`/`UT`/`IT` the f32/u32/i32 element types,
 * `W` the width, `HSUM`/`HMAX` a horizontal sum/max of a VT named `v`, and `LANES` the per-lane
 * column offsets (a UT). The sum is written out left to right (((x + y) + z) + w), the order a
 * 4-wide dot with ones evaluates in, so every kernel reduces a vec4 the same way.
 */
export function vectorDefines(width: 1 | 4): Defines {
  return width === 4
    ? {
        W: 4,
        VT: "vec4<f32>",
        UT: "vec4<u32>",
        IT: "vec4<i32>",
        HSUM: "(v.x + v.y + v.z + v.w)",
        HMAX: "max(max(v.x, v.y), max(v.z, v.w))",
        LANES: "vec4<u32>(0u, 1u, 2u, 3u)",
      }
    : { W: 1, VT: "f32", UT: "u32", IT: "i32", HSUM: "v", HMAX: "v", LANES: "0u" };
}

/** Throws unless `t` holds f32 data. */
export function requireF32(t: Tensor, op: string, name: string): void {
  if (t.dtype !== "f32") throw new Error(`${op}: ${name} must be f32, got ${t.dtype}`);
}

/** Throws unless `t` holds u32 data. */
export function requireU32(t: Tensor, op: string, name: string): void {
  if (t.dtype !== "u32") throw new Error(`${op}: ${name} must be u32, got ${t.dtype}`);
}

/** The shape check of every launcher: throws unless `t` has exactly `shape` (and `dtype` when given). */
export function requireShape(t: Tensor, shape: readonly number[], op: string, name: string, dtype?: DType): void {
  if (dtype !== undefined && t.dtype !== dtype) {
    throw new Error(`${op}: ${name} must be ${dtype} [${shape.join(", ")}], got ${t.dtype} [${t.shape.join(", ")}]`);
  }
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${op}: ${name} has shape [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
  }
}

/** Throws unless `t` is 2-D; returns [rows, cols]. */
export function require2d(t: Tensor, op: string, name: string): [number, number] {
  if (t.shape.length !== 2) throw new Error(`${op}: ${name} must be 2-D [rows, cols], got [${t.shape.join(", ")}]`);
  return [t.shape[0], t.shape[1]];
}

/** True when two tensors live in the same GPU buffer (WebGPU sees them as one resource). */
export function sameBuffer(a: Tensor, b: Tensor): boolean {
  return a.buffer === b.buffer;
}

/** True when two tensors are exactly the same memory (same buffer, offset and size). */
export function sameMemory(a: Tensor, b: Tensor): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.byteLength === b.byteLength;
}

/**
 * Workgroups for a row-wise launch: x covers `cols` invocations in groups of `size`, and the row
 * index is `wid.y + wid.z · nwg.y`, folded into z past the per-dimension cap. Avoids integer
 * division by a runtime row length, which lavapipe scalarises.
 */
export function rowsGrid(gpu: Gpu, cols: number, size: number, rows: number): [number, number, number] {
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.ceil(cols / size);
  if (x > max) throw new Error(`rows of ${cols} invocations need ${x} workgroups, over the cap of ${max}`);
  if (rows <= max) return [x, rows, 1];
  const z = Math.ceil(rows / max);
  return [x, Math.ceil(rows / z), z];
}
