// Small-M GEMV straight from int8/int4 weights (quant.wgsl's formats), for decode over a
// quantised frozen base: y[r, n] = alpha · Σ_k x[r, k] · W[n, k] (+ bias[n]) (+ y when
// accumulating) for r < MR (1..8 rows of x), W [N, K] stored packed with its scales (needs the
// `subgroups` feature).
//
// Why: without it a quantised layer is widened to an f32 matrix before every use (dequant_*:
// read 1 B, write 4 B per weight) and the f32 GEMV then reads 4 B per weight again, so int8
// decode moved ~9 B per weight where f16 moves 2. Here each packed word is read once and widened
// in registers: 4 weights per 32-bit load for int8, 8 for int4. On lavapipe a GEMV costs about one
// per-lane load per 32-bit word read (docs/kernels.md), so this is also the cheapest format there.
// Layout as gemv_sg.wgsl: every invocation owns RN consecutive rows of W and walks K in step with
// its subgroup; lane l of each group of 8 lanes loads row l of x and the others take it by
// subgroupShuffle; a subgroup narrower than 8 lanes loads x per lane instead.
// - gemv_q8: one scale per output row (int8), applied once to the finished dot product.
// - gemv_q4: one scale per INT4_GROUP = 32 columns of a row (4 words); the loop walks groups and
//   scales the widened weights of each word before the dot products.
// - gemv_q8_lanes / gemv_q4_lanes: the layout GPUs prefer (gemv.wgsl's gemv-l64): one workgroup
//   of LANES invocations per output row, consecutive lanes reading consecutive words (coalesced),
//   MR partial sums each, reduced through workgroup memory; x is loaded per lane (GPU caches
//   serve the repeats).
// Defines: MR, RN (rows per invocation; 1 for the lanes entries).

enable subgroups;
diagnostic(off, subgroup_uniformity);

struct Params {
  n: u32,
  // packed u32 words per row of W: K / 4 (int8) or K / 8 (int4)
  ldq: u32,
  ldx4: u32,
  ldy: u32,
  off_x4: u32,
  off_y: u32,
  alpha: f32,
  // bit 0: add bias[off_bias + n]; bit 1: add the existing y
  flags: u32,
  off_bias: u32,
}

const MR: u32 = {{MR}}u;
const RN: u32 = {{RN}}u;
const WG: u32 = 64u;
// int4 words per scale group (INT4_GROUP = 32 columns, 8 per word).
const Q4_WORDS: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> q: array<u32>;
// int8: [N]; int4: [N, K / 32]
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

// Sign-extends the four bytes of a word (as quant.wgsl's unpack_i8).
fn unpack_i8(word: u32) -> vec4<f32> {
  let v = bitcast<vec4<i32>>(vec4<u32>(word << 24u, word << 16u, word << 8u, word));
  return vec4<f32>(v >> vec4<u32>(24u));
}

// Sign-extends nibbles 0-3 (half 0) or 4-7 (half 1) of a word (as quant.wgsl's unpack_i4).
fn unpack_i4(word: u32, half: u32) -> vec4<f32> {
  let shifts = vec4<u32>(28u, 24u, 20u, 16u) - vec4<u32>(16u * half);
  let v = bitcast<vec4<i32>>(vec4<u32>(word) << shifts);
  return vec4<f32>(v >> vec4<u32>(28u));
}

// How this lane reaches the rows of x: `own` is the vec4 index of the row it loads when the
// subgroup shares (lane l of each group of 8 loads row l), `group` the first lane of its group.
// `loads` is false for lanes MR..7 of a group, whose row another lane already loads: a
// masked-off lane skips its load on lavapipe (batch-1 decode's x loads drop to one lane in 8).
struct Lanes {
  share_x: bool,
  loads: bool,
  group: u32,
  own: u32,
}

fn lanes(sid: u32, sg_size: u32) -> Lanes {
  let share_x = sg_size >= 8u;
  let loads = share_x && (MR >= 8u || (sid & 7u) < MR);
  return Lanes(share_x, loads, sid & ~7u, p.off_x4 + min(sid & 7u, MR - 1u) * p.ldx4);
}

// This lane's own x vec4 at index k (what the others shuffle from), or zero when it loads none.
fn x_mine(l: Lanes, k: u32) -> vec4<f32> {
  if (l.loads) {
    return x[l.own + k];
  }
  return vec4<f32>(0.0);
}

// Row r's x vec4 at index k: from the lane of this group of 8 that loaded it, or loaded here.
fn x_row(mine: vec4<f32>, l: Lanes, r: u32, k: u32) -> vec4<f32> {
  if (l.share_x) {
    return subgroupShuffle(mine, l.group + r);
  }
  return x[p.off_x4 + r * p.ldx4 + k];
}

// y[r, n] = alpha · sum (+ bias[n]) (+ y[r, n]), per the flags.
fn write_y(r: u32, n: u32, sum: f32) {
  let idx = p.off_y + r * p.ldy + n;
  var out = sum * p.alpha;
  if ((p.flags & 1u) != 0u) {
    out += bias[p.off_bias + n];
  }
  if ((p.flags & 2u) != 0u) {
    out += y[idx];
  }
  y[idx] = out;
}

fn store(acc: ptr<function, array<f32, MR * RN>>, n0: u32, row_scale: array<f32, RN>) {
  for (var j = 0u; j < RN; j++) {
    let n = n0 + j;
    if (n < p.n) {
      for (var r = 0u; r < MR; r++) {
        write_y(r, n, (*acc)[r * RN + j] * row_scale[j]);
      }
    }
  }
}

