// attention.wgsl's forward, dq and dk/dv passes with the rows every lane of a subgroup needs
// loaded once and shared by shuffle (needs the `subgroups` feature). Same contract, params,
// bindings and defines as attention.wgsl; attn_bwd_stats stays there.
//
// Why: on lavapipe a subgroup is one 8-lane SIMD register and every storage load costs per lane
// (docs/kernels.md), while a shuffle is a register permute. In attention.wgsl each invocation
// loads every K/V row of its key loop itself, although its neighbours need the same rows. Here
// the 8 lanes of a group handle 8 consecutive tokens of one head block (forward, dq) or 8
// consecutive keys of one kv head (dk/dv); at each step of a loop that is uniform over the group
// they need the same row, so lane l loads vectors l, l + 8, … of it and takes the rest by shuffle:
// HDV / 8 loads per lane per row instead of HDV. A lane whose token does not see the current key
// (causal mask, another sequence, the window, or past the end) skips the update but still
// shuffles. Lanes sid & ~7 .. +7 must be 8 consecutive invocations (checked at run time; a
// subgroup where that fails, or narrower than 8 lanes, loads per lane, as attention.wgsl does).

enable subgroups;
diagnostic(off, subgroup_uniformity);

alias V = {{VT}};
const HDV: u32 = {{HDV}}u;
const HPI: u32 = {{HPI}}u;
const WG: u32 = 64u;
// Vectors of a row each lane of a group loads (at most; lanes past the row's end load none).
const PER: u32 = (HDV + 7u) / 8u;
const NEG_BIG: f32 = -3.0e38;

fn vsum(v: V) -> f32 { return {{HSUM}}; }

struct Params {
  tokens: u32,
  n_heads: u32,
  n_kv: u32,
  group: u32,
  scale: f32,
  window: u32,
}

fn first_key(t: u32, seq: u32) -> u32 {
  var s = min(seq, t);
  if (p.window > 0u && t + 1u > p.window) { s = max(s, t + 1u - p.window); }
  return s;
}

@group(1) @binding(0) var<uniform> p: Params;

@group(0) @binding(0) var<storage, read> q: array<V>;
@group(0) @binding(1) var<storage, read> k: array<V>;
@group(0) @binding(2) var<storage, read> v: array<V>;
@group(0) @binding(3) var<storage, read> seq_start: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<V>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

// How a lane reaches a row all lanes of its group need: `share` when the group is 8 consecutive
// invocations of one subgroup, `group` its first lane, `lane` this lane's place in it.
struct Lanes {
  share: bool,
  group: u32,
  lane: u32,
}

fn lanes(lid: u32, sid: u32, sg_size: u32) -> Lanes {
  let group = sid & ~7u;
  let lane = sid & 7u;
  let share = sg_size >= 8u && subgroupAll(subgroupShuffle(lid, group) == (lid & ~7u) && lid % 8u == lane);
  return Lanes(share, group, lane);
}

// Tokens are padded to a multiple of 8 per head block, so every group of 8 lanes shares its block.
fn padded_tokens() -> u32 {
  return (p.tokens + 7u) / 8u * 8u;
}

var<private> k_vec: array<V, HDV>;
var<private> v_vec: array<V, HDV>;

// Loads key row `base` of k and v into k_vec / v_vec: shared across the group, or per lane.
fn load_kv(l: Lanes, base: u32) {
  if (l.share) {
    var mk: array<V, PER>;
    var mv: array<V, PER>;
    for (var r = 0u; r < PER; r++) {
      // A lane past the row's end loads nothing (a masked-off lane skips its load on lavapipe).
      if (l.lane + 8u * r < HDV) {
        mk[r] = k[base + l.lane + 8u * r];
        mv[r] = v[base + l.lane + 8u * r];
      }
    }
    for (var i = 0u; i < HDV; i++) {
      k_vec[i] = subgroupShuffle(mk[i / 8u], l.group + i % 8u);
      v_vec[i] = subgroupShuffle(mv[i / 8u], l.group + i % 8u);
    }
  } else {
    for (var i = 0u; i < HDV; i++) {
      k_vec[i] = k[base + i];
      v_vec[i] = v[base + i];
    }
  }
}

var<private> q_rows: array<V, HPI * HDV>;
var<private> accs: array<V, HPI * HDV>;

