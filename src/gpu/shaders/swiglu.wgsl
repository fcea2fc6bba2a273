// SwiGLU, the Llama/Qwen MLP gate: h = silu(gate) · up with silu(g) = g · sigmoid(g), and its
// backward dgate = dh · up · sigmoid(g) · (1 + g · (1 − sigmoid(g))), dup = dh · silu(g).
// GeGLU, Gemma's: h = gelu_tanh(gate) · up with gelu_tanh(g) = g/2 · (1 + tanh(c·(g + a·g³))),
// c = √(2/π), a = 0.044715 (PyTorch's gelu(approximate="tanh"), transformers' "gelu_pytorch_tanh");
// separate layout only.
//
// Two layouts. Separate: gate and up are their own [tokens, ffn] tensors, so the op is flat
// elementwise (vec4 over the bulk plus a scalar build for a 1-3 element tail, `offset` and `n`
// in units of V). Fused: one [tokens, 2·ffn] tensor whose rows hold gate then up (the engine may
// compute both with one matmul); then V is vec4 when ffn is a multiple of 4, else f32.

struct Params {
  n: u32,        // separate layout: elements of V to process; fused: tokens
  offset: u32,   // separate layout: first element of V (the tail)
  cols: u32,     // fused layout: ffn in units of V
}

alias V = {{VT}};
const WG: u32 = 256u;

@group(1) @binding(0) var<uniform> p: Params;

// exp(−g) is clamped so a very negative g gives sigmoid 0, not inf/inf.
fn sigmoid(g: V) -> V {
  return 1.0 / (1.0 + exp(min(-g, V(80.0))));
}

fn task(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

// ---- separate layout ----
@group(0) @binding(0) var<storage, read> gate: array<V>;
@group(0) @binding(1) var<storage, read> up: array<V>;
@group(0) @binding(2) var<storage, read_write> h: array<V>;

@compute @workgroup_size(WG)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = task(gid, nwg);
  if (i >= p.n) {
    return;
  }
  let k = p.offset + i;
  let g = gate[k];
  h[k] = g * sigmoid(g) * up[k];
}

@group(0) @binding(0) var<storage, read> dh: array<V>;
@group(0) @binding(1) var<storage, read> gate_b: array<V>;
@group(0) @binding(2) var<storage, read> up_b: array<V>;
@group(0) @binding(3) var<storage, read_write> dgate: array<V>;
@group(0) @binding(4) var<storage, read_write> dup: array<V>;

@compute @workgroup_size(WG)
fn swiglu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = task(gid, nwg);
  if (i >= p.n) {
    return;
  }
  let k = p.offset + i;
  let g = gate_b[k];
  let u = up_b[k];
  let d = dh[k];
  let s = sigmoid(g);
  dgate[k] = d * u * s * (1.0 + g * (1.0 - s));
  dup[k] = d * g * s;
}

// tanh with its argument clamped: |u| ≥ 20 is ±1 in f32 anyway, and the clamp keeps a g³ that
// overflowed (or exp of a huge argument inside tanh) from turning into inf/inf = NaN.
fn tanh_safe(u: V) -> V {
  return tanh(clamp(u, V(-20.0), V(20.0)));
}

const GELU_C: f32 = 0.7978845608028654; // √(2/π)
const GELU_A: f32 = 0.044715;

@compute @workgroup_size(WG)
fn geglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = task(gid, nwg);
  if (i >= p.n) {
    return;
  }
  let k = p.offset + i;
  let g = gate[k];
  let th = tanh_safe(GELU_C * (g + GELU_A * g * g * g));
  h[k] = 0.5 * g * (1.0 + th) * up[k];
}

// d gelu_tanh / dg = (1 + t)/2 + g/2 · (1 − t²) · c · (1 + 3a·g²), t = tanh(c·(g + a·g³)).
@compute @workgroup_size(WG)
fn geglu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = task(gid, nwg);
  if (i >= p.n) {
    return;
  }
  let k = p.offset + i;
  let g = gate_b[k];
  let u = up_b[k];
  let d = dh[k];
  let th = tanh_safe(GELU_C * (g + GELU_A * g * g * g));
  let gelu = 0.5 * g * (1.0 + th);
  let dgelu = 0.5 * (1.0 + th) + 0.5 * g * (1.0 - th * th) * GELU_C * (1.0 + 3.0 * GELU_A * g * g);
  dgate[k] = d * u * dgelu;
  dup[k] = d * gelu;
}

// ---- fused layout: gu [tokens, 2·ffn]; grid x over columns, token = wid.y + wid.z·nwg.y ----
@group(0) @binding(0) var<storage, read> gu: array<V>;
@group(0) @binding(1) var<storage, read_write> hf: array<V>;

@compute @workgroup_size(WG)
fn swiglu_fused(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let j = gid.x;
  let t = wid.y + wid.z * nwg.y;
  if (j >= p.cols || t >= p.n) {
    return;
  }
  let k = 2u * t * p.cols + j;
  let g = gu[k];
  hf[t * p.cols + j] = g * sigmoid(g) * gu[k + p.cols];
}

@group(0) @binding(0) var<storage, read> dhf: array<V>;
@group(0) @binding(1) var<storage, read> gu_b: array<V>;
@group(0) @binding(2) var<storage, read_write> dgu: array<V>;

@compute @workgroup_size(WG)
fn swiglu_fused_backward(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let j = gid.x;
  let t = wid.y + wid.z * nwg.y;
  if (j >= p.cols || t >= p.n) {
    return;
  }
  let k = 2u * t * p.cols + j;
  let g = gu_b[k];
  let u = gu_b[k + p.cols];
  let d = dhf[t * p.cols + j];
  let s = sigmoid(g);
  dgu[k] = d * u * s * (1.0 + g * (1.0 - s));
  dgu[k + p.cols] = d * g * s;
}
