// Vocabulary-sized softmax statistics over row-major logits [rows, vocab], tempered (z = x / T):
// log-softmax, the logprob of a target token, entropy, and the backward passes of the latter two.
//
// Two-level reduction, because one row (151936 floats for Qwen) is far more than a workgroup
// should hold and real GPUs need many workgroups per row:
//   1. `partials`: workgroup (tile, row) folds its tile into (m, s, t) where m = max z,
//      s = Σ exp(z − m) and t = Σ exp(z − m)·(z − m): each invocation keeps its ITEMS vectors
//      in registers (max first, then the sums), and the workgroup merges the triples;
//   2. `combine_*`: one invocation per row merges the tiles' triples, rescaling each to the
//      common max.
// Keeping t relative to the running max makes entropy H = log S − T/S free of the cancellation
// that `lse − E[z]` suffers for large-magnitude logits.
//
// VT is f32 or vec4<f32> (vec4 only when vocab % 4 == 0, so rows start on a vec4): lavapipe
// charges per storage access, so four floats per load matter. Each invocation handles ITEMS
// vectors of its tile, strided by the workgroup size so neighbouring lanes read neighbouring
// addresses (coalesced on real GPUs). WG × ITEMS is chosen per adapter kind by the launcher
// (lavapipe: 64 × 32, few barriers; real GPUs: 256 × 8, few registers).

alias VT = {{VT}};
alias UT = {{UT}};

const WG: u32 = {{WG}}u;
const ITEMS: u32 = {{ITEMS}}u;
const TILE_V: u32 = WG * ITEMS;
// Stands in for −inf (WGSL has no infinity literal): below every finite logit we meet.
const NEG_INF: f32 = -3.4e38;

override WITH_T: bool = true;
override ACCUMULATE: bool = false;

struct Params {
  rows: u32,
  // Row length in VT vectors (vocab / 4 for vec4).
  vocab_v: u32,
  // Partial triples per row in the partials buffer (its row stride).
  tiles: u32,
  inv_t: f32,
  // Vocabulary tiles of the LM head (src/gpu/kernels/lmhead.ts): the logits are one column block
  // [col0, col0 + vocab_v·W) of the full row, and its tiles' triples go to slots tile0, tile0+1, …
  tile0: u32,
  col0: u32,
}

fn hmax(v: VT) -> f32 { return {{HMAX}}; }
fn hsum(v: VT) -> f32 { return {{HSUM}}; }
// Column offsets of the lanes of one VT (0 for f32, 0..3 for vec4).
fn lanes() -> UT { return {{LANES}}; }

@group(1) @binding(0) var<uniform> p: Params;

// Entry points bind different sets; each declares its own names for bindings 0..n-1.
@group(0) @binding(0) var<storage, read> x: array<VT>;
@group(0) @binding(1) var<storage, read_write> part_out: array<vec4<f32>>;

// Merges two (m, s, t) triples onto their common max. A side with s == 0 (empty, or all −inf)
// contributes nothing; guarding it avoids (−inf)·0 = NaN.
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
  let m = max(a.x, b.x);
  var s = 0.0;
  var t = 0.0;
  if (a.y > 0.0) {
    let k = exp(a.x - m);
    s += a.y * k;
    t += k * (a.z + (a.x - m) * a.y);
  }
  if (b.y > 0.0) {
    let k = exp(b.x - m);
    s += b.y * k;
    t += k * (b.z + (b.x - m) * b.y);
  }
  return vec3<f32>(m, s, t);
}

var<workgroup> red: array<vec3<f32>, WG>;

@compute @workgroup_size(WG)
fn partials(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let tile = wid.x;
  let row = wid.y;
  let base = row * p.vocab_v;
  // Two sweeps over the invocation's ITEMS vectors, held in registers: the max first, then the
  // sums against it. Cheaper than online rescaling (no exp(m_old − m_new) per vector, no
  // branches), and the row is still read from memory once.
  var z: array<VT, ITEMS>;
  var zmax = VT(NEG_INF);
  for (var k = 0u; k < ITEMS; k++) {
    let col = tile * TILE_V + k * WG + lid;
    z[k] = select(VT(NEG_INF), x[base + min(col, p.vocab_v - 1u)] * p.inv_t, col < p.vocab_v);
    zmax = max(zmax, z[k]);
  }
  let m = hmax(zmax);
  var sv = VT(0.0);
  var tv = VT(0.0);
  if (m > NEG_INF) {
    for (var k = 0u; k < ITEMS; k++) {
      let d = z[k] - m;
      let e = exp(d);
      sv += e;
      // −inf logits (and padding) have e == 0 and must not add 0·(−inf).
      if (WITH_T) { tv += select(e * d, VT(0.0), e == VT(0.0)); }
    }
  }
  let s = hsum(sv);
  let t = hsum(tv);
  red[lid] = vec3<f32>(m, s, t);
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { red[lid] = merge(red[lid], red[lid + stride]); }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let r = red[0];
    part_out[row * p.tiles + p.tile0 + tile] = vec4<f32>(r, 0.0);
  }
}