@compute @workgroup_size(WG, 1, 1)
fn gemv_q8(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(subgroup_invocation_id) sid: u32,
  @builtin(subgroup_size) sg_size: u32,
) {
  // No early return: every lane takes part in the shuffles; rows past N are clamped, not stored.
  let n0 = ((wid.x + wid.y * nwg.x) * WG + lid) * RN;
  var iq: array<u32, RN>;
  var row_scale: array<f32, RN>;
  for (var j = 0u; j < RN; j++) {
    let row = min(n0 + j, p.n - 1u);
    iq[j] = row * p.ldq;
    row_scale[j] = scales[row];
  }
  let ln = lanes(sid, sg_size);
  var acc: array<f32, MR * RN>;
  // One word holds columns 4k..4k+3: the same span as x's vec4 k.
  for (var k = 0u; k < p.ldq; k++) {
    var wv: array<vec4<f32>, RN>;
    for (var j = 0u; j < RN; j++) {
      wv[j] = unpack_i8(q[iq[j] + k]);
    }
    let mine = x_mine(ln, k);
    for (var r = 0u; r < MR; r++) {
      let xv = x_row(mine, ln, r, k);
      for (var j = 0u; j < RN; j++) {
        acc[r * RN + j] += dot(xv, wv[j]);
      }
    }
  }
  store(&acc, n0, row_scale);
}

@compute @workgroup_size(WG, 1, 1)
fn gemv_q4(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(subgroup_invocation_id) sid: u32,
  @builtin(subgroup_size) sg_size: u32,
) {
  let n0 = ((wid.x + wid.y * nwg.x) * WG + lid) * RN;
  var iq: array<u32, RN>;
  var is: array<u32, RN>;
  var ones: array<f32, RN>;
  let groups = p.ldq / Q4_WORDS;
  for (var j = 0u; j < RN; j++) {
    let row = min(n0 + j, p.n - 1u);
    iq[j] = row * p.ldq;
    is[j] = row * groups;
    ones[j] = 1.0;
  }
  let ln = lanes(sid, sg_size);
  var acc: array<f32, MR * RN>;
  for (var g = 0u; g < groups; g++) {
    var s: array<f32, RN>;
    for (var j = 0u; j < RN; j++) {
      s[j] = scales[is[j] + g];
    }
    for (var i = 0u; i < Q4_WORDS; i++) {
      // Word kw holds columns 8kw..8kw+7: x's vec4s 2kw and 2kw + 1.
      let kw = g * Q4_WORDS + i;
      var lo: array<vec4<f32>, RN>;
      var hi: array<vec4<f32>, RN>;
      for (var j = 0u; j < RN; j++) {
        let word = q[iq[j] + kw];
        lo[j] = unpack_i4(word, 0u) * s[j];
        hi[j] = unpack_i4(word, 1u) * s[j];
      }
      let mine_lo = x_mine(ln, 2u * kw);
      let mine_hi = x_mine(ln, 2u * kw + 1u);
      for (var r = 0u; r < MR; r++) {
        let x_lo = x_row(mine_lo, ln, r, 2u * kw);
        let x_hi = x_row(mine_hi, ln, r, 2u * kw + 1u);
        for (var j = 0u; j < RN; j++) {
          acc[r * RN + j] += dot(x_lo, lo[j]) + dot(x_hi, hi[j]);
        }
      }
    }
  }
  store(&acc, n0, ones);
}

const LANES: u32 = 64u;
var<workgroup> partial: array<f32, MR * LANES>;

// Sums each row's partial dot products over the workgroup's lanes (a tree through workgroup
// memory) and lane 0 stores row `row` of y, scaled by `row_scale`.
fn reduce_store(sums: array<f32, MR>, lane: u32, row: u32, row_scale: f32) {
  for (var r = 0u; r < MR; r++) {
    partial[r * LANES + lane] = sums[r];
  }
  workgroupBarrier();
  for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
    if (lane < stride) {
      for (var r = 0u; r < MR; r++) {
        partial[r * LANES + lane] += partial[r * LANES + lane + stride];
      }
    }
    workgroupBarrier();
  }
  if (lane == 0u && row < p.n) {
    for (var r = 0u; r < MR; r++) {
      write_y(r, row, partial[r * LANES] * row_scale);
    }
  }
}

@compute @workgroup_size(LANES, 1, 1)
fn gemv_q8_lanes(
  @builtin(local_invocation_index) lane: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  // Out-of-range rows still run (clamped) so every invocation reaches the barriers.
  let row = wid.x + wid.y * nwg.x;
  let n = min(row, p.n - 1u);
  var sums: array<f32, MR>;
  for (var k = lane; k < p.ldq; k += LANES) {
    let wv = unpack_i8(q[n * p.ldq + k]);
    for (var r = 0u; r < MR; r++) {
      sums[r] += dot(x[p.off_x4 + r * p.ldx4 + k], wv);
    }
  }
  reduce_store(sums, lane, row, scales[n]);
}

@compute @workgroup_size(LANES, 1, 1)
fn gemv_q4_lanes(
  @builtin(local_invocation_index) lane: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let row = wid.x + wid.y * nwg.x;
  let n = min(row, p.n - 1u);
  let groups = p.ldq / Q4_WORDS;
  var sums: array<f32, MR>;
  for (var k = lane; k < p.ldq; k += LANES) {
    let word = q[n * p.ldq + k];
    let s = scales[n * groups + k / Q4_WORDS];
    let lo = unpack_i4(word, 0u) * s;
    let hi = unpack_i4(word, 1u) * s;
    for (var r = 0u; r < MR; r++) {
      let xr = p.off_x4 + r * p.ldx4 + 2u * k;
      sums[r] += dot(x[xr], lo) + dot(x[xr + 1u], hi);
    }
  }
  reduce_store(sums, lane, row, 1.0);
}
