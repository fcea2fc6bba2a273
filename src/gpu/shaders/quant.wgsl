// Weight-only quantisation of frozen weight matrices, symmetric (zero maps to zero):
// - int8, per output channel: W[r, c] ≈ q[r, c] · scale[r], q in [−127, 127], four per u32
//   (little-endian bytes: column c at byte c % 4 of word c / 4);
// - int4, per group of GROUP consecutive columns of a row: W[r, c] ≈ q[r, c] · scale[r, c / GROUP],
//   q in [−7, 7], eight per u32 (column c at nibble c % 8 of word c / 8).
//
// `dequant_*` widens a whole matrix to f32 right before a matmul uses it (src/model/linear.ts):
// resident memory is 1 byte (int8) or half a byte (int4) per weight, plus one f32 matrix at a time.

struct Params {
  words: u32,        // packed u32 words in the matrix
  words_scale: u32,  // consecutive words sharing one scale: cols / 4 (int8 rows), GROUP / 8 (int4)
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
  w[i] = unpack_i8(q[i]) * scale[i / p.words_scale];
}

// Sign-extends the eight nibbles of a word: two vec4s (nibbles 0-3, then 4-7).
fn unpack_i4(word: u32, half: u32) -> vec4<f32> {
  let shifts = vec4<u32>(28u, 24u, 20u, 16u) - vec4<u32>(16u * half);
  let v = bitcast<vec4<i32>>(vec4<u32>(word) << shifts);
  return vec4<f32>(v >> vec4<u32>(28u));
}

@compute @workgroup_size(256)
fn dequant_int4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.words) { return; }
  let word = q[i];
  let s = scale[i / p.words_scale];
  w[2u * i] = unpack_i4(word, 0u) * s;
  w[2u * i + 1u] = unpack_i4(word, 1u) * s;
}
