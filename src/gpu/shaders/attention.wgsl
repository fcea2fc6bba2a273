// Causal attention over packed variable-length sequences (training): forward with an online
// (flash-style) softmax that saves logsumexp, and the three backward passes (row statistics,
// dq per query row, dk/dv per key row). No float atomics exist in WGSL, so every invocation owns
// the output rows it writes.
//
// Layouts: q/out/dout [T, H, D], k/v [T, KV, D], lse [H, T], stats [H, T, 2] = (lse, rowsum(dO⊙O)).
// seq_start[t] is the first token of t's sequence; t attends keys seq_start[t] ..= t, and with a
// sliding window (`window` > 0, the keys a query sees, itself included, as transformers' mask
// `kv_idx > q_idx - sliding_window`) only the last `window` of them.
// Forward and dq: one invocation per (token, block of HPI query heads of one kv head), blocks
// fastest: the heads of one GQA group read the same K/V rows and run the same key loop, so
// neighbouring lanes share cache lines and do not diverge; with HPI > 1 one invocation loads
// each K/V row once for all its heads (what pays on lavapipe).
//
// Defines: VT = vec4<f32> or f32 (storage vector type, aliased V), HDV = head dim in V units,
// HSUM = the lanes of a V named v summed, HPI = query heads per invocation. Rows live in private arrays of HDV vectors (registers once the
// constant-bound loops unroll; lavapipe charges per storage load, so each row is loaded once).

alias V = {{VT}};
const HDV: u32 = {{HDV}}u;
// Query heads per invocation (divides the GQA group size).
const HPI: u32 = {{HPI}}u;
const WG: u32 = 64u;
// Finite stand-in for -inf: exp(NEG_BIG - s) underflows to exactly 0 for any finite score.
const NEG_BIG: f32 = -3.0e38;

fn vsum(v: V) -> f32 { return {{HSUM}}; }

struct Params {
  tokens: u32,
  n_heads: u32,
  n_kv: u32,
  group: u32,
  scale: f32,
  window: u32,   // 0: full causal attention
}

// First key query t attends: its sequence's start, or the window's when that is later.
fn first_key(t: u32, seq: u32) -> u32 {
  var s = min(seq, t);
  if (p.window > 0u && t + 1u > p.window) { s = max(s, t + 1u - p.window); }
  return s;
}

@group(1) @binding(0) var<uniform> p: Params;

// attn_fwd bindings
@group(0) @binding(0) var<storage, read> q: array<V>;
@group(0) @binding(1) var<storage, read> k: array<V>;
@group(0) @binding(2) var<storage, read> v: array<V>;
@group(0) @binding(3) var<storage, read> seq_start: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<V>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

// Forward state for HPI query heads at once: heads h0 .. h0+HPI−1 share one kv head, so each
// K/V row is loaded once for all of them (the dominant cost on lavapipe; on GPUs HPI = 1 keeps
// register pressure low).
var<private> q_rows: array<V, HPI * HDV>;
var<private> accs: array<V, HPI * HDV>;
var<private> k_vec: array<V, HDV>;

@compute @workgroup_size(WG)
fn attn_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  let blocks = p.n_heads / HPI;
  if (idx >= p.tokens * blocks) { return; }
  let t = idx / blocks;
  let h0 = (idx % blocks) * HPI;
  let kvh = h0 / p.group;
  let qb = (t * p.n_heads + h0) * HDV;
  // Fold the scale into q once instead of multiplying every score.
  for (var i = 0u; i < HPI * HDV; i++) {
    q_rows[i] = q[qb + i] * p.scale;
    accs[i] = V(0.0);
  }
  var m: array<f32, HPI>;
  var l: array<f32, HPI>;
  var corr: array<f32, HPI>;
  var e: array<f32, HPI>;
  for (var g = 0u; g < HPI; g++) {
    m[g] = NEG_BIG;
    l[g] = 0.0;
  }
  let start = first_key(t, seq_start[t]);
  for (var j = start; j <= t; j++) {
    let kb = (j * p.n_kv + kvh) * HDV;
    for (var i = 0u; i < HDV; i++) { k_vec[i] = k[kb + i]; }
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
      let vv = v[kb + i];
      for (var g = 0u; g < HPI; g++) { accs[g * HDV + i] = accs[g * HDV + i] * corr[g] + e[g] * vv; }
    }
  }
  for (var g = 0u; g < HPI; g++) {
    let inv = 1.0 / l[g];
    for (var i = 0u; i < HDV; i++) { out[qb + g * HDV + i] = accs[g * HDV + i] * inv; }
    lse[(h0 + g) * p.tokens + t] = m[g] + log(l[g]);
  }
}

// attn_bwd_stats bindings: stats = (lse, D) with D = rowsum(dout ⊙ out), interleaved so the
// gradient passes read both with one binding (keeps them within 8 storage buffers).
@group(0) @binding(0) var<storage, read> st_dout: array<V>;
@group(0) @binding(1) var<storage, read> st_out: array<V>;
@group(0) @binding(2) var<storage, read> st_lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> st_stats: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn attn_bwd_stats(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.tokens * p.n_heads) { return; }
  let t = idx / p.n_heads;
  let h = idx % p.n_heads;
  let b = idx * HDV;
  var d = 0.0;
  for (var i = 0u; i < HDV; i++) { d += vsum(st_dout[b + i] * st_out[b + i]); }
  let r = h * p.tokens + t;
  st_stats[r] = vec2<f32>(st_lse[r], d);
}

