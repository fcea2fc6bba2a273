// GEMM: C[z] = alpha · op(A[z]) · op(B[z]) (+ bias[n]) (+ C[z] when accumulating), row-major,
// op = optional transpose, batch index z = workgroup z (a batch stride of 0 broadcasts).
//
// Two families of entry points, chosen per adapter by measurement (src/gpu/autotune.ts):
// - matmul_reg4 / matmul_reg1: no workgroup memory. Each invocation owns a TM×TN register tile
//   of C and walks K four at a time, loading vec4s along whichever dimension of each operand is
//   contiguous (reg4) or scalars with bounds masks (reg1, for shapes that are not multiples of
//   4). On lavapipe every storage load costs per lane and workgroup memory is slow, so this wins.
// - matmul_wg: classic shared-memory tiling (BM×BK and BK×BN tiles staged by the workgroup);
//   what wins on real GPUs.
// Defines: TM, TN4 (TN/4), TRANS_A, TRANS_B, B_TYPE (f32|f16),
// ENABLE_F16 (the f16 enable directive, or empty). A, bias and C are always f32; B may be f16, widened
// to f32 on load, accumulation always f32.

{{ENABLE_F16}}

struct Params {
  m: u32,
  n: u32,
  k: u32,
  lda: u32,
  ldb: u32,
  ldc: u32,
  off_a: u32,
  off_b: u32,
  off_c: u32,
  batch_a: u32,
  batch_b: u32,
  batch_c: u32,
  alpha: f32,
  // bit 0: add bias[off_bias + n]; bit 1: add the existing C
  flags: u32,
  off_bias: u32,
}

const TM: u32 = {{TM}}u;
const TN4: u32 = {{TN4}}u;
const TN: u32 = TN4 * 4u;
const TRANS_A: bool = {{TRANS_A}};
const TRANS_B: bool = {{TRANS_B}};
alias BT = {{B_TYPE}};

// The same bindings seen as vec4s or scalars: an entry point only uses one view of each, which
// WGSL allows (a binding may be declared twice if no entry point uses both).
@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(0) var<storage, read> a1: array<f32>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<BT>>;
@group(0) @binding(1) var<storage, read> b1: array<BT>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

// ---- operand tiles for one step of 4 along K ----
// A tile: at[i] = A[m0 + i, k .. k+3]. B tile: bt[kk * TN4 + j] = B[k + kk, n0 + 4j .. n0 + 4j + 3].

// Scalar element loads for any shape: rows/columns clamped, k beyond K reads as 0.
fn a_at(base: u32, m: u32, k: u32) -> f32 {
  let mc = min(m, p.m - 1u);
  let kc = min(k, p.k - 1u);
  var idx = base + mc * p.lda + kc;
  if (TRANS_A) {
    idx = base + kc * p.lda + mc;
  }
  return select(0.0, a1[idx], k < p.k);
}

fn b_at(base: u32, k: u32, n: u32) -> f32 {
  let nc = min(n, p.n - 1u);
  let kc = min(k, p.k - 1u);
  var idx = base + kc * p.ldb + nc;
  if (TRANS_B) {
    idx = base + nc * p.ldb + kc;
  }
  return select(0.0, f32(b1[idx]), k < p.k);
}

fn load_a_scalar(base: u32, m0: u32, k: u32) -> array<vec4<f32>, TM> {
  var t: array<vec4<f32>, TM>;
  for (var i = 0u; i < TM; i++) {
    t[i] = vec4<f32>(a_at(base, m0 + i, k), a_at(base, m0 + i, k + 1u), a_at(base, m0 + i, k + 2u),
                     a_at(base, m0 + i, k + 3u));
  }
  return t;
}

fn load_b_scalar(base: u32, n0: u32, k: u32) -> array<vec4<f32>, 4u * TN4> {
  var t: array<vec4<f32>, 4u * TN4>;
  for (var kk = 0u; kk < 4u; kk++) {
    for (var j = 0u; j < TN4; j++) {
      let n = n0 + 4u * j;
      t[kk * TN4 + j] = vec4<f32>(b_at(base, k + kk, n), b_at(base, k + kk, n + 1u), b_at(base, k + kk, n + 2u),
                                  b_at(base, k + kk, n + 3u));
    }
  }
  return t;
}

