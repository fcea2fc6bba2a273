// Whole-model gradient reductions and in-place gradient scaling, all on the GPU so a training
// step never waits on a readback: global L2 norm² (for clipping and logging), the count of
// non-finite entries (to skip steps under loss scaling), and scaling by a constant, by a
// GPU-resident factor, or by the clip factor min(1, max_norm / (norm + 1e-6)).
//
// Reductions are two-level: every gradient tensor's dispatch writes one partial per workgroup
// into its slice of a shared partials buffer (`slot` is where its slice starts), and a single
// workgroup then sums all partials in a fixed order, so the result is deterministic.

alias VT = {{VT}};
alias UT = {{UT}};

const WG: u32 = 256u;
const ITEMS: u32 = {{ITEMS}}u;

struct Params {
  // Length in VT vectors (per-tensor entries) or number of partials (final sums).
  n: u32,
  // First partial slot of this tensor; workgroups in this dispatch (the grid may be padded).
  slot: u32,
  groups: u32,
  value: f32,
}

fn hsum(v: VT) -> f32 { return {{HSUM}}; }

@group(1) @binding(0) var<uniform> p: Params;

@group(0) @binding(0) var<storage, read> g_in: array<VT>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;

var<workgroup> red: array<f32, WG>;

// Sums `value` over the workgroup; the total is valid in red[0] after the call.
fn workgroup_sum(lid: u32, value: f32) {
  red[lid] = value;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { red[lid] += red[lid + stride]; }
    workgroupBarrier();
  }
}

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }

// Inf and NaN have an all-ones exponent; comparing bits survives fast-math compilers that
// would fold `x != x` away.
fn non_finite(v: VT) -> VT {
  return select(VT(0.0), VT(1.0), (bitcast<UT>(v) & UT(0x7f800000u)) == UT(0x7f800000u));
}

@compute @workgroup_size(WG)
fn sumsq_partials(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let group = group_index(wid, nwg);
  var acc = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let i = (group * ITEMS + k) * WG + lid;
    if (i < p.n) {
      let v = g_in[i];
      acc += hsum(v * v);
    }
  }
  workgroup_sum(lid, acc);
  if (lid == 0u && group < p.groups) { partials[p.slot + group] = red[0]; }
}

@compute @workgroup_size(WG)
fn nonfinite_partials(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let group = group_index(wid, nwg);
  var acc = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let i = (group * ITEMS + k) * WG + lid;
    if (i < p.n) { acc += hsum(non_finite(g_in[i])); }
  }
  workgroup_sum(lid, acc);
  if (lid == 0u && group < p.groups) { partials[p.slot + group] = red[0]; }
}

@group(0) @binding(0) var<storage, read> sum_in: array<f32>;
@group(0) @binding(1) var<storage, read_write> sum_out: array<f32>;
@group(0) @binding(1) var<storage, read_write> count_out: array<u32>;

// One workgroup folds all partials; out[0] = their sum.
@compute @workgroup_size(WG)
fn sum_partials(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < p.n; i += WG) { acc += sum_in[i]; }
  workgroup_sum(lid, acc);
  if (lid == 0u) { sum_out[0] = red[0]; }
}

var<workgroup> count_acc: atomic<u32>;

// The same for counts: partials are exact integers (< 2^24 each), the total is summed in u32.
// Workgroup memory starts zeroed, so count_acc needs no reset.
@compute @workgroup_size(WG)
fn count_partials(@builtin(local_invocation_index) lid: u32) {
  var acc = 0u;
  for (var i = lid; i < p.n; i += WG) { acc += u32(sum_in[i]); }
  atomicAdd(&count_acc, acc);
  workgroupBarrier();
  if (lid == 0u) { count_out[0] = atomicLoad(&count_acc); }
}


@group(0) @binding(0) var<storage, read> norm_sq: array<f32>;
@group(0) @binding(1) var<storage, read_write> norm_out: array<f32>;

@compute @workgroup_size(1)
fn sqrt_norm() { norm_out[0] = sqrt(norm_sq[0]); }

@group(0) @binding(0) var<storage, read_write> g_io: array<VT>;
@group(0) @binding(1) var<storage, read> factor_in: array<f32>;

@compute @workgroup_size(WG)
fn scale_by_value(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < p.n) { g_io[i] *= p.value; }
}

// Multiplies by factor_in[0], a GPU-resident scale (e.g. 1 / loss_scale computed on the GPU).
@compute @workgroup_size(WG)
fn scale_by_tensor(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < p.n) { g_io[i] *= factor_in[0]; }
}

// factor_in[0] holds norm²; scales by min(1, max_norm / (norm + 1e-6)) (PyTorch clip_grad_norm_).
@compute @workgroup_size(WG)
fn clip_by_norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < p.n) { g_io[i] *= min(1.0, p.value / (sqrt(factor_in[0]) + 1e-6)); }
}