// The query an invocation of attn_fwd / attn_bwd_dq owns: token t, heads h0..h0+HPI-1 (sharing
// kv head kvh), its row qb in q, its first key, and the key range [lo, hi) its group walks (the
// union of its lanes' ranges, so every lane sees the same key at a step). Lanes past the end or
// in the padding are not valid: they compute on clamped indices, join every shuffle, store nothing.
struct QueryRow {
  valid: bool,
  t: u32,
  h0: u32,
  kvh: u32,
  qb: u32,
  start: u32,
  lo: u32,
  hi: u32,
}

fn query_row(gid: vec3<u32>, nwg: vec3<u32>) -> QueryRow {
  let idx = gid.x + gid.y * nwg.x * WG;
  let blocks = p.n_heads / HPI;
  let tp = padded_tokens();
  let valid = idx < tp * blocks && idx % tp < p.tokens;
  let t = min(idx % tp, p.tokens - 1u);
  let h0 = min(idx / tp, blocks - 1u) * HPI;
  let start = first_key(t, seq_start[t]);
  let lo = subgroupMin(select(0xffffffffu, start, valid));
  let hi = subgroupMax(select(0u, t + 1u, valid));
  return QueryRow(valid, t, h0, h0 / p.group, (t * p.n_heads + h0) * HDV, start, lo, hi);
}

// One invocation per (token, block of HPI query heads), tokens fastest within a block.
@compute @workgroup_size(WG)
fn attn_fwd(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_invocation_id) sid: u32,
  @builtin(subgroup_size) sg_size: u32,
) {
  let l = lanes(lid, sid, sg_size);
  // No early return: every lane takes part in the shuffles.
  let r = query_row(gid, nwg);
  for (var i = 0u; i < HPI * HDV; i++) {
    q_rows[i] = q[r.qb + i] * p.scale;
    accs[i] = V(0.0);
  }
  var m: array<f32, HPI>;
  var lsum: array<f32, HPI>;
  for (var g = 0u; g < HPI; g++) {
    m[g] = NEG_BIG;
    lsum[g] = 0.0;
  }
  for (var j = r.lo; j < r.hi; j++) {
    load_kv(l, (j * p.n_kv + r.kvh) * HDV);
    if (r.valid && j >= r.start && j <= r.t) {
      var corr: array<f32, HPI>;
      var e: array<f32, HPI>;
      for (var g = 0u; g < HPI; g++) {
        var s = 0.0;
        for (var i = 0u; i < HDV; i++) { s += vsum(q_rows[g * HDV + i] * k_vec[i]); }
        let m_new = max(m[g], s);
        corr[g] = exp(m[g] - m_new);
        e[g] = exp(s - m_new);
        lsum[g] = lsum[g] * corr[g] + e[g];
        m[g] = m_new;
      }
      for (var i = 0u; i < HDV; i++) {
        for (var g = 0u; g < HPI; g++) { accs[g * HDV + i] = accs[g * HDV + i] * corr[g] + e[g] * v_vec[i]; }
      }
    }
  }
  if (r.valid) {
    for (var g = 0u; g < HPI; g++) {
      let inv = 1.0 / lsum[g];
      for (var i = 0u; i < HDV; i++) { out[r.qb + g * HDV + i] = accs[g * HDV + i] * inv; }
      lse[(r.h0 + g) * p.tokens + r.t] = m[g] + log(lsum[g]);
    }
  }
}

@group(0) @binding(4) var<storage, read> dout: array<V>;
@group(0) @binding(5) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> dq: array<V>;
@group(0) @binding(6) var<storage, read_write> dk: array<V>;
@group(0) @binding(7) var<storage, read_write> dv: array<V>;

var<private> do_rows: array<V, HPI * HDV>;

