// Token sampling over vocabulary-sized rows, one workgroup per row, no sort.
//
// Per row: temperature T (0 = greedy argmax), top-k (0 = off), top-p (1 = off), and a seed and
// step counter. The uniform that picks the token is a counter-based hash of (seed, step) only, so
// a row samples the same token whatever batch it is in and whichever adapter runs it (up to f32
// rounding of exp on exact CDF boundaries).
//
// Algorithm (z = x / T; everything keyed on an order-preserving u32 of the raw logit):
//   1. max, argmax (lowest index on ties), min key, then S = Σ exp(z − zmax);
//   2. threshold search instead of a sort: the kept set is {key ≥ τ}. Count(τ) and Mass(τ) =
//      Σ_{key≥τ} exp(z − zmax) fall as τ grows, so the largest τ with Count(τ) ≥ k (top-k), then
//      the largest τ with Mass(τ) ≥ p·Mass(τ_k) (top-p over the renormalised top-k set, the
//      HF/vLLM order) is found by a 9-way search over the key range: each pass over the row
//      evaluates 8 candidate thresholds at once (two vec4 compares per element), shrinking the
//      bracket ≥ 9× — at most 11 passes for the full 32-bit key range, exact, no histogram
//      atomics. Ties at τ are all kept (top-k may keep more than k tokens when logits tie);
//   3. inverse CDF over the kept set with one uniform u: the row is split by invocation
//      (column c to invocation c mod WG), a sequential scan of the WG per-invocation masses
//      finds the invocation holding u·Mass, and that invocation walks its own columns;
//   4. logprob = z[token] − zmax − log S of the untruncated tempered distribution (T = 1 when
//      greedy), and optionally the N ≤ 20 most likely tokens: the same search with Count ≥ N,
//      then the ≥ τ_N elements gathered and sorted by (logprob desc, token asc).
// Constrained rows (structured output): a bit-packed mask per row (bit c of word c / 32 set =
// token c allowed) removes tokens before everything above — a masked column is treated like a
// column past the row's end, so max, S, top-k/top-p, the draw and the alternatives are all over
// the allowed set, and the logprob is the one under that masked distribution. For those rows the
// logprob under the unmasked distribution is also written (after the masked ones), because the
// trainer recomputes unmasked logprobs and needs the matching sampling-time value.
// Passes whose result does not depend on the order (max, sums, counts) read 4 columns per
// iteration. Cost on lavapipe (bench/kernels/vocab.ts, 151936 columns): ~0.4 ms/row greedy,
// ~0.7 ms plain temperature, ~4–5 ms with top-p, ~7 ms with top-k + top-p.

// Invocations per row: the launcher picks it from the vocabulary size alone (never the adapter),
// because element c belongs to invocation c mod WG and that order is part of the sampled token.
override WG: u32 = 256u;
const MAX_ALT: u32 = 20u;

struct Params {
  rows: u32,
  vocab: u32,
  top_n: u32,
  // 1 when vocab % 4 == 0: rows start on a vec4 and x4 may be used.
  aligned: u32,
  // u32 words per row of `mask` (ceil(vocab / 32)); 0 when no row of the call is masked.
  mask_words: u32,
}

