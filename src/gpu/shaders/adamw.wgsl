// Fused AdamW update (PyTorch semantics) for one parameter tensor: decoupled weight decay,
// both moment updates and the bias-corrected step in one pass, so each element is read once
// (param, grad, m, v) and written once (param, m, v). VT is f32 or vec4<f32>: the update is
// element-wise, so the same code serves both widths.

alias VT = {{VT}};

struct Params {
  // Length in VT vectors.
  n: u32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  // 1 − lr·weight_decay: decoupled decay, applied to the parameter before the Adam step.
  decay: f32,
  // lr / (1 − beta1^step).
  step_size: f32,
  // 1 / sqrt(1 − beta2^step).
  inv_sqrt_bc2: f32,
}

@group(0) @binding(0) var<storage, read_write> param: array<VT>;
@group(0) @binding(1) var<storage, read> grad: array<VT>;
@group(0) @binding(2) var<storage, read_write> m1: array<VT>;
@group(0) @binding(3) var<storage, read_write> m2: array<VT>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let g = grad[i];
  let m = p.beta1 * m1[i] + (1.0 - p.beta1) * g;
  let v = p.beta2 * m2[i] + (1.0 - p.beta2) * g * g;
  m1[i] = m;
  m2[i] = v;
  let denom = sqrt(v) * p.inv_sqrt_bc2 + p.eps;
  param[i] = param[i] * p.decay - p.step_size * m / denom;
}
