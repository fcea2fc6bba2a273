// Launchers for swiglu.wgsl: h = silu(gate) · up and its backward, for gate and up as separate
// tensors or fused as the two halves of each row of one [tokens, 2·ffn] tensor (the layout of a
// single gate+up matmul); and Gemma's GeGLU h = gelu_tanh(gate) · up (separate tensors).

import type { Gpu } from "../device.ts";
import { grid1d } from "../grid.ts";
import type { Tensor } from "../tensor.ts";
import { require2d, requireF32, requireShape, rowsGrid, sameBuffer, vectorDefines } from "./launch.ts";

const WG = 256;

type SeparateEntry = "swiglu" | "swiglu_backward" | "geglu" | "geglu_backward";

/** Flat elementwise launch: vec4 over ⌊n/4⌋·4 elements (bound as trimmed views), scalar tail. */
function launchFlat(gpu: Gpu, entry: SeparateEntry, bindings: Tensor[], size: number): void {
  const n4 = Math.floor(size / 4);
  const tail = size - n4 * 4;
  if (n4 > 0) {
    gpu.commands.dispatch({
      shader: "swiglu",
      entry,
      defines: vectorDefines(4),
      bindings: bindings.map((t) => (tail === 0 ? t : t.view([n4 * 4], 0))),
      params: { n: n4, offset: 0, cols: 0 },
      workgroups: grid1d(gpu, n4, WG),
    });
  }
  if (tail > 0) {
    gpu.commands.dispatch({
      shader: "swiglu",
      entry,
      defines: vectorDefines(1),
      bindings,
      params: { n: tail, offset: n4 * 4, cols: 0 },
      workgroups: [1],
    });
  }
}

function checkDistinct(op: string, outputs: Tensor[], inputs: Tensor[]): void {
  for (const o of outputs) {
    for (const i of inputs) {
      if (sameBuffer(o, i)) throw new Error(`${op}: outputs must not share a buffer with the inputs`);
    }
  }
  if (outputs.length === 2 && sameBuffer(outputs[0], outputs[1])) {
    throw new Error(`${op}: the two outputs must not share a buffer`);
  }
}

function checkSameShape(op: string, ref: Tensor, refName: string, t: Tensor, name: string): void {
  requireF32(t, op, name);
  requireShape(t, ref.shape, op, `${name} (must match ${refName})`);
}

/** The gated MLP activations: "silu" (SwiGLU, Llama/Qwen) or "gelu_tanh" (GeGLU, Gemma). */
export type GateActivation = "silu" | "gelu_tanh";

/** h = act(gate) ⊙ up for the given activation (see `swiglu`, `geglu`). */
export function gatedActivation(act: GateActivation, gate: Tensor, up: Tensor, options: { out?: Tensor } = {}): Tensor {
  return act === "silu" ? swiglu(gate, up, options) : geglu(gate, up, options);
}

/** Backward of `gatedActivation`. */
export function gatedActivationBackward(
  act: GateActivation,
  dh: Tensor,
  gate: Tensor,
  up: Tensor,
  options: { dgate?: Tensor; dup?: Tensor } = {},
): { dgate: Tensor; dup: Tensor } {
  return act === "silu" ? swigluBackward(dh, gate, up, options) : gegluBackward(dh, gate, up, options);
}

/** h = gelu_tanh(gate) ⊙ up for gate, up of the same shape (any rank): Gemma's MLP gate. */
export function geglu(gate: Tensor, up: Tensor, options: { out?: Tensor } = {}): Tensor {
  return separateForward("geglu", gate, up, options);
}

/** Backward of `geglu`: dgate and dup from dh and the forward inputs. */
export function gegluBackward(
  dh: Tensor,
  gate: Tensor,
  up: Tensor,
  options: { dgate?: Tensor; dup?: Tensor } = {},
): { dgate: Tensor; dup: Tensor } {
  return separateBackward("geglu_backward", "gegluBackward", dh, gate, up, options);
}

/** h = silu(gate) ⊙ up for gate, up of the same shape (any rank). */
export function swiglu(gate: Tensor, up: Tensor, options: { out?: Tensor } = {}): Tensor {
  return separateForward("swiglu", gate, up, options);
}