// attn_bwd_dq / attn_bwd_dkdv bindings (q, k, v, seq_start as in the forward).
@group(0) @binding(4) var<storage, read> dout: array<V>;
@group(0) @binding(5) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> dq: array<V>;
@group(0) @binding(6) var<storage, read_write> dk: array<V>;
@group(0) @binding(7) var<storage, read_write> dv: array<V>;

var<private> do_rows: array<V, HPI * HDV>;
var<private> v_vec: array<V, HDV>;

// dq[t,h] = scale · Σ_j P_tj (dP_tj − D_t) k_j, with P_tj = exp(scale·q·k_j − lse_t), dP_tj = dO_t·v_j.
// Like the forward, HPI query heads of one kv head share each K/V row load.
@compute @workgroup_size(WG)
fn attn_bwd_dq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  let blocks = p.n_heads / HPI;
  if (idx >= p.tokens * blocks) { return; }
  let t = idx / blocks;
  let h0 = (idx % blocks) * HPI;
  let kvh = h0 / p.group;
  let qb = (t * p.n_heads + h0) * HDV;
  for (var i = 0u; i < HPI * HDV; i++) {
    q_rows[i] = q[qb + i] * p.scale;
    do_rows[i] = dout[qb + i];
    accs[i] = V(0.0);
  }
  var sd: array<vec2<f32>, HPI>;
  var ds: array<f32, HPI>;
  for (var g = 0u; g < HPI; g++) { sd[g] = stats[(h0 + g) * p.tokens + t]; }
  let start = first_key(t, seq_start[t]);
  for (var j = start; j <= t; j++) {
    let kb = (j * p.n_kv + kvh) * HDV;
    for (var i = 0u; i < HDV; i++) {
      k_vec[i] = k[kb + i];
      v_vec[i] = v[kb + i];
    }
    for (var g = 0u; g < HPI; g++) {
      var s = 0.0;
      var dp = 0.0;
      for (var i = 0u; i < HDV; i++) {
        s += vsum(q_rows[g * HDV + i] * k_vec[i]);
        dp += vsum(do_rows[g * HDV + i] * v_vec[i]);
      }
      ds[g] = exp(s - sd[g].x) * (dp - sd[g].y);
    }
    for (var i = 0u; i < HDV; i++) {
      for (var g = 0u; g < HPI; g++) { accs[g * HDV + i] += ds[g] * k_vec[i]; }
    }
  }
  for (var i = 0u; i < HPI * HDV; i++) { dq[qb + i] = accs[i] * p.scale; }
}

var<private> k_row: array<V, HDV>;
var<private> v_row: array<V, HDV>;
var<private> dk_acc: array<V, HDV>;
var<private> dv_acc: array<V, HDV>;
var<private> q_vec: array<V, HDV>;
var<private> do_vec: array<V, HDV>;

// dk[j,g] = scale · Σ_{h∈g} Σ_t dS_tj q_t and dv[j,g] = Σ_{h∈g} Σ_t P_tj dO_t over the queries
// t ≥ j of j's sequence (and, with a window, t < j + window); one invocation per (key, kv head).
// Tokens of a sequence are contiguous, so the walk stops at the first t whose sequence starts
// after j or that lies past the window. (Several keys per invocation
// was measured: no faster on lavapipe, and 5–10× longer shader compiles.)
@compute @workgroup_size(WG)
fn attn_bwd_dkdv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.tokens * p.n_kv) { return; }
  let j = idx / p.n_kv;
  let kvh = idx % p.n_kv;
  let kb = idx * HDV;
  for (var i = 0u; i < HDV; i++) {
    k_row[i] = k[kb + i] * p.scale;
    v_row[i] = v[kb + i];
    dk_acc[i] = V(0.0);
    dv_acc[i] = V(0.0);
  }
  for (var t = j; t < p.tokens; t++) {
    if (seq_start[t] > j || (p.window > 0u && t - j >= p.window)) { break; }
    for (var hq = 0u; hq < p.group; hq++) {
      let h = kvh * p.group + hq;
      let qb = (t * p.n_heads + h) * HDV;
      var s = 0.0;
      var dp = 0.0;
      for (var i = 0u; i < HDV; i++) {
        q_vec[i] = q[qb + i];
        do_vec[i] = dout[qb + i];
        s += vsum(q_vec[i] * k_row[i]);
        dp += vsum(do_vec[i] * v_row[i]);
      }
      let sd = stats[h * p.tokens + t];
      let pr = exp(s - sd.x);
      let ds = pr * (dp - sd.y);
      for (var i = 0u; i < HDV; i++) {
        dk_acc[i] += ds * q_vec[i];
        dv_acc[i] += pr * do_vec[i];
      }
    }
  }
  for (var i = 0u; i < HDV; i++) {
    dk[kb + i] = dk_acc[i] * p.scale;
    dv[kb + i] = dv_acc[i];
  }
}
