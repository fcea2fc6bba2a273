// Small-M GEMV for batched decode, with the x rows shared across subgroup lanes (needs the
// `subgroups` feature): y[r, n] = alpha · Σ_k x[r, k] · W[n, k] (+ bias[n]) (+ y when accumulating)
// for r < MR (1..8 rows of x), W row-major [N, K] (HF linear weight). Same contract, params and
// bindings as gemv.wgsl.
//
// Why: gemv.wgsl's invocations all walk K in step, and each loads x[r, k..k+3] itself for every
// one of its MR rows. On lavapipe an invocation is one lane of an 8-wide SIMD register and every
// storage load costs per lane, so at MR = 8 a weight vec4 costs 1 + 8 loads and 8 decode rows
// cost ~6× one row although the weights are read once. Here lane l of each subgroup loads only
// row l of x (one load) and the other lanes receive the MR rows by shuffle (register permutes):
// 1 + RN loads per step for RN weight rows × MR x rows. Each invocation owns RN consecutive rows
// of W and keeps MR·RN scalar sums (dot products, not vec4 accumulators, to stay in registers).
// Lanes sharing must be in the same subgroup and walk K in step (they do: the loop is uniform);
// a subgroup narrower than 8 lanes loads x per lane instead. With MR < 8 rows, lanes MR..7 of a
// group load nothing (every row they could share is loaded by a lane below them).
// f16 weights are read as u32 pairs and widened with unpack2x16float: on lavapipe that is 2–5×
// faster than loading vec4<f16> (and it needs no shader-f16).
// Defines: MR, RN, W_ELEM and W_WIDEN (how W is stored and widened; see the launcher).

enable subgroups;
diagnostic(off, subgroup_uniformity);

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
const RN: u32 = {{RN}}u;
const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
// f32 W: one vec4<f32> per 4 weights; f16 W: the same buffer seen as vec2<u32> per 4 weights.
@group(0) @binding(1) var<storage, read> w: array<{{W_ELEM}}>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

fn load_w(i: u32) -> vec4<f32> {
  let v = w[i];
  {{W_WIDEN}}
}

@compute @workgroup_size(WG, 1, 1)
fn gemv_sg(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(subgroup_invocation_id) sid: u32,
  @builtin(subgroup_size) sg_size: u32,
) {
  // No early return: every lane takes part in the shuffles; rows past N are clamped, not stored.
  let n0 = ((wid.x + wid.y * nwg.x) * WG + lid) * RN;
  var iw: array<u32, RN>;
  for (var j = 0u; j < RN; j++) {
    iw[j] = p.off_w4 + min(n0 + j, p.n - 1u) * p.ldw4;
  }
  // Lane l of each group of 8 loads row min(l, MR - 1) of x.
  let share_x = sg_size >= 8u;
  let group = sid & ~7u;
  let own = p.off_x4 + min(sid & 7u, MR - 1u) * p.ldx4;
  // Only lanes 0 .. MR-1 of a group load (the others would load a duplicate row): a masked-off
  // lane skips its load on lavapipe, which halves batch-1 decode's time there.
  let loads_x = share_x && (MR >= 8u || (sid & 7u) < MR);
  var acc: array<f32, MR * RN>;
  for (var k = 0u; k < p.k4; k++) {
    var wv: array<vec4<f32>, RN>;
    for (var j = 0u; j < RN; j++) {
      wv[j] = load_w(iw[j] + k);
    }
    var mine = vec4<f32>(0.0);
    if (loads_x) {
      mine = x[own + k];
    }
    for (var r = 0u; r < MR; r++) {
      var xv: vec4<f32>;
      if (share_x) {
        xv = subgroupShuffle(mine, group + r);
      } else {
        xv = x[p.off_x4 + r * p.ldx4 + k];
      }
      for (var j = 0u; j < RN; j++) {
        acc[r * RN + j] += dot(xv, wv[j]);
      }
    }
  }
  for (var j = 0u; j < RN; j++) {
    let n = n0 + j;
    if (n < p.n) {
      for (var r = 0u; r < MR; r++) {
        let idx = p.off_y + r * p.ldy + n;
        var out = acc[r * RN + j] * p.alpha;
        if ((p.flags & 1u) != 0u) {
          out += bias[p.off_bias + n];
        }
        if ((p.flags & 2u) != 0u) {
          out += y[idx];
        }
        y[idx] = out;
      }
    }
  }
}