// Writes alpha·acc (+ bias) (+ old C) for the in-range part of the tile at (m0, n0).
fn store_tile(z: u32, m0: u32, n0: u32, acc: ptr<function, array<vec4<f32>, TM * TN4>>) {
  let base_c = p.off_c + z * p.batch_c;
  for (var i = 0u; i < TM; i++) {
    let m = m0 + i;
    if (m >= p.m) {
      break;
    }
    for (var j = 0u; j < TN4; j++) {
      let v = (*acc)[i * TN4 + j] * p.alpha;
      for (var e = 0u; e < 4u; e++) {
        let n = n0 + 4u * j + e;
        if (n < p.n) {
          let idx = base_c + m * p.ldc + n;
          var out = v[e];
          if ((p.flags & 1u) != 0u) {
            out += bias[p.off_bias + n];
          }
          if ((p.flags & 2u) != 0u) {
            out += c[idx];
          }
          c[idx] = out;
        }
      }
    }
  }
}

// Register tiles with scalar loads: any shape.
@compute @workgroup_size(8, 8, 1)
fn matmul_reg1(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n0 = gid.x * TN;
  let m0 = gid.y * TM;
  if (n0 >= p.n || m0 >= p.m) {
    return;
  }
  let z = gid.z;
  let base_a = p.off_a + z * p.batch_a;
  let base_b = p.off_b + z * p.batch_b;
  var acc: array<vec4<f32>, TM * TN4>;
  for (var k = 0u; k < p.k; k += 4u) {
    let at = load_a_scalar(base_a, m0, k);
    let bt = load_b_scalar(base_b, n0, k);
    for (var i = 0u; i < TM; i++) {
      for (var kk = 0u; kk < 4u; kk++) {
        let av = vec4<f32>(at[i][kk]);
        for (var j = 0u; j < TN4; j++) {
          acc[i * TN4 + j] = fma(av, bt[kk * TN4 + j], acc[i * TN4 + j]);
        }
      }
    }
  }
  store_tile(z, m0, n0, &acc);
}

// Register tiles with vec4 loads along each operand's contiguous dimension (transposed in
// registers where that is not K). The launcher guarantees K, the contiguous dimensions, leading
// dimensions and offsets are multiples of 4, so a vec4 is wholly inside the matrix or wholly
// outside (then clamped to a valid one whose results are never stored). Row/column indices are
// computed once, outside the K loop: integer work per load matters on lavapipe.
@compute @workgroup_size(8, 8, 1)
fn matmul_reg4(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n0 = gid.x * TN;
  let m0 = gid.y * TM;
  if (n0 >= p.n || m0 >= p.m) {
    return;
  }
  let z = gid.z;
  let base_a = p.off_a + z * p.batch_a;
  let base_b = p.off_b + z * p.batch_b;
  let lda4 = p.lda / 4u;
  let ldb4 = p.ldb / 4u;
  // vec4 index of each operand row/column this invocation reads, and the step per 4 k
  var ia: array<u32, TM>;
  var step_a = 1u;
  if (!TRANS_A) {
    for (var i = 0u; i < TM; i++) {
      ia[i] = (base_a + min(m0 + i, p.m - 1u) * p.lda) / 4u;
    }
  } else {
    step_a = 4u * lda4;
    for (var q = 0u; q < TM / 4u; q++) {
      ia[q] = (base_a + min(m0 + 4u * q, p.m - 4u)) / 4u;
    }
  }
  var ib: array<u32, TN>;
  var step_b = 1u;
  if (TRANS_B) {
    for (var j = 0u; j < TN; j++) {
      ib[j] = (base_b + min(n0 + j, p.n - 1u) * p.ldb) / 4u;
    }
  } else {
    step_b = 4u * ldb4;
    for (var j = 0u; j < TN4; j++) {
      ib[j] = (base_b + min(n0 + 4u * j, p.n - 4u)) / 4u;
    }
  }
  var acc: array<vec4<f32>, TM * TN4>;
  let steps = p.k / 4u;
  for (var s = 0u; s < steps; s++) {
    var at: array<vec4<f32>, TM>;
    if (!TRANS_A) {
      for (var i = 0u; i < TM; i++) {
        at[i] = a4[ia[i] + s];
      }
    } else {
      for (var q = 0u; q < TM / 4u; q++) {
        for (var kk = 0u; kk < 4u; kk++) {
          let v = a4[ia[q] + s * step_a + kk * lda4];
          at[4u * q][kk] = v.x;
          at[4u * q + 1u][kk] = v.y;
          at[4u * q + 2u][kk] = v.z;
          at[4u * q + 3u][kk] = v.w;
        }
      }
    }
    var bt: array<vec4<f32>, 4u * TN4>;
    if (!TRANS_B) {
      for (var kk = 0u; kk < 4u; kk++) {
        for (var j = 0u; j < TN4; j++) {
          bt[kk * TN4 + j] = vec4<f32>(b4[ib[j] + s * step_b + kk * ldb4]);
        }
      }
    } else {
      for (var j = 0u; j < TN4; j++) {
        for (var e = 0u; e < 4u; e++) {
          let v = vec4<f32>(b4[ib[4u * j + e] + s]);
          bt[j][e] = v.x;
          bt[TN4 + j][e] = v.y;
          bt[2u * TN4 + j][e] = v.z;
          bt[3u * TN4 + j][e] = v.w;
        }
      }
    }
    for (var i = 0u; i < TM; i++) {
      for (var kk = 0u; kk < 4u; kk++) {
        let av = vec4<f32>(at[i][kk]);
        for (var j = 0u; j < TN4; j++) {
          acc[i * TN4 + j] = fma(av, bt[kk * TN4 + j], acc[i * TN4 + j]);
        }
      }
    }
  }
  store_tile(z, m0, n0, &acc);
}