// dq as attention.wgsl's attn_bwd_dq, with the K/V rows shared like the forward's.
@compute @workgroup_size(WG)
fn attn_bwd_dq(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_invocation_id) sid: u32,
  @builtin(subgroup_size) sg_size: u32,
) {
  let l = lanes(lid, sid, sg_size);
  let r = query_row(gid, nwg);
  for (var i = 0u; i < HPI * HDV; i++) {
    q_rows[i] = q[r.qb + i] * p.scale;
    do_rows[i] = dout[r.qb + i];
    accs[i] = V(0.0);
  }
  var sd: array<vec2<f32>, HPI>;
  for (var g = 0u; g < HPI; g++) { sd[g] = stats[(r.h0 + g) * p.tokens + r.t]; }
  for (var j = r.lo; j < r.hi; j++) {
    load_kv(l, (j * p.n_kv + r.kvh) * HDV);
    if (r.valid && j >= r.start && j <= r.t) {
      var ds: array<f32, HPI>;
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
  }
  if (r.valid) {
    for (var i = 0u; i < HPI * HDV; i++) { dq[r.qb + i] = accs[i] * p.scale; }
  }
}

var<private> k_row: array<V, HDV>;
var<private> v_row: array<V, HDV>;
var<private> dk_acc: array<V, HDV>;
var<private> dv_acc: array<V, HDV>;
var<private> q_vec: array<V, HDV>;
var<private> do_vec: array<V, HDV>;

// Loads query row `base` of q and dout into q_vec / do_vec: shared across the group, or per lane.
fn load_qdo(l: Lanes, base: u32) {
  if (l.share) {
    var mq: array<V, PER>;
    var md: array<V, PER>;
    for (var r = 0u; r < PER; r++) {
      if (l.lane + 8u * r < HDV) {
        mq[r] = q[base + l.lane + 8u * r];
        md[r] = dout[base + l.lane + 8u * r];
      }
    }
    for (var i = 0u; i < HDV; i++) {
      q_vec[i] = subgroupShuffle(mq[i / 8u], l.group + i % 8u);
      do_vec[i] = subgroupShuffle(md[i / 8u], l.group + i % 8u);
    }
  } else {
    for (var i = 0u; i < HDV; i++) {
      q_vec[i] = q[base + i];
      do_vec[i] = dout[base + i];
    }
  }
}

// dk/dv as attention.wgsl's attn_bwd_dkdv: one invocation per (key j, kv head), keys fastest
// within a kv head; the group walks queries t from its first key on and stops once no lane's key
// is seen any more (queries of a sequence are contiguous, so a lane that stops never resumes).
@compute @workgroup_size(WG)
fn attn_bwd_dkdv(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_invocation_id) sid: u32,
  @builtin(subgroup_size) sg_size: u32,
) {
  let l = lanes(lid, sid, sg_size);
  let idx = gid.x + gid.y * nwg.x * WG;
  let tp = padded_tokens();
  let valid = idx < tp * p.n_kv && idx % tp < p.tokens;
  let j = min(idx % tp, p.tokens - 1u);
  let kvh = min(idx / tp, p.n_kv - 1u);
  let kb = (j * p.n_kv + kvh) * HDV;
  for (var i = 0u; i < HDV; i++) {
    k_row[i] = k[kb + i] * p.scale;
    v_row[i] = v[kb + i];
    dk_acc[i] = V(0.0);
    dv_acc[i] = V(0.0);
  }
  var live = valid;
  var t = subgroupMin(select(0xffffffffu, j, valid));
  loop {
    // Uniform exit: every lane of the subgroup leaves together.
    if (!subgroupAny(live && t < p.tokens)) { break; }
    let tc = min(t, p.tokens - 1u);
    let seen = t >= j && t < p.tokens;
    if (seen && (seq_start[tc] > j || (p.window > 0u && t - j >= p.window))) { live = false; }
    let on = live && seen;
    for (var hq = 0u; hq < p.group; hq++) {
      let h = kvh * p.group + hq;
      load_qdo(l, (tc * p.n_heads + h) * HDV);
      if (on) {
        var s = 0.0;
        var dp = 0.0;
        for (var i = 0u; i < HDV; i++) {
          s += vsum(q_vec[i] * k_row[i]);
          dp += vsum(do_vec[i] * v_row[i]);
        }
        let sd = stats[h * p.tokens + tc];
        let pr = exp(s - sd.x);
        let ds = pr * (dp - sd.y);
        for (var i = 0u; i < HDV; i++) {
          dk_acc[i] += ds * q_vec[i];
          dv_acc[i] += pr * do_vec[i];
        }
      }
    }
    t++;
  }
  if (valid) {
    for (var i = 0u; i < HDV; i++) {
      dk[kb + i] = dk_acc[i] * p.scale;
      dv[kb + i] = dv_acc[i];
    }
  }
}
