{{SG_BEGIN}}enable subgroups;{{SG_END}}
// RMSNorm (Llama/Qwen): y = x * rsqrt(mean(x^2) + eps) * (weight + w_offset), over rows of a
// row-major [rows, dim] f32 matrix, with its backward (dx per row, dweight reduced over rows).
// w_offset is 0 for Llama/Qwen and 1 for Gemma, whose checkpoints store w with the norm scaling
// by (1 + w), computed in f32 as transformers' Gemma3RMSNorm does.
//
// One workgroup per row; each invocation strides over the row in units of V (vec4<f32> when dim
// is a multiple of 4, else f32) and the row sum goes through `block_sum`. Two builds of that:
// with the `subgroups` feature (SG_BEGIN/SG_END empty, PLAIN_BEGIN/PLAIN_END comment it out) a
// subgroupAdd plus one barrier; without it a tree in workgroup memory (log2(WG) barriers).
// The launcher fills VT (aliased V), HSUM (horizontal sum of a V named v), WG (a power of two) and those
// four comment markers. Rows beyond 65535 fold into the y dimension of the grid.

struct Params {
  rows: u32,
  cols: u32,         // row length in units of V
  inv_dim: f32,      // 1 / dim, dim in floats
  eps: f32,
  chunk_rows: u32,   // dweight: rows summed per invocation
  accumulate: u32,   // dweight: 1 adds into the existing values, 0 overwrites
  w_offset: f32,     // the norm scales by (weight + w_offset)
}

alias V = {{VT}};
const WG: u32 = {{WG}}u;

@group(1) @binding(0) var<uniform> p: Params;

var<workgroup> partials: array<f32, WG>;

fn hsum(v: V) -> f32 {
  return {{HSUM}};
}

{{SG_BEGIN}}
// Subgroup build. Every lane's slot gets its subgroup's sum; after the barrier, lane L adds the
// slots L, L+g, L+2g, ... and a second subgroupAdd totals them, which counts every subgroup's
// sum exactly g times (subgroups are full: WG is a multiple of the adapter's largest subgroup).
// This needs no assumption on how invocations map to subgroups. Called once per workgroup.
fn block_sum(v: f32, lid: u32) -> f32 {
  let s = subgroupAdd(v);
  let g = subgroupAdd(1u);
  let lane = subgroupExclusiveAdd(1u);
  partials[lid] = s;
  workgroupBarrier();
  var q = 0.0;
  for (var k = lane; k < WG; k += g) {
    q += partials[k];
  }
  return subgroupAdd(q) / f32(g);
}
{{SG_END}}

{{PLAIN_BEGIN}}
// Plain build: pairwise tree in workgroup memory. Called once per workgroup.
fn block_sum(v: f32, lid: u32) -> f32 {
  partials[lid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) {
      partials[lid] += partials[lid + stride];
    }
    workgroupBarrier();
  }
  return partials[0];
}
{{PLAIN_END}}

// ---- forward: x, weight -> y, rstd ----
@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> w: array<V>;
@group(0) @binding(2) var<storage, read_write> y: array<V>;
@group(0) @binding(3) var<storage, read_write> rstd_out: array<f32>;

@compute @workgroup_size(WG)
fn rmsnorm_forward(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return;
  }
  let base = row * p.cols;
  var ss = V(0.0);
  for (var i = lid; i < p.cols; i += WG) {
    let v = x[base + i];
    ss += v * v;
  }
  let r = inverseSqrt(block_sum(hsum(ss), lid) * p.inv_dim + p.eps);
  for (var i = lid; i < p.cols; i += WG) {
    y[base + i] = x[base + i] * r * (w[i] + p.w_offset);
  }
  if (lid == 0u) {
    rstd_out[row] = r;
  }
}

// ---- backward, input gradient: dy, x, weight, rstd -> dx ----
// dx = r * w' * dy - x * r^3 / dim * sum(dy * w' * x), w' = w + w_offset
@group(0) @binding(0) var<storage, read> dy: array<V>;
@group(0) @binding(1) var<storage, read> xb: array<V>;
@group(0) @binding(2) var<storage, read> wb: array<V>;
@group(0) @binding(3) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<V>;

@compute @workgroup_size(WG)
fn rmsnorm_backward_input(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return;
  }
  let base = row * p.cols;
  var s = V(0.0);
  for (var i = lid; i < p.cols; i += WG) {
    s += dy[base + i] * (wb[i] + p.w_offset) * xb[base + i];
  }
  let total = block_sum(hsum(s), lid);
  let r = rstd_in[row];
  let c = r * r * r * p.inv_dim * total;
  for (var i = lid; i < p.cols; i += WG) {
    dx[base + i] = r * (wb[i] + p.w_offset) * dy[base + i] - xb[base + i] * c;
  }
}

// ---- backward, weight gradient: dweight = sum over rows of dy * x * rstd (any w_offset) ----
// Stage 1: invocation (column c, chunk k) sums chunk_rows rows into part[k * cols + c]
// (or straight into dweight when there is one chunk). Stage 2 sums the chunks in order, so the
// result is deterministic without float atomics.
@group(0) @binding(0) var<storage, read> dyw: array<V>;
@group(0) @binding(1) var<storage, read> xw: array<V>;
@group(0) @binding(2) var<storage, read> rstd_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<V>;

@compute @workgroup_size(64)
fn rmsnorm_dweight(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let k = gid.y;
  if (c >= p.cols) {
    return;
  }
  let first = k * p.chunk_rows;
  let last = min(first + p.chunk_rows, p.rows);
  var acc = V(0.0);
  for (var row = first; row < last; row++) {
    let i = row * p.cols + c;
    acc += dyw[i] * xw[i] * rstd_w[row];
  }
  let o = k * p.cols + c;
  if (p.accumulate != 0u) {
    acc += part[o];
  }
  part[o] = acc;
}

@group(0) @binding(0) var<storage, read> chunks: array<V>;
@group(0) @binding(1) var<storage, read_write> dweight: array<V>;

// p.rows is the number of chunks here.
@compute @workgroup_size(64)
fn rmsnorm_dweight_sum(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.cols) {
    return;
  }
  var acc = V(0.0);
  for (var k = 0u; k < p.rows; k++) {
    acc += chunks[k * p.cols + c];
  }
  if (p.accumulate != 0u) {
    acc += dweight[c];
  }
  dweight[c] = acc;
}
