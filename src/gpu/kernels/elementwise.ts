// Launchers for elementwise.wgsl (residual add, gradient accumulation, product, scale, fill).
// Every op runs as one vec4 dispatch over the bulk of the tensor plus, for sizes that
// are not a multiple of 4, one scalar dispatch over the last 1-3 elements.

import { grid1d } from "../grid.ts";
import type { Tensor } from "../tensor.ts";
import { requireF32, sameBuffer, sameMemory, vectorDefines } from "./launch.ts";

const WG = 256;

type Entry = "add" | "add_inplace" | "mul" | "mul_inplace" | "scale" | "scale_inplace" | "fill";

/**
 * Records `entry` over all `size` elements: vec4 over the first ⌊size/4⌋·4, then scalar over the
 * tail. Vec4 dispatches bind views trimmed to a multiple of 16 bytes so no lane reads past the end.
 */
function launch(entry: Entry, bindings: Tensor[], size: number, alpha: number): void {
  const gpu = bindings[0].gpu;
  const n4 = Math.floor(size / 4);
  const tail = size - n4 * 4;
  if (n4 > 0) {
    gpu.commands.dispatch({
      shader: "elementwise",
      entry,
      defines: vectorDefines(4),
      bindings: bindings.map((t) => (tail === 0 ? t : t.view([n4 * 4], 0))),
      params: { n: n4, offset: 0, alpha },
      workgroups: grid1d(gpu, n4, WG),
    });
  }
  if (tail > 0) {
    gpu.commands.dispatch({
      shader: "elementwise",
      entry,
      defines: vectorDefines(1),
      bindings,
      params: { n: tail, offset: n4 * 4, alpha },
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
 * (the in-place entry point is used then), null otherwise. WebGPU cannot bind one buffer
 * read-only and writable in the same dispatch, so any other sharing of out's buffer is refused:
 * a partial overlap with an input, or, in place, the other input in out's buffer (`add(x, x, x)`).
 */
function outputAlias(op: string, a: Tensor, b: Tensor, out: Tensor): "a" | "b" | null {
  requireF32(out, op, "out");
  if (out.size !== a.size) throw new Error(`${op}: out has ${out.size} elements, expected ${a.size}`);
  const alias = sameMemory(out, a) ? "a" : sameMemory(out, b) ? "b" : null;
  if (alias) {
    if (sameBuffer(out, alias === "a" ? b : a)) {
      throw new Error(`${op}: out is ${alias}, and the other input shares its buffer; use a separate tensor`);
    }
    return alias;
  }
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