// Must match ROW_PARAM_WORDS and the packing in src/gpu/kernels/sampling.ts.
struct RowParams {
  temperature: f32,
  top_k: u32,
  top_p: f32,
  seed: u32,
  step: u32,
  // 1: apply this row's mask.
  masked: u32,
  pad1: u32,
  pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> rp: array<RowParams>;
@group(0) @binding(2) var<storage, read_write> tokens_out: array<u32>;
@group(0) @binding(3) var<storage, read_write> logprobs_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> alt_tokens_out: array<u32>;
@group(0) @binding(5) var<storage, read_write> alt_logprobs_out: array<f32>;
// The same logits as x, viewed as vec4 (bound twice by the launcher).
@group(0) @binding(6) var<storage, read> x4: array<vec4<f32>>;
// Allowed-token bits, [rows, mask_words] (bound to the row table when no row is masked).
@group(0) @binding(7) var<storage, read> mask: array<u32>;
@group(1) @binding(0) var<uniform> p: Params;

var<workgroup> wk: array<u32, WG>;
var<workgroup> wi: array<u32, WG>;
var<workgroup> wm: array<u32, WG>;
var<workgroup> wf: array<f32, WG>;
var<workgroup> wprefix: array<f32, WG>;
// 8 counts + 8 masses per invocation for the threshold search: 16 KiB at WG = 256.
var<workgroup> w4: array<vec4<f32>, WG * 4u>;
var<workgroup> s_lo: u32;
var<workgroup> s_hi: u32;
var<workgroup> s_lo_mass: f32;
var<workgroup> s_target: f32;
var<workgroup> s_winner: u32;
var<workgroup> s_token: u32;
var<workgroup> alt_tok: array<u32, MAX_ALT>;
var<workgroup> alt_val: array<f32, MAX_ALT>;
// This row's mask: whether it applies, and its first word.
var<private> row_masked: bool;
var<private> mask_base: u32;
// Logprob of the unfilled alternative slots (fewer allowed tokens than top_n): the lowest f32.
const NO_LOGPROB: f32 = -3.4028234e38;

/** Order-preserving map f32 → u32: a < b as floats iff key(a) < key(b) (NaN aside). */
fn key_of(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn key4(v: vec4<f32>) -> vec4<u32> {
  let b = bitcast<vec4<u32>>(v);
  return select(b | vec4<u32>(0x80000000u), ~b, (b & vec4<u32>(0x80000000u)) != vec4<u32>(0u));
}

// Order-independent passes (max, sums, counts) read the row in chunks of 4 columns: one vec4 load
// where rows are vec4-aligned, and a quarter of the loop iterations (loops cost on lavapipe).
// Only the sampling walk keeps the element → invocation order c mod WG, which fixes the token.
fn chunks() -> u32 { return (p.vocab + 3u) / 4u; }

fn load_chunk(base: u32, chunk: u32) -> vec4<f32> {
  if (p.aligned == 1u) { return x4[base / 4u + chunk]; }
  let c = min(vec4<u32>(chunk * 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.vocab - 1u));
  return vec4<f32>(x[base + c.x], x[base + c.y], x[base + c.z], x[base + c.w]);
}

/** Whether each column of a chunk lies inside the row (the last chunk may be partial). */
fn chunk_in_row(chunk: u32) -> vec4<bool> {
  return vec4<u32>(chunk * 4u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.vocab);
}

/** Columns of a chunk that take part: inside the row and, on a masked row, allowed. */
fn chunk_valid(chunk: u32) -> vec4<bool> {
  let inside = chunk_in_row(chunk);
  if (!row_masked) { return inside; }
  // A chunk's 4 columns share one mask word (4 divides 32).
  let word = mask[mask_base + chunk / 8u];
  let bits = (vec4<u32>(word) >> ((vec4<u32>(chunk * 4u) + vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(31u))) & vec4<u32>(1u);
  return inside & (bits == vec4<u32>(1u));
}

/** Whether column c takes part (always, on an unmasked row). */
fn allowed(c: u32) -> bool {
  return !row_masked || ((mask[mask_base + c / 32u] >> (c & 31u)) & 1u) == 1u;
}

/** PCG hash (Jarzynski & Olano 2020, "Hash Functions for GPU Rendering"). */
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

/** Uniform in [0, 1) with 24 random bits, from (seed, step) alone. */
fn uniform01(seed: u32, step: u32) -> f32 {
  return f32(pcg(seed + pcg(step)) >> 8u) * (1.0 / 16777216.0);
}

fn sum_f(lid: u32, v: f32) -> f32 {
  wf[lid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { wf[lid] += wf[lid + stride]; }
    workgroupBarrier();
  }
  return workgroupUniformLoad(&wf[0]);
}

fn max_f(lid: u32, v: f32) -> f32 {
  wf[lid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { wf[lid] = max(wf[lid], wf[lid + stride]); }
    workgroupBarrier();
  }
  return workgroupUniformLoad(&wf[0]);
}

struct Search {
  tau: u32,
  // Mass(tau) relative to exp(zmax).
  mass: f32,
}

/**
 * Largest key τ in [lo, hi] with Count(τ) ≥ need (by_count) or Mass(τ) ≥ need, given that
 * τ = lo satisfies it and has mass lo_mass. Returns τ and, when searching by mass, Mass(τ)
 * (counting passes skip the exp, so their mass is meaningless).
 */
fn search(lid: u32, base: u32, xmax: f32, inv_t: f32, lo0: u32, hi0: u32, lo_mass: f32, by_count: bool, need: f32) -> Search {
  if (lid == 0u) {
    s_lo = lo0;
    s_hi = hi0;
    s_lo_mass = lo_mass;
  }
  loop {
    let lo = workgroupUniformLoad(&s_lo);
    let hi = workgroupUniformLoad(&s_hi);
    if (lo >= hi) { break; }
    let step = max((hi - lo) / 9u, 1u);
    let ca = min(vec4<u32>(lo) + step * vec4<u32>(1u, 2u, 3u, 4u), vec4<u32>(hi));
    let cb = min(vec4<u32>(lo) + step * vec4<u32>(5u, 6u, 7u, 8u), vec4<u32>(hi));
    var na = vec4<f32>(0.0);
    var nb = vec4<f32>(0.0);
    var ma = vec4<f32>(0.0);
    var mb = vec4<f32>(0.0);
    // Counting passes (top-k, top-N) skip the exp: the mass is then only known at the end.
    // Columns past the row get key 0, below every candidate (candidates are ≥ lo + 1).
    for (var ch = lid; ch < chunks(); ch += WG) {
      let v = load_chunk(base, ch);
      let k = select(vec4<u32>(0u), key4(v), chunk_valid(ch));
      if (by_count) {
        for (var q = 0u; q < 4u; q++) {
          na += select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(k[q]) >= ca);
          nb += select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(k[q]) >= cb);
        }
      } else {
        let e = exp((v - xmax) * inv_t);
        for (var q = 0u; q < 4u; q++) {
          let ga = vec4<u32>(k[q]) >= ca;
          let gb = vec4<u32>(k[q]) >= cb;
          na += select(vec4<f32>(0.0), vec4<f32>(1.0), ga);
          nb += select(vec4<f32>(0.0), vec4<f32>(1.0), gb);
          ma += select(vec4<f32>(0.0), vec4<f32>(e[q]), ga);
          mb += select(vec4<f32>(0.0), vec4<f32>(e[q]), gb);
        }
      }
    }
    w4[lid * 4u] = na;
    w4[lid * 4u + 1u] = nb;
    w4[lid * 4u + 2u] = ma;
    w4[lid * 4u + 3u] = mb;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
      if (lid < stride) {
        for (var q = 0u; q < 4u; q++) { w4[lid * 4u + q] += w4[(lid + stride) * 4u + q]; }
      }
      workgroupBarrier();
    }
    if (lid == 0u) {
      var cand = array<u32, 8>(ca.x, ca.y, ca.z, ca.w, cb.x, cb.y, cb.z, cb.w);
      var cnt = array<f32, 8>(w4[0].x, w4[0].y, w4[0].z, w4[0].w, w4[1].x, w4[1].y, w4[1].z, w4[1].w);
      var mass = array<f32, 8>(w4[2].x, w4[2].y, w4[2].z, w4[2].w, w4[3].x, w4[3].y, w4[3].z, w4[3].w);
      var new_lo = lo;
      var new_hi = hi;
      var new_mass = s_lo_mass;
      for (var j = 0u; j < 8u; j++) {
        let ok = select(mass[j] >= need, cnt[j] >= need, by_count);
        if (!ok) {
          new_hi = cand[j] - 1u;
          break;
        }
        new_lo = cand[j];
        new_mass = mass[j];
      }
      s_lo = new_lo;
      s_hi = new_hi;
      s_lo_mass = new_mass;
    }
  }
  return Search(workgroupUniformLoad(&s_lo), workgroupUniformLoad(&s_lo_mass));
}