function separateForward(op: "swiglu" | "geglu", gate: Tensor, up: Tensor, options: { out?: Tensor }): Tensor {
  requireF32(gate, op, "gate");
  checkSameShape(op, gate, "gate", up, "up");
  const h = options.out ?? gate.gpu.tensor(gate.shape);
  checkSameShape(op, gate, "gate", h, "out");
  checkDistinct(op, [h], [gate, up]);
  launchFlat(gate.gpu, op, [gate, up, h], gate.size);
  return h;
}

/** Backward of `swiglu`: dgate and dup from dh and the forward inputs. */
export function swigluBackward(
  dh: Tensor,
  gate: Tensor,
  up: Tensor,
  options: { dgate?: Tensor; dup?: Tensor } = {},
): { dgate: Tensor; dup: Tensor } {
  return separateBackward("swiglu_backward", "swigluBackward", dh, gate, up, options);
}

function separateBackward(
  entry: "swiglu_backward" | "geglu_backward",
  op: string,
  dh: Tensor,
  gate: Tensor,
  up: Tensor,
  options: { dgate?: Tensor; dup?: Tensor },
): { dgate: Tensor; dup: Tensor } {
  requireF32(gate, op, "gate");
  checkSameShape(op, gate, "gate", up, "up");
  checkSameShape(op, gate, "gate", dh, "dh");
  const gpu = gate.gpu;
  const dgate = options.dgate ?? gpu.tensor(gate.shape);
  const dup = options.dup ?? gpu.tensor(gate.shape);
  checkSameShape(op, gate, "gate", dgate, "dgate");
  checkSameShape(op, gate, "gate", dup, "dup");
  checkDistinct(op, [dgate, dup], [dh, gate, up]);
  launchFlat(gpu, entry, [dh, gate, up, dgate, dup], gate.size);
  return { dgate, dup };
}

function fusedLayout(op: string, gateUp: Tensor): { tokens: number; ffn: number; width: 1 | 4 } {
  requireF32(gateUp, op, "gateUp");
  const [tokens, cols] = require2d(gateUp, op, "gateUp");
  if (cols % 2 !== 0) throw new Error(`${op}: gateUp must be [tokens, 2·ffn] with an even width, got ${cols}`);
  const ffn = cols / 2;
  return { tokens, ffn, width: ffn % 4 === 0 ? 4 : 1 };
}

/**
 * h [tokens, ffn] = silu(gate) ⊙ up where each row of gateUp [tokens, 2·ffn] is gate then up.
 */
export function swigluFused(gateUp: Tensor, options: { out?: Tensor } = {}): Tensor {
  const op = "swigluFused";
  const { tokens, ffn, width } = fusedLayout(op, gateUp);
  const gpu = gateUp.gpu;
  const h = options.out ?? gpu.tensor([tokens, ffn]);
  requireF32(h, op, "out");
  requireShape(h, [tokens, ffn], op, "out");
  checkDistinct(op, [h], [gateUp]);
  gpu.commands.dispatch({
    shader: "swiglu",
    entry: "swiglu_fused",
    defines: vectorDefines(width),
    bindings: [gateUp, h],
    params: { n: tokens, offset: 0, cols: ffn / width },
    workgroups: rowsGrid(gpu, ffn / width, WG, tokens),
  });
  return h;
}

/** Backward of `swigluFused`: dGateUp [tokens, 2·ffn] (dgate then dup in each row). */
export function swigluFusedBackward(dh: Tensor, gateUp: Tensor, options: { out?: Tensor } = {}): Tensor {
  const op = "swigluFusedBackward";
  const { tokens, ffn, width } = fusedLayout(op, gateUp);
  requireF32(dh, op, "dh");
  requireShape(dh, [tokens, ffn], op, "dh");
  const gpu = gateUp.gpu;
  const dGateUp = options.out ?? gpu.tensor([tokens, 2 * ffn]);
  requireF32(dGateUp, op, "out");
  requireShape(dGateUp, [tokens, 2 * ffn], op, "out");
  checkDistinct(op, [dGateUp], [dh, gateUp]);
  gpu.commands.dispatch({
    shader: "swiglu",
    entry: "swiglu_fused_backward",
    defines: vectorDefines(width),
    bindings: [dh, gateUp, dGateUp],
    params: { n: tokens, offset: 0, cols: ffn / width },
    workgroups: rowsGrid(gpu, ffn / width, WG, tokens),
  });
  return dGateUp;
}
