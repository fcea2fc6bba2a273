// Weight-only int8 quantisation, symmetric per output channel: W[r, c] ≈ q[r, c] · scale[r] with
// q in [−127, 127]. q is stored four to a u32 (little-endian bytes, column c at byte c % 4 of word
// c / 4), so a row of K weights is K/4 words and one word is one vec4 of the row.
//
// `dequant_int8` widens a whole matrix to f32 right before a matmul uses it (src/model/linear.ts):
// resident memory is 1 byte per weight, plus one f32 matrix at a time.

struct Params {
  words: u32,      // rows · cols / 4
  words_row: u32,  // cols / 4
}

@group(0) @binding(0) var<storage, read> q: array<u32>;
@group(0) @binding(1) var<storage, read> scale: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<vec4<f32>>;
@group(1) @binding(0) var<uniform> p: Params;

// Sign-extends the four bytes of a word (shift the byte to the top, arithmetic shift back).
fn unpack_i8(word: u32) -> vec4<f32> {
  let v = bitcast<vec4<i32>>(vec4<u32>(word << 24u, word << 16u, word << 8u, word));
  return vec4<f32>(v >> vec4<u32>(24u));
}

@compute @workgroup_size(256)
fn dequant_int8(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.words) { return; }
  w[i] = unpack_i8(q[i]) * scale[i / p.words_row];
}