// Folds one row's tile partials: returns (max, S, T) with S, T relative to the row max.
fn fold_row(row: u32) -> vec3<f32> {
  var acc = vec3<f32>(NEG_INF, 0.0, 0.0);
  for (var j = 0u; j < p.tiles; j++) { acc = merge(acc, part_in[row * p.tiles + j].xyz); }
  return acc;
}

@group(0) @binding(0) var<storage, read> part_in: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> x_scalar: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> logprob_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse_out: array<f32>;

// logprob[row] = z[target] − lse, lse = m + log S.
@compute @workgroup_size(64)
fn combine_token(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  if (row >= p.rows) { return; }
  let r = fold_row(row);
  let lse = r.x + log(r.y);
  let vocab = p.vocab_v * {{W}}u;
  lse_out[row] = lse;
  logprob_out[row] = x_scalar[row * vocab + targets[row]] * p.inv_t - lse;
}

// LM head by vocabulary blocks: each block's logit of the row's target, if the target is in it
// (tempered). Blocks cover the vocabulary exactly once, so exactly one block writes each row.
@group(0) @binding(0) var<storage, read> blk_logits: array<f32>;
@group(0) @binding(1) var<storage, read> blk_targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> blk_target_z: array<f32>;

@compute @workgroup_size(64)
fn gather_target(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  if (row >= p.rows) { return; }
  let width = p.vocab_v * {{W}}u;
  let t = blk_targets[row];
  if (t >= p.col0 && t - p.col0 < width) {
    blk_target_z[row] = blk_logits[row * width + (t - p.col0)] * p.inv_t;
  }
}

// After every block's partials and target logit: logprob = z[target] − lse, lse, and entropy
// per row (x_scalar holds the gathered target logits here, one per row).
@compute @workgroup_size(64)
fn combine_head(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  if (row >= p.rows) { return; }
  let r = fold_row(row);
  let lse = r.x + log(r.y);
  lse_out[row] = lse;
  logprob_out[row] = x_scalar[row] - lse;
  stats_entropy[row] = log(r.y) - r.z / r.y;
}

@group(0) @binding(1) var<storage, read_write> stats_lse: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats_entropy: array<f32>;

// lse and entropy H = −Σ p log p = log S − T/S per row.
@compute @workgroup_size(64)
fn combine_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  if (row >= p.rows) { return; }
  let r = fold_row(row);
  stats_lse[row] = r.x + log(r.y);
  stats_entropy[row] = log(r.y) - r.z / r.y;
}

@group(0) @binding(1) var<storage, read> row_lse: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<VT>;

// y = z − lse.
@compute @workgroup_size(WG)
fn log_softmax_out(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.y;
  let lse = row_lse[row];
  for (var k = 0u; k < ITEMS; k++) {
    let col = wid.x * TILE_V + k * WG + lid;
    if (col < p.vocab_v) {
      let i = row * p.vocab_v + col;
      y[i] = x[i] * p.inv_t - lse;
    }
  }
}

@group(0) @binding(1) var<storage, read> bw_targets: array<u32>;
@group(0) @binding(2) var<storage, read> bw_lse: array<f32>;
@group(0) @binding(3) var<storage, read> bw_dlp: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<VT>;

// d logprob / d x_i = (onehot(target)_i − softmax(z)_i) / T, times the incoming gradient.
@compute @workgroup_size(WG)
fn token_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.y;
  let lse = bw_lse[row];
  let g = bw_dlp[row] * p.inv_t;
  let target_v = UT(bw_targets[row]);
  for (var k = 0u; k < ITEMS; k++) {
    let col = wid.x * TILE_V + k * WG + lid;
    if (col < p.vocab_v) {
      let i = row * p.vocab_v + col;
      let cols = UT(p.col0 + col * {{W}}u) + lanes();
      let onehot = select(VT(0.0), VT(1.0), cols == target_v);
      var d = (onehot - exp(x[i] * p.inv_t - lse)) * g;
      if (ACCUMULATE) { d += dx[i]; }
      dx[i] = d;
    }
  }
}

@group(0) @binding(1) var<storage, read> ent_lse: array<f32>;
@group(0) @binding(2) var<storage, read> ent_h: array<f32>;
@group(0) @binding(3) var<storage, read> ent_grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> ent_dx: array<VT>;

// H = −Σ p_j log p_j with log p_j = z_j − lse. ∂H/∂z_i = −p_i (log p_i + H), so
// ∂H/∂x_i = −p_i (log p_i + H) / T. Terms with p_i == 0 (−inf logits) are exactly 0.
@compute @workgroup_size(WG)
fn entropy_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.y;
  let lse = ent_lse[row];
  let h = ent_h[row];
  let g = ent_grad[row] * p.inv_t;
  for (var k = 0u; k < ITEMS; k++) {
    let col = wid.x * TILE_V + k * WG + lid;
    if (col < p.vocab_v) {
      let i = row * p.vocab_v + col;
      let logp = x[i] * p.inv_t - lse;
      let prob = exp(logp);
      var d = select(-prob * (logp + h) * g, VT(0.0), prob == VT(0.0));
      if (ACCUMULATE) { d += ent_dx[i]; }
      ent_dx[i] = d;
    }
  }
}
