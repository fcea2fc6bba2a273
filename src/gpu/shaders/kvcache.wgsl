// KV cache for serving: writing new tokens' k/v into per-slot caches, and attention of query
// rows over their slot's cached prefix (prefill and decode are the same kernel: row t sees
// cache[slot[t], 0 ..= pos[t]], or with a sliding window (`window` > 0) only its last `window`
// keys, pos[t] − window + 1 ..= pos[t], as transformers' `kv_idx > q_idx - sliding_window`).
//
// Long contexts are split across invocations (flash-decoding): each (row, head block, split) walks
// only `chunk` keys and leaves an unnormalised partial (o, running max m, sum l); a combine
// pass merges the splits with the usual logsumexp rescaling. With one split the partial pass is
// skipped and `cached_direct` writes normalised rows straight away.
//
// Layouts: q/out [T, H, D]; k/v [T, KV, D]; caches [slots, max_len, KV, D]; slot/pos u32 [T];
// part_o [T, H, splits, D]; part_ml [T, H, splits] as (m, l).
// Rows whose slot or pos is out of range are skipped by kv_write and read as zeros by attention
// (the launcher cannot see GPU-resident indices; the engine owns their validity).
//
// Defines: VT / HDV / HSUM / HPI as in attention.wgsl.

alias V = {{VT}};
const HDV: u32 = {{HDV}}u;
// Query heads per invocation (divides the GQA group size).
const HPI: u32 = {{HPI}}u;
const WG: u32 = 64u;
const NEG_BIG: f32 = -3.0e38;

fn vsum(v: V) -> f32 { return {{HSUM}}; }

struct Params {
  tokens: u32,
  n_heads: u32,
  n_kv: u32,
  group: u32,
  max_slots: u32,
  max_len: u32,
  chunk: u32,
  splits: u32,
  scale: f32,
  window: u32,   // 0: the whole cached prefix
}

@group(1) @binding(0) var<uniform> p: Params;

// kv_write bindings
@group(0) @binding(0) var<storage, read> new_k: array<V>;
@group(0) @binding(1) var<storage, read> new_v: array<V>;
@group(0) @binding(2) var<storage, read> w_slot: array<u32>;
@group(0) @binding(3) var<storage, read> w_pos: array<u32>;
@group(0) @binding(4) var<storage, read_write> w_kcache: array<V>;
@group(0) @binding(5) var<storage, read_write> w_vcache: array<V>;

// One invocation per (token, kv head, vector of the head dim).
@compute @workgroup_size(WG)
fn kv_write(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.tokens * p.n_kv * HDV) { return; }
  let t = idx / (p.n_kv * HDV);
  let rest = idx % (p.n_kv * HDV);
  let s = w_slot[t];
  let ps = w_pos[t];
  if (s >= p.max_slots || ps >= p.max_len) { return; }
  let dst = (s * p.max_len + ps) * p.n_kv * HDV + rest;
  w_kcache[dst] = new_k[idx];
  w_vcache[dst] = new_v[idx];
}

// Attention bindings
@group(0) @binding(0) var<storage, read> q: array<V>;
@group(0) @binding(1) var<storage, read> kcache: array<V>;
@group(0) @binding(2) var<storage, read> vcache: array<V>;
@group(0) @binding(3) var<storage, read> slot: array<u32>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<V>;
@group(0) @binding(5) var<storage, read_write> part_o: array<V>;
@group(0) @binding(6) var<storage, read_write> part_ml: array<vec2<f32>>;

// State of HPI query heads h0 .. h0+HPI−1 (one kv head's group, or part of it): each cached
// K/V row is loaded once for all of them, which is what decode time is made of.
var<private> q_rows: array<V, HPI * HDV>;
var<private> accs: array<V, HPI * HDV>;
var<private> k_vec: array<V, HDV>;
var<private> m: array<f32, HPI>;
var<private> l: array<f32, HPI>;

