// GEMV for decode: y[r, n] = alpha · Σ_k x[r, k] · W[n, k] (+ bias[n]) (+ y when accumulating)
// for r < MR (1..8 rows of x), W row-major [N, K] (HF linear weight). Bandwidth-bound: each
// output row n is a dot product over K, split over LANES invocations that stride through K in
// vec4s and keep MR partial sums in registers, then reduce through workgroup memory. ROWS
// outputs per workgroup; LANES × ROWS = 64 invocations.
// Defines: MR, K_LANES (= LANES), ROWS, B_TYPE (f32|f16 storage of W), ENABLE_F16.

{{ENABLE_F16}}

struct Params {
  n: u32,
  k4: u32,
  ldx4: u32,
  ldw4: u32,
  ldy: u32,
  off_x4: u32,
  off_w4: u32,
  off_y: u32,
  alpha: f32,
  // bit 0: add bias[off_bias + n]; bit 1: add the existing y
  flags: u32,
  off_bias: u32,
}

const MR: u32 = {{MR}}u;
const LANES: u32 = {{K_LANES}}u;
const ROWS: u32 = {{ROWS}}u;
alias BT = {{B_TYPE}};

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<BT>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

var<workgroup> partial: array<f32, MR * LANES * ROWS>;

@compute @workgroup_size(LANES * ROWS, 1, 1)
fn gemv(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let slot = lid / LANES;
  let lane = lid % LANES;
  let row = (wid.x + wid.y * nwg.x) * ROWS + slot;
  // Out-of-range rows still run (clamped) so every invocation reaches the barrier.
  let n = min(row, p.n - 1u);
  let w_row = p.off_w4 + n * p.ldw4;
  var acc: array<vec4<f32>, MR>;
  for (var k = lane; k < p.k4; k += LANES) {
    let wv = vec4<f32>(w[w_row + k]);
    for (var r = 0u; r < MR; r++) {
      acc[r] = fma(x[p.off_x4 + r * p.ldx4 + k], wv, acc[r]);
    }
  }
  var sums: array<f32, MR>;
  for (var r = 0u; r < MR; r++) {
    sums[r] = dot(acc[r], vec4<f32>(1.0));
  }
  if (LANES > 1u) {
    for (var r = 0u; r < MR; r++) {
      partial[(r * ROWS + slot) * LANES + lane] = sums[r];
    }
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
      if (lane < stride) {
        for (var r = 0u; r < MR; r++) {
          let i = (r * ROWS + slot) * LANES + lane;
          partial[i] += partial[i + stride];
        }
      }
      workgroupBarrier();
    }
    for (var r = 0u; r < MR; r++) {
      sums[r] = partial[(r * ROWS + slot) * LANES];
    }
  }
  if (lane == 0u && row < p.n) {
    for (var r = 0u; r < MR; r++) {
      let idx = p.off_y + r * p.ldy + row;
      var out = sums[r] * p.alpha;
      if ((p.flags & 1u) != 0u) {
        out += bias[p.off_bias + row];
      }
      if ((p.flags & 2u) != 0u) {
        out += y[idx];
      }
      y[idx] = out;
    }
  }
}
