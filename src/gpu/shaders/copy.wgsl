// Plain memory movement: the bandwidth yardstick other kernels are measured against, and the
// runtime's smoke test. vec4 loads: on lavapipe every storage access costs per lane, so four
// floats per access is ~4x the bandwidth of scalar loads.

struct Params { n4: u32, value: f32 }

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn copy_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i < p.n4) { dst[i] = src[i]; }
}

// dst = src * value: a first kernel with a float parameter.
@compute @workgroup_size(256)
fn scale_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i < p.n4) { dst[i] = src[i] * p.value; }
}