/** Mass(τ) = Σ_{key ≥ τ} exp(z − zmax). */
fn mass_above(lid: u32, base: u32, xmax: f32, inv_t: f32, tau: u32) -> f32 {
  var mine = vec4<f32>(0.0);
  for (var ch = lid; ch < chunks(); ch += WG) {
    let v = load_chunk(base, ch);
    let keep = chunk_valid(ch) & (key4(v) >= vec4<u32>(tau));
    mine += select(vec4<f32>(0.0), exp((v - xmax) * inv_t), keep);
  }
  return sum_f(lid, dot(mine, vec4<f32>(1.0)));
}

@compute @workgroup_size(WG)
fn sample_rows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.x;
  let base = row * p.vocab;
  let rparams = rp[row];
  let greedy = rparams.temperature == 0.0;
  let inv_t = select(1.0 / rparams.temperature, 1.0, greedy);
  row_masked = p.mask_words > 0u && rparams.masked != 0u;
  mask_base = row * p.mask_words;

  // 1. max key with its lowest index, and the min key.
  var best_key = 0u;
  var best_idx = 0xffffffffu;
  var min_key = 0xffffffffu;
  for (var ch = lid; ch < chunks(); ch += WG) {
    let k = key4(load_chunk(base, ch));
    let valid = chunk_valid(ch);
    for (var q = 0u; q < 4u; q++) {
      // Columns rise within and across this invocation's chunks: strict > keeps the lowest.
      if (valid[q] && (k[q] > best_key || best_idx == 0xffffffffu)) {
        best_key = k[q];
        best_idx = ch * 4u + q;
      }
    }
    min_key = min(min_key, min(min(select(0xffffffffu, k.x, valid.x), select(0xffffffffu, k.y, valid.y)),
                               min(select(0xffffffffu, k.z, valid.z), select(0xffffffffu, k.w, valid.w))));
  }
  wk[lid] = best_key;
  wi[lid] = best_idx;
  wm[lid] = min_key;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      let k2 = wk[lid + stride];
      let i2 = wi[lid + stride];
      if (i2 != 0xffffffffu && (wi[lid] == 0xffffffffu || k2 > wk[lid] || (k2 == wk[lid] && i2 < wi[lid]))) {
        wk[lid] = k2;
        wi[lid] = i2;
      }
      wm[lid] = min(wm[lid], wm[lid + stride]);
    }
    workgroupBarrier();
  }
  let max_key = workgroupUniformLoad(&wk[0]);
  let argmax = workgroupUniformLoad(&wi[0]);
  let lowest_key = workgroupUniformLoad(&wm[0]);
  let xmax = x[base + argmax];

  // S = Σ exp(z − zmax) over the whole row: the untruncated normaliser for logprobs.
  var own = vec4<f32>(0.0);
  for (var ch = lid; ch < chunks(); ch += WG) {
    own += select(vec4<f32>(0.0), exp((load_chunk(base, ch) - xmax) * inv_t), chunk_valid(ch));
  }
  let total = sum_f(lid, dot(own, vec4<f32>(1.0)));
  let log_total = log(total);

  // 2. thresholds: τ_N for the top-N alternatives, then top-k, then top-p within the top-k set.
  // One call site in a loop over phases rather than three calls: Mesa inlines every call, and
  // each copy of the search's barrier-laden loop costs lavapipe seconds of LLVM compile time.
  var kept = Search(lowest_key, total);
  var top_tau = 0u;
  for (var phase = 0u; phase < 3u; phase++) {
    var enabled = false;
    var by_count = true;
    var need = 0.0;
    var lo = lowest_key;
    var lo_mass = total;
    if (phase == 0u) {
      enabled = p.top_n > 0u;
      need = f32(p.top_n);
    } else if (phase == 1u) {
      enabled = !greedy && rparams.top_k > 0u && rparams.top_k < p.vocab;
      need = f32(rparams.top_k);
    } else {
      enabled = !greedy && rparams.top_p < 1.0;
      by_count = false;
      need = rparams.top_p * kept.mass;
      lo = kept.tau;
      lo_mass = kept.mass;
    }
    if (enabled) {
      var found = search(lid, base, xmax, inv_t, lo, max_key, lo_mass, by_count, need);
      if (phase == 0u) {
        top_tau = found.tau;
      } else {
        if (by_count) { found.mass = mass_above(lid, base, xmax, inv_t, found.tau); }
        kept = found;
      }
    }
  }

  var token = argmax;
  if (!greedy) {

    // 3. inverse CDF over {key ≥ τ}, split by invocation in a fixed order.
    var mine = 0.0;
    for (var c = lid; c < p.vocab; c += WG) {
      let v = x[base + c];
      if (allowed(c) && key_of(v) >= kept.tau) { mine += exp((v - xmax) * inv_t); }
    }
    wf[lid] = mine;
    workgroupBarrier();
    if (lid == 0u) {
      var acc = 0.0;
      for (var t = 0u; t < WG; t++) {
        wprefix[t] = acc;
        acc += wf[t];
      }
      let goal = uniform01(rparams.seed, rparams.step) * acc;
      // The invocation whose [prefix, prefix + mass) holds the target; if rounding pushed the
      // target to the very end, the last invocation with any mass.
      var winner = 0xffffffffu;
      var last = 0u;
      for (var t = 0u; t < WG; t++) {
        if (wf[t] > 0.0) {
          last = t;
          if (winner == 0xffffffffu && goal < wprefix[t] + wf[t]) { winner = t; }
        }
      }
      s_winner = select(winner, last, winner == 0xffffffffu);
      s_target = goal;
    }
    workgroupBarrier();
    if (lid == s_winner) {
      var acc = wprefix[lid];
      var pick = 0xffffffffu;
      for (var c = lid; c < p.vocab; c += WG) {
        let v = x[base + c];
        if (allowed(c) && key_of(v) >= kept.tau) {
          acc += exp((v - xmax) * inv_t);
          pick = c;
          if (acc > s_target) { break; }
        }
      }
      s_token = pick;
    }
    token = workgroupUniformLoad(&s_token);
  }

  if (lid == 0u) {
    tokens_out[row] = token;
    logprobs_out[row] = (x[base + token] - xmax) * inv_t - log_total;
  }

  // The unmasked logprob of the token, after the rows' masked ones (calls with a mask only).
  if (p.mask_words > 0u) {
    var unmasked = (x[base + token] - xmax) * inv_t - log_total;
    if (rparams.masked != 0u) {
      var m = x[base];
      for (var ch = lid; ch < chunks(); ch += WG) {
        let v = select(vec4<f32>(x[base]), load_chunk(base, ch), chunk_in_row(ch));
        m = max(m, max(max(v.x, v.y), max(v.z, v.w)));
      }
      let umax = max_f(lid, m);
      var s = vec4<f32>(0.0);
      for (var ch = lid; ch < chunks(); ch += WG) {
        s += select(vec4<f32>(0.0), exp((load_chunk(base, ch) - umax) * inv_t), chunk_in_row(ch));
      }
      let utotal = sum_f(lid, dot(s, vec4<f32>(1.0)));
      unmasked = (x[base + token] - umax) * inv_t - log(utotal);
    }
    if (lid == 0u) { logprobs_out[p.rows + row] = unmasked; }
  }

  // 4. the N most likely tokens (untruncated distribution).
  if (p.top_n > 0u) {
    let top = Search(top_tau, 0.0);
    var n_gt = 0u;
    var n_eq = 0u;
    for (var c = lid; c < p.vocab; c += WG) {
      let k = key_of(x[base + c]);
      let ok = allowed(c);
      n_gt += select(0u, 1u, ok && k > top.tau);
      n_eq += select(0u, 1u, ok && k == top.tau);
    }
    wk[lid] = n_gt;
    wi[lid] = n_eq;
    workgroupBarrier();
    if (lid == 0u) {
      var gt = 0u;
      var eq = 0u;
      for (var t = 0u; t < WG; t++) {
        let a = wk[t];
        let b = wi[t];
        wk[t] = gt;
        wi[t] = eq;
        gt += a;
        eq += b;
      }
      s_lo = gt;
      // Slots no allowed token fills (a masked row with fewer than top_n allowed tokens).
      for (var i = 0u; i < MAX_ALT; i++) {
        alt_tok[i] = 0xffffffffu;
        alt_val[i] = NO_LOGPROB;
      }
    }
    workgroupBarrier();
    let n_above = s_lo;
    var slot_gt = wk[lid];
    var slot_eq = n_above + wi[lid];
    for (var c = lid; c < p.vocab; c += WG) {
      let v = x[base + c];
      let k = key_of(v);
      var slot = MAX_ALT;
      if (!allowed(c)) {
        slot = MAX_ALT;
      } else if (k > top.tau) {
        slot = slot_gt;
        slot_gt++;
      } else if (k == top.tau) {
        slot = slot_eq;
        slot_eq++;
      }
      if (slot < p.top_n) {
        alt_tok[slot] = c;
        alt_val[slot] = (v - xmax) * inv_t - log_total;
      }
    }
    workgroupBarrier();
    if (lid == 0u) {
      // Insertion sort of ≤ 20 entries: logprob descending, token ascending on ties.
      for (var i = 1u; i < p.top_n; i++) {
        let tk = alt_tok[i];
        let tv = alt_val[i];
        var j = i;
        while (j > 0u && (alt_val[j - 1u] < tv || (alt_val[j - 1u] == tv && alt_tok[j - 1u] > tk))) {
          alt_tok[j] = alt_tok[j - 1u];
          alt_val[j] = alt_val[j - 1u];
          j--;
        }
        alt_tok[j] = tk;
        alt_val[j] = tv;
      }
      for (var i = 0u; i < p.top_n; i++) {
        alt_tokens_out[row * p.top_n + i] = alt_tok[i];
        alt_logprobs_out[row * p.top_n + i] = alt_val[i];
      }
    }
  }
}
