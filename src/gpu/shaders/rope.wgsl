// Rotary position embedding, HF rotate-half convention (Llama, Qwen2): for each head of a
// [tokens, heads, headDim] row-major tensor, with x1 = the first half of the head and x2 the
// second, out1 = x1·cos − x2·sin and out2 = x2·cos + x1·sin, angle = pos · inv_freq[i]. The
// inverse rotation (sin → −sin) is the backward: the rotation matrix is orthogonal.
//
// Angles are computed exactly modulo one turn in fixed point, not as an f32 product: the table
// holds f_i = inv_freq[i] / 2π as a 64-bit binary fraction (hi, lo words, made in f64 on the
// CPU), and pos · f_i mod 1 is integer arithmetic that wraps mod 2^32. Only the fraction of a
// turn matters, so the angle reaches sin/cos already reduced to [−π, π) with ~2e-7 rad error at
// any position, where f32(pos) · f32(inv_freq) would be off by up to ~2e-3 rad at pos 32k.
//
// One invocation per (token, group of W frequencies), looping over heads so each sin/cos is
// computed once per token. V/VU/VI are vec4 types when headDim/2 is a multiple of 4, else
// scalars (W = 1).

struct Params {
  count: u32,     // tokens * groups
  groups: u32,    // (headDim / 2) / W
  heads: u32,
  sign: f32,      // +1 rotates, −1 applies the inverse rotation
}

alias V = {{VT}};
alias VU = {{UT}};
alias VI = {{IT}};
const WG: u32 = 64u;
const RADIANS_PER_UNIT: f32 = 6.283185307179586 / 4294967296.0;

@group(1) @binding(0) var<uniform> p: Params;

// High 32 bits of the 64-bit product a · b, from 16-bit halves (WGSL has no wide multiply).
fn mulhi(a: VU, b: VU) -> VU {
  let m = VU(0xffffu);
  let s = VU(16u);
  let al = a & m;
  let ah = a >> s;
  let bl = b & m;
  let bh = b >> s;
  let lh = al * bh;
  let hl = ah * bl;
  let mid = ((al * bl) >> s) + (lh & m) + (hl & m);
  return ah * bh + (lh >> s) + (hl >> s) + (mid >> s);
}

// The angle pos · 2π · (hi + lo·2^-32)·2^-32, reduced to [−π, π).
fn angle(pos: u32, hi: VU, lo: VU) -> V {
  let pv = VU(pos);
  let turns = pv * hi + mulhi(pv, lo);
  return V(bitcast<VI>(turns)) * RADIANS_PER_UNIT;
}

fn task(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

// ---- out of place: x, positions, freqs -> out ----
@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> freqs: array<VU>;   // hi words, then lo words
@group(0) @binding(3) var<storage, read_write> out: array<V>;

@compute @workgroup_size(WG)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = task(gid, nwg);
  if (i >= p.count) {
    return;
  }
  let t = i / p.groups;
  let q = i % p.groups;
  let a = angle(positions[t], freqs[q], freqs[p.groups + q]);
  let c = cos(a);
  let s = sin(a) * p.sign;
  let head = 2u * p.groups;
  for (var h = 0u; h < p.heads; h++) {
    let k = (t * p.heads + h) * head + q;
    let x1 = x[k];
    let x2 = x[k + p.groups];
    out[k] = x1 * c - x2 * s;
    out[k + p.groups] = x2 * c + x1 * s;
  }
}

// ---- in place: xio, positions, freqs (same bindings 1 and 2) ----
@group(0) @binding(0) var<storage, read_write> xio: array<V>;

@compute @workgroup_size(WG)
fn rope_inplace(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = task(gid, nwg);
  if (i >= p.count) {
    return;
  }
  let t = i / p.groups;
  let q = i % p.groups;
  let a = angle(positions[t], freqs[q], freqs[p.groups + q]);
  let c = cos(a);
  let s = sin(a) * p.sign;
  let head = 2u * p.groups;
  for (var h = 0u; h < p.heads; h++) {
    let k = (t * p.heads + h) * head + q;
    let x1 = xio[k];
    let x2 = xio[k + p.groups];
    xio[k] = x1 * c - x2 * s;
    xio[k + p.groups] = x2 * c + x1 * s;
  }
}
