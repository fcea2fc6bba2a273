// Launchers for elementwise.wgsl (residual add, gradient accumulation, product, scale, fill) and
// the small validation helpers the per-token kernels share (dtype checks, vec4 defines, buffer
// aliasing). Every op runs as one vec4 dispatch over the bulk of the tensor plus, for sizes that
// are not a multiple of 4, one scalar dispatch over the last 1-3 elements.

import { f32, type Param } from "../batch.ts";
import type { Gpu } from "../device.ts";
import { grid1d } from "../grid.ts";
import type { Tensor } from "../tensor.ts";

const WG = 256;

/** Throws unless `t` holds f32 data. */
export function requireF32(t: Tensor, op: string, name: string): void {
  if (t.dtype !== "f32") throw new Error(`${op}: ${name} must be f32, got ${t.dtype}`);
}

/** Throws unless `t` holds u32 data. */
export function requireU32(t: Tensor, op: string, name: string): void {
  if (t.dtype !== "u32") throw new Error(`${op}: ${name} must be u32, got ${t.dtype}`);
}

/** Throws unless `t` has exactly `shape`. */
export function requireShape(t: Tensor, shape: readonly number[], op: string, name: string): void {
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

/** Defines selecting the storage vector type: vec4 when `width` is 4, scalar otherwise. */
export function vectorDefines(width: 1 | 4): { V: string; HSUM: string } {
  return width === 4 ? { V: "vec4<f32>", HSUM: "v.x + v.y + v.z + v.w" } : { V: "f32", HSUM: "v" };
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

type Entry = "add" | "add_inplace" | "mul" | "mul_inplace" | "scale" | "scale_inplace" | "fill";

/**
 * Records `entry` over all `size` elements: vec4 over the first ⌊size/4⌋·4, then scalar over the
 * tail. Vec4 dispatches bind views trimmed to a multiple of 16 bytes so no lane reads past the end.
 */
function launch(entry: Entry, bindings: Tensor[], size: number, alpha: number): void {
  const gpu = bindings[0].gpu;
  const n4 = Math.floor(size / 4);
  const tail = size - n4 * 4;
  const params = (n: number, offset: number): Param[] => [n, offset, f32(alpha)];
  if (n4 > 0) {
    gpu.commands.dispatch({
      shader: "elementwise",
      entry,
      defines: vectorDefines(4),
      bindings: bindings.map((t) => (tail === 0 ? t : t.view([n4 * 4], 0))),
      params: params(n4, 0),
      workgroups: grid1d(gpu, n4, WG),
    });
  }
  if (tail > 0) {
    gpu.commands.dispatch({
      shader: "elementwise",
      entry,
      defines: vectorDefines(1),
      bindings,
      params: params(tail, n4 * 4),
      workgroups: [1],
    });
  }
}

function checkPair(op: string, a: Tensor, b: Tensor): void {
  requireF32(a, op, "a");
  requireF32(b, op, "b");
  if (a.size !== b.size) {
    throw new Error(`${op}: sizes differ: a is [${a.shape.join(", ")}], b is [${b.shape.join(", ")}]`);
  }
}

/**
 * Checks an output for a two-operand op. Returns "a" or "b" when `out` is exactly that operand
 * (the in-place entry point is used then), null otherwise; rejects partial overlaps of one buffer,
 * which WebGPU cannot bind as read-only and writable in the same dispatch.
 */
function outputAlias(op: string, a: Tensor, b: Tensor, out: Tensor): "a" | "b" | null {
  requireF32(out, op, "out");
  if (out.size !== a.size) throw new Error(`${op}: out has ${out.size} elements, expected ${a.size}`);
  if (sameMemory(out, a)) return "a";
  if (sameMemory(out, b)) return "b";
  if (sameBuffer(out, a) || sameBuffer(out, b)) {
    throw new Error(`${op}: out shares a buffer with an input without being exactly that input; use a separate tensor`);
  }
  return null;
}

/** out = a + b (residual add). `out` may be `a` or `b` itself for an in-place add. */
export function add(a: Tensor, b: Tensor, out?: Tensor): Tensor {
  checkPair("add", a, b);
  const dst = out ?? a.gpu.tensor(a.shape);
  const alias = outputAlias("add", a, b, dst);
  if (alias === "a") launch("add_inplace", [a, b], a.size, 1);
  else if (alias === "b") launch("add_inplace", [b, a], a.size, 1);
  else launch("add", [a, b, dst], a.size, 1);
  return dst;
}

/** acc += alpha · x (gradient accumulation, SGD-style updates). Returns `acc`. */
export function addInPlace(acc: Tensor, x: Tensor, alpha = 1): Tensor {
  checkPair("addInPlace", acc, x);
  if (sameBuffer(acc, x)) {
    if (!sameMemory(acc, x)) throw new Error("addInPlace: acc and x overlap in one buffer; use a separate tensor");
    launch("scale_inplace", [acc], acc.size, 1 + alpha);
    return acc;
  }
  launch("add_inplace", [acc, x], acc.size, alpha);
  return acc;
}

/** out = a ⊙ b. `out` may be `a` or `b` itself. */
export function mul(a: Tensor, b: Tensor, out?: Tensor): Tensor {
  checkPair("mul", a, b);
  const dst = out ?? a.gpu.tensor(a.shape);
  const alias = outputAlias("mul", a, b, dst);
  if (alias === "a") launch("mul_inplace", [a, b], a.size, 1);
  else if (alias === "b") launch("mul_inplace", [b, a], a.size, 1);
  else launch("mul", [a, b, dst], a.size, 1);
  return dst;
}

/** out = alpha · x. `out` may be `x` itself. */
export function scale(x: Tensor, alpha: number, out?: Tensor): Tensor {
  requireF32(x, "scale", "x");
  const dst = out ?? x.gpu.tensor(x.shape);
  requireF32(dst, "scale", "out");
  if (dst.size !== x.size) throw new Error(`scale: out has ${dst.size} elements, expected ${x.size}`);
  if (sameMemory(dst, x)) launch("scale_inplace", [x], x.size, alpha);
  else if (sameBuffer(dst, x)) throw new Error("scale: out overlaps x in one buffer; use a separate tensor");
  else launch("scale", [x, dst], x.size, alpha);
  return dst;
}

/** Sets every element of `t` to `value`. Returns `t`. */
export function fill(t: Tensor, value: number): Tensor {
  requireF32(t, "fill", "t");
  if (typeof value !== "number") throw new Error(`fill: value must be a number, got ${typeof value}`);
  launch("fill", [t], t.size, value);
  return t;
}
