// Elementwise arithmetic on flat f32 tensors: residual add, gradient accumulation
// (acc += alpha * x), product, scale and fill.
//
// The launcher builds this module twice: V = vec4<f32> for the bulk of a tensor (one storage
// access moves four floats, which is what bandwidth costs on lavapipe and real GPUs alike), and
// V = f32 for the 1-3 element tail of sizes that are not a multiple of 4. `n` and `offset` count
// elements of V. In-place entry points bind the destination once as read_write, because WebGPU
// forbids binding one buffer both read-only and writable in a dispatch.

struct Params { n: u32, offset: u32, alpha: f32 }

alias V = {{VT}};
const WG: u32 = 256u;

@group(1) @binding(0) var<uniform> p: Params;

// Out-of-place entry points: two inputs, one output.
@group(0) @binding(0) var<storage, read> a: array<V>;
@group(0) @binding(1) var<storage, read> b: array<V>;
@group(0) @binding(2) var<storage, read_write> out: array<V>;

// In-place entry points: the destination is also the first operand.
@group(0) @binding(0) var<storage, read_write> acc: array<V>;
@group(0) @binding(1) var<storage, read> x: array<V>;

// Single-operand out-of-place entry points (scale).
@group(0) @binding(1) var<storage, read_write> out1: array<V>;

fn element(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

// out = a + alpha * b
@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = element(gid, nwg);
  if (i < p.n) {
    let k = p.offset + i;
    out[k] = a[k] + p.alpha * b[k];
  }
}

// acc += alpha * x
@compute @workgroup_size(WG)
fn add_inplace(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = element(gid, nwg);
  if (i < p.n) {
    let k = p.offset + i;
    acc[k] = acc[k] + p.alpha * x[k];
  }
}

// out = a * b
@compute @workgroup_size(WG)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = element(gid, nwg);
  if (i < p.n) {
    let k = p.offset + i;
    out[k] = a[k] * b[k];
  }
}

// acc *= x
@compute @workgroup_size(WG)
fn mul_inplace(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = element(gid, nwg);
  if (i < p.n) {
    let k = p.offset + i;
    acc[k] = acc[k] * x[k];
  }
}

// out1 = alpha * a
@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = element(gid, nwg);
  if (i < p.n) {
    let k = p.offset + i;
    out1[k] = p.alpha * a[k];
  }
}

// acc *= alpha
@compute @workgroup_size(WG)
fn scale_inplace(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = element(gid, nwg);
  if (i < p.n) {
    let k = p.offset + i;
    acc[k] = p.alpha * acc[k];
  }
}

// acc = alpha
@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = element(gid, nwg);
  if (i < p.n) {
    acc[p.offset + i] = V(p.alpha);
  }
}