// Online softmax of rows (t, h0 ..< h0+HPI) over cached keys [lo, hi) of t's slot, into
// accs (unnormalised), m and l.
fn attend(t: u32, h0: u32, lo: u32, hi: u32) {
  let qb = (t * p.n_heads + h0) * HDV;
  for (var i = 0u; i < HPI * HDV; i++) {
    q_rows[i] = q[qb + i] * p.scale;
    accs[i] = V(0.0);
  }
  for (var g = 0u; g < HPI; g++) {
    m[g] = NEG_BIG;
    l[g] = 0.0;
  }
  var corr: array<f32, HPI>;
  var e: array<f32, HPI>;
  let kvh = h0 / p.group;
  let base = (slot[t] * p.max_len) * p.n_kv + kvh;
  for (var j = lo; j < hi; j++) {
    let kb = (base + j * p.n_kv) * HDV;
    for (var i = 0u; i < HDV; i++) { k_vec[i] = kcache[kb + i]; }
    for (var g = 0u; g < HPI; g++) {
      var s = 0.0;
      for (var i = 0u; i < HDV; i++) { s += vsum(q_rows[g * HDV + i] * k_vec[i]); }
      let m_new = max(m[g], s);
      corr[g] = exp(m[g] - m_new);
      e[g] = exp(s - m_new);
      l[g] = l[g] * corr[g] + e[g];
      m[g] = m_new;
    }
    for (var i = 0u; i < HDV; i++) {
      let vv = vcache[kb + i];
      for (var g = 0u; g < HPI; g++) { accs[g * HDV + i] = accs[g * HDV + i] * corr[g] + e[g] * vv; }
    }
  }
}

// Keys of row t: 0 ..= pos[t], or none when its slot/pos is out of range.
fn key_count(t: u32) -> u32 {
  if (slot[t] >= p.max_slots || pos[t] >= p.max_len) { return 0u; }
  return pos[t] + 1u;
}

// First key of row t: 0, or the window's start once pos[t] reaches past it.
fn key_first(t: u32) -> u32 {
  let n = key_count(t);
  if (p.window > 0u && n > p.window) { return n - p.window; }
  return 0u;
}

// Single split: one invocation per (row, head block) writes normalised outputs.
@compute @workgroup_size(WG)
fn cached_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  let blocks = p.n_heads / HPI;
  if (idx >= p.tokens * blocks) { return; }
  let t = idx / blocks;
  let h0 = (idx % blocks) * HPI;
  attend(t, h0, key_first(t), key_count(t));
  let ob = (t * p.n_heads + h0) * HDV;
  for (var g = 0u; g < HPI; g++) {
    let inv = select(0.0, 1.0 / l[g], l[g] > 0.0);
    for (var i = 0u; i < HDV; i++) { out[ob + g * HDV + i] = accs[g * HDV + i] * inv; }
  }
}

// Split pass: one invocation per (row, head block, split); head blocks fastest within a split.
@compute @workgroup_size(WG)
fn cached_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  let blocks = p.n_heads / HPI;
  if (idx >= p.tokens * blocks * p.splits) { return; }
  let row_block = idx % (p.tokens * blocks);
  let sp = idx / (p.tokens * blocks);
  let t = row_block / blocks;
  let h0 = (row_block % blocks) * HPI;
  let n = key_count(t);
  // Splits wholly before the window stay empty (l = 0), which the combine pass weighs as 0.
  let lo0 = min(sp * p.chunk, n);
  let hi = min(lo0 + p.chunk, n);
  let lo = min(max(lo0, key_first(t)), hi);
  attend(t, h0, lo, hi);
  for (var g = 0u; g < HPI; g++) {
    let dst = (t * p.n_heads + h0 + g) * p.splits + sp;
    for (var i = 0u; i < HDV; i++) { part_o[dst * HDV + i] = accs[g * HDV + i]; }
    part_ml[dst] = vec2<f32>(m[g], l[g]);
  }
}

// cached_combine bindings
@group(0) @binding(0) var<storage, read> c_part_o: array<V>;
@group(0) @binding(1) var<storage, read> c_part_ml: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> c_out: array<V>;

// Merges the splits of row (t, h) one vector of the head dim per invocation: empty splits carry
// l = 0 and m = NEG_BIG, so their weight exp(m − M) is exactly 0.
@compute @workgroup_size(WG)
fn cached_combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.tokens * p.n_heads * HDV) { return; }
  let row = idx / HDV;
  let i = idx % HDV;
  let b = row * p.splits;
  var m = NEG_BIG;
  for (var s = 0u; s < p.splits; s++) { m = max(m, c_part_ml[b + s].x); }
  var l = 0.0;
  var o = V(0.0);
  for (var s = 0u; s < p.splits; s++) {
    let w = exp(c_part_ml[b + s].x - m);
    l += w * c_part_ml[b + s].y;
    o += w * c_part_o[(b + s) * HDV + i];
  }
  c_out[idx] = o * select(0.0, 1.0 / l, l > 0.0);
}
