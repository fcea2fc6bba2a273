// Plain-TypeScript SwiGLU and GeGLU (gelu-tanh) forward and backward in f64: the source of truth
// for swiglu.wgsl.

const sigmoid = (g: number): number => 1 / (1 + Math.exp(-g));

/** h = silu(gate) · up elementwise. */
export function swigluRef(gate: ArrayLike<number>, up: ArrayLike<number>): Float64Array {
  const h = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) h[i] = gate[i] * sigmoid(gate[i]) * up[i];
  return h;
}

/** Gradients of Σ h·dh with respect to gate and up. */
export function swigluBackwardRef(
  dh: ArrayLike<number>,
  gate: ArrayLike<number>,
  up: ArrayLike<number>,
): { dgate: Float64Array; dup: Float64Array } {
  const dgate = new Float64Array(gate.length);
  const dup = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const s = sigmoid(gate[i]);
    dgate[i] = dh[i] * up[i] * s * (1 + gate[i] * (1 - s));
    dup[i] = dh[i] * gate[i] * s;
  }
  return { dgate, dup };
}

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/** PyTorch's gelu(approximate="tanh") (transformers' "gelu_pytorch_tanh"), in f64. */
export function geluTanh(g: number): number {
  return 0.5 * g * (1 + Math.tanh(GELU_C * (g + GELU_A * g ** 3)));
}

/** Gemma's GeGLU: h = gelu_tanh(gate) · up elementwise. */
export function gegluRef(gate: ArrayLike<number>, up: ArrayLike<number>): Float64Array {
  const h = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) h[i] = geluTanh(gate[i]) * up[i];
  return h;
}

/** Gradients of Σ h·dh for GeGLU, by the derivative of gelu_tanh worked out by hand. */
export function gegluBackwardRef(
  dh: ArrayLike<number>,
  gate: ArrayLike<number>,
  up: ArrayLike<number>,
): { dgate: Float64Array; dup: Float64Array } {
  const dgate = new Float64Array(gate.length);
  const dup = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    const t = Math.tanh(GELU_C * (g + GELU_A * g ** 3));
    const dgelu = 0.5 * (1 + t) + 0.5 * g * (1 - t * t) * GELU_C * (1 + 3 * GELU_A * g * g);
    dgate[i] = dh[i] * up[i] * dgelu;
    dup[i] = dh[i] * geluTanh(g);
  }
  return { dgate, dup };
}

/** Splits rows of a fused [tokens, 2·ffn] gate|up matrix into separate gate and up arrays. */
export function splitGateUp(gateUp: ArrayLike<number>, tokens: number, ffn: number): [Float64Array, Float64Array] {
  const gate = new Float64Array(tokens * ffn);
  const up = new Float64Array(tokens * ffn);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < ffn; j++) {
      gate[t * ffn + j] = gateUp[t * 2 * ffn + j];
      up[t * ffn + j] = gateUp[t * 2 * ffn + ffn + j];
    }
  }
  return [gate, up];
}

/** Joins separate gate and up arrays into the fused [tokens, 2·ffn] layout. */
export function joinGateUp(gate: ArrayLike<number>, up: ArrayLike<number>, tokens: number, ffn: number): Float64Array {
  const out = new Float64Array(tokens * 2 * ffn);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < ffn; j++) {
      out[t * 2 * ffn + j] = gate[t * ffn + j];
      out[t * 2 * ffn + ffn + j] = up[t * ffn + j];
    }
  }
  return out;
}
