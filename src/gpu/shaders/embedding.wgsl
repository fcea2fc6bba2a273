// Token embedding: gather rows of a [vocab, dim] table by u32 token id, and the gradient
// scatter-add into the table.
//
// Tables bigger than one binding are sharded by rows; each dispatch sees one shard (rows
// [row_start, row_start + rows)) and handles only the ids that fall in it. The gather clamps ids
// to vocab − 1 (it cannot report GPU-side data; `uploadTokenIds` validates on the CPU).
//
// The scatter is deterministic without float atomics: the CPU sorts the token indices by id into
// `plan` = [order (tokens) | segment starts (unique + 1) | unique ids (unique)], and invocation
// (segment s, column c) sums dy over the segment's tokens in ascending token order and adds the
// sum into table row unique[s]: every table element has exactly one writer.
// V is vec4<f32> when dim is a multiple of 4, else f32; `cols` counts elements of V.
// An f16 table (a frozen embedding stored like the other frozen weights) is gathered by
// `embedding_gather_f16`, which reads it as u32 pairs and widens with unpack2x16float (no
// shader-f16 needed); an int8 table (`quantizeHead`) by `embedding_gather_int8`; the scatter
// (training the embedding) needs an f32 table.

struct Params {
  count: u32,       // rows of the grid: tokens (gather) or segments (scatter)
  cols: u32,
  row_start: u32,   // first table row of this shard
  rows: u32,        // table rows in this shard
  vocab: u32,       // gather: rows of the whole table
  tokens: u32,      // scatter: tokens in the plan
  unique: u32,      // scatter: distinct ids in the plan
  seg_first: u32,   // scatter: first segment this dispatch handles
}

alias V = {{VT}};
const WG: u32 = 64u;

@group(1) @binding(0) var<uniform> p: Params;

// Grid: x covers the columns of a row, the row (token or segment) is wid.y + wid.z · nwg.y.
fn grid_row(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.y + wid.z * nwg.y;
}

// ---- gather: out[t, :] = table[ids[t], :] ----
@group(0) @binding(0) var<storage, read> table: array<V>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<V>;

@compute @workgroup_size(WG)
fn embedding_gather(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let c = gid.x;
  let t = grid_row(wid, nwg);
  if (c >= p.cols || t >= p.count) {
    return;
  }
  let id = min(ids[t], p.vocab - 1u);
  if (id >= p.row_start && id - p.row_start < p.rows) {
    out[t * p.cols + c] = table[(id - p.row_start) * p.cols + c];
  }
}

// ---- gather from an f16 table: one element per invocation, `cols` counts elements ----
@group(0) @binding(0) var<storage, read> table_h: array<u32>;
@group(0) @binding(2) var<storage, read_write> out_s: array<f32>;

@compute @workgroup_size(WG)
fn embedding_gather_f16(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let c = gid.x;
  let t = grid_row(wid, nwg);
  if (c >= p.cols || t >= p.count) {
    return;
  }
  let id = min(ids[t], p.vocab - 1u);
  if (id >= p.row_start && id - p.row_start < p.rows) {
    let i = (id - p.row_start) * p.cols + c;
    out_s[t * p.cols + c] = unpack2x16float(table_h[i >> 1u])[i & 1u];
  }
}

// ---- gather from an int8 table (quant.wgsl's layout: four per u32, one f32 scale per row):
// one word (four elements) per invocation, `cols` counts words ----
@group(0) @binding(3) var<storage, read> row_scale: array<f32>;

@compute @workgroup_size(WG)
fn embedding_gather_int8(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let c = gid.x;
  let t = grid_row(wid, nwg);
  if (c >= p.cols || t >= p.count) {
    return;
  }
  let id = min(ids[t], p.vocab - 1u);
  if (id < p.row_start || id - p.row_start >= p.rows) {
    return;
  }
  let row = id - p.row_start;
  let word = table_h[row * p.cols + c];
  // Sign-extend each byte: shift it to the top, arithmetic shift back.
  let b = bitcast<vec4<i32>>(vec4<u32>(word << 24u, word << 16u, word << 8u, word)) >> vec4<u32>(24u);
  let v = vec4<f32>(b) * row_scale[row];
  let o = 4u * (t * p.cols + c);
  out_s[o] = v.x;
  out_s[o + 1u] = v.y;
  out_s[o + 2u] = v.z;
  out_s[o + 3u] = v.w;
}

// ---- scatter-add: table[id, :] += sum of dy[t, :] over tokens t with ids[t] = id ----
@group(0) @binding(0) var<storage, read> dy: array<V>;
@group(0) @binding(1) var<storage, read> plan: array<u32>;
@group(0) @binding(2) var<storage, read_write> dtable: array<V>;

@compute @workgroup_size(WG)
fn embedding_scatter(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let c = gid.x;
  let r = grid_row(wid, nwg);
  if (c >= p.cols || r >= p.count) {
    return;
  }
  let s = p.seg_first + r;
  let first = plan[p.tokens + s];
  let last = plan[p.tokens + s + 1u];
  var acc = V(0.0);
  for (var k = first; k < last; k++) {
    acc += dy[plan[k] * p.cols + c];
  }
  let row = plan[p.tokens + p.unique + 1u + s] - p.row_start;
  dtable[row * p.cols + c] += acc;
}
