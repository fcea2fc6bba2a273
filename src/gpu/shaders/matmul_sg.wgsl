// GEMM with register tiles and subgroup sharing of the A tile (needs the `subgroups` feature).
// Same contract, params and bindings as matmul.wgsl's matmul_reg4 (vec4 loads; the launcher
// guarantees K, the contiguous dimensions, leading dimensions and offsets are multiples of 4),
// with TM a multiple of 8.
//
// Why: the 8 invocations of one workgroup row (same m0, consecutive n0) all need the same 8×4
// block of A at each step. On lavapipe a subgroup is one 8-lane SIMD register and every storage
// load costs per lane, while a shuffle is a register permute; so each lane loads one vec4 of
// the block and the others receive it by shuffle: TM/8 + TN loads per step instead of TM + TN.
// That lanes sid&~7 .. +7 are one workgroup row holds when subgroups are cut from consecutive
// invocation indices (lavapipe, and most GPUs); it is checked at run time, and a subgroup where
// it does not hold loads its A tile lane by lane instead.
// f16 B is read as u32 pairs and widened with unpack2x16float, as in gemv_sg.wgsl: lavapipe
// turns a vec4<f16> load into four 16-bit loads per lane, a vec2<u32> into two (and no
// shader-f16 is needed).
// Defines: TM (a multiple of 8), TN4, TRANS_A, TRANS_B, B_ELEM and B_WIDEN (how B is stored and
// widened; see the launcher).

enable subgroups;
diagnostic(off, subgroup_uniformity);

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
  flags: u32,
  off_bias: u32,
}

const TM: u32 = {{TM}}u;
// vec4s of the A tile each lane loads
const PER_LANE: u32 = TM / 8u;
// vec4s of Aᵀ per k row of the tile
const QB: u32 = TM / 4u;
const TN4: u32 = {{TN4}}u;
const TN: u32 = TN4 * 4u;
const TRANS_A: bool = {{TRANS_A}};
const TRANS_B: bool = {{TRANS_B}};

@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
// f32 B: one vec4<f32> per 4 values; f16 B: the same buffer seen as vec2<u32> per 4 values.
@group(0) @binding(1) var<storage, read> b4: array<{{B_ELEM}}>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

fn load_b(i: u32) -> vec4<f32> {
  let v = b4[i];
  {{B_WIDEN}}
}

// vec4 index of the l-th vec4 of the A tile at k = 0 (l = row for A, l = QB·kk + q for Aᵀ),
// and the index step per 4 k.
fn a_index(base: u32, m0: u32, l: u32) -> u32 {
  if (!TRANS_A) {
    return (base + min(m0 + l, p.m - 1u) * p.lda) / 4u;
  }
  return (base + (l / QB) * p.lda + min(m0 + 4u * (l % QB), p.m - 4u)) / 4u;
}

// Places the l-th vec4 of the A tile into at (at[i] = A[m0 + i, k .. k+3]).
fn place_a(at: ptr<function, array<vec4<f32>, TM>>, l: u32, v: vec4<f32>) {
  if (!TRANS_A) {
    (*at)[l] = v;
  } else {
    let kk = l / QB;
    let q = l % QB;
    (*at)[4u * q][kk] = v.x;
    (*at)[4u * q + 1u][kk] = v.y;
    (*at)[4u * q + 2u][kk] = v.z;
    (*at)[4u * q + 3u][kk] = v.w;
  }
}

@compute @workgroup_size(8, 8, 1)
fn matmul_sg(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
  @builtin(subgroup_invocation_id) sid: u32,
) {
  // No early return: every lane takes part in the shuffles; out-of-range tiles load clamped
  // data and store nothing.
  let n0 = gid.x * TN;
  let m0 = gid.y * TM;
  let z = gid.z;
  let base_a = p.off_a + z * p.batch_a;
  let base_b = p.off_b + z * p.batch_b;
  let group = sid & ~7u;
  let lane = sid & 7u;
  let shared_ok = subgroupAll(subgroupShuffle(tid, group) == (tid & ~7u) && tid % 8u == lane);
  var step_a = 1u;
  if (TRANS_A) {
    step_a = p.lda;
  }
  var ia_own: array<u32, PER_LANE>;
  for (var r = 0u; r < PER_LANE; r++) {
    ia_own[r] = a_index(base_a, m0, lane + 8u * r);
  }
  var ia: array<u32, TM>;
  for (var l = 0u; l < TM; l++) {
    ia[l] = a_index(base_a, m0, l);
  }
  let ldb4 = p.ldb / 4u;
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
    if (shared_ok) {
      var mine: array<vec4<f32>, PER_LANE>;
      for (var r = 0u; r < PER_LANE; r++) {
        mine[r] = a4[ia_own[r] + s * step_a];
      }
      for (var l = 0u; l < TM; l++) {
        place_a(&at, l, subgroupShuffle(mine[l / 8u], group + l % 8u));
      }
    } else {
      for (var l = 0u; l < TM; l++) {
        place_a(&at, l, a4[ia[l] + s * step_a]);
      }
    }
    var bt: array<vec4<f32>, 4u * TN4>;
    if (!TRANS_B) {
      for (var kk = 0u; kk < 4u; kk++) {
        for (var j = 0u; j < TN4; j++) {
          bt[kk * TN4 + j] = load_b(ib[j] + s * step_b + kk * ldb4);
        }
      }
    } else {
      for (var j = 0u; j < TN4; j++) {
        for (var e = 0u; e < 4u; e++) {
          let v = load_b(ib[4u * j + e] + s);
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
  if (n0 >= p.n || m0 >= p.m) {
    return;
  }
  let base_c = p.off_c + z * p.batch_c;
  for (var i = 0u; i < TM; i++) {
    let m = m0 + i;
    if (m >= p.m) {
      break;
    }
    for (var j = 0u; j < TN4; j++) {
      let v = acc[i * TN4 + j] * p.alpha;
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