// ---- workgroup-memory tiling ----
const BM: u32 = TM * 8u;
const BN: u32 = TN * 8u;
const BK: u32 = 16u;
// k-major tiles so an invocation reads its TM rows / TN columns of one k as a contiguous run
var<workgroup> sa: array<f32, BK * BM>;
var<workgroup> sb: array<f32, BK * BN>;

@compute @workgroup_size(8, 8, 1)
fn matmul_wg(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tid = lid.y * 8u + lid.x;
  let m_blk = wid.y * BM;
  let n_blk = wid.x * BN;
  let z = wid.z;
  let base_a = p.off_a + z * p.batch_a;
  let base_b = p.off_b + z * p.batch_b;
  var acc: array<vec4<f32>, TM * TN4>;
  for (var k0 = 0u; k0 < p.k; k0 += BK) {
    // Consecutive invocations read consecutive addresses of the operand's contiguous dimension.
    for (var e = tid; e < BK * BM; e += 64u) {
      var kk = e / BM;
      var mm = e % BM;
      if (!TRANS_A) {
        kk = e % BK;
        mm = e / BK;
      }
      sa[kk * BM + mm] = select(0.0, a_at(base_a, m_blk + mm, k0 + kk), m_blk + mm < p.m);
    }
    for (var e = tid; e < BK * BN; e += 64u) {
      var kk = e / BN;
      var nn = e % BN;
      if (TRANS_B) {
        kk = e % BK;
        nn = e / BK;
      }
      sb[kk * BN + nn] = select(0.0, b_at(base_b, k0 + kk, n_blk + nn), n_blk + nn < p.n);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var bt: array<vec4<f32>, TN4>;
      for (var j = 0u; j < TN4; j++) {
        let s = kk * BN + lid.x * TN + 4u * j;
        bt[j] = vec4<f32>(sb[s], sb[s + 1u], sb[s + 2u], sb[s + 3u]);
      }
      for (var i = 0u; i < TM; i++) {
        let av = vec4<f32>(sa[kk * BM + lid.y * TM + i]);
        for (var j = 0u; j < TN4; j++) {
          acc[i * TN4 + j] = fma(av, bt[j], acc[i * TN4 + j]);
        }
      }
    }
    workgroupBarrier();
  }
  let m0 = m_blk + lid.y * TM;
  let n0 = n_blk + lid.x * TN;
  if (n0 < p.n && m0 < p.m) {
    store_tile(z, m0, n0, &acc);
  }
}
