// GGUF v3 writer: the container llama.cpp, Ollama and node-llama-cpp load. Owns the byte layout
// only (header, typed KV metadata, tensor infos in GGML dim order, 32-byte aligned data section,
// F32/F16/Q8_0 encoding); which keys and tensor names a model needs lives in gguf-model.ts.
// Tensor data is streamed: infos are declared up front, then each tensor is produced on demand,
// so exporting never holds more than one tensor in memory.
import { open } from "node:fs/promises";
import { f32ToF16 } from "../gpu/tensor.ts";

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const GGUF_VERSION = 3;
/** llama.cpp's default `general.alignment`. */
export const GGUF_ALIGNMENT = 32;

/** GGUF metadata value types (gguf-py GGUFValueType). */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** The GGML tensor types we write (gguf-py GGMLQuantizationType). */
export const GgmlType = { F32: 0, F16: 1, Q8_0: 8 } as const;
export type GgmlTypeName = keyof typeof GgmlType;

/** Values per Q8_0 block (ggml's QK8_0); a block is an f16 scale and 32 int8 values, 34 bytes. */
export const Q8_0_BLOCK = 32;
const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

/** ggml's roundf: to nearest, halves away from zero (exact for f32 inputs in f64 arithmetic). */
function roundHalfAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/**
 * ggml's quantize_row_q8_0_ref (and gguf-py's Q8_0, which matches it bit for bit), for `values`
 * whose length is a multiple of 32: per block of 32, d = max|x| / 127 in f32, stored as f16 (round
 * to nearest even), then q = roundf(x · (1/d)) in f32 (0 where d is 0), stored as int8. The f32
 * d, not its f16 rounding, divides the values, as in ggml.
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % Q8_0_BLOCK !== 0) {
    throw new Error(`Q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${values.length}`);
  }
  const blocks = values.length / Q8_0_BLOCK;
  const out = new Uint8Array(blocks * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const base = b * Q8_0_BLOCK;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(values[base + j]));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    const at = b * Q8_0_BLOCK_BYTES;
    view.setUint16(at, f32ToF16(d), true);
    for (let j = 0; j < Q8_0_BLOCK; j++) view.setInt8(at + 2 + j, roundHalfAway(Math.fround(values[base + j] * id)));
  }
  return out;
}

/** A typed metadata value; numbers need a type because GGUF distinguishes u32/i32/f32/... */
export type GgufValue =
  | { type: "u32" | "i32" | "f32" | "u64" | "f64"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; of: "string"; value: string[] }
  | { type: "array"; of: "i32" | "u32" | "f32"; value: ArrayLike<number> };

/** A tensor to write: `shape` in torch order (row-major, outermost first); GGUF stores it reversed. */
export interface GgufTensorSpec {
  name: string;
  shape: number[];
  type: GgmlTypeName;
  /** Produces the row-major f32 values when the writer reaches this tensor. */
  data: () => Promise<Float32Array> | Float32Array;
}

const SCALAR_CODES = {
  u32: GgufValueType.UINT32,
  i32: GgufValueType.INT32,
  f32: GgufValueType.FLOAT32,
  u64: GgufValueType.UINT64,
  f64: GgufValueType.FLOAT64,
} as const;

/** Growable little-endian byte buffer for the header part of the file. */
class ByteSink {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u32(v: number): void {
    this.reserve(4);
    this.buf.writeUInt32LE(v >>> 0, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }
  f32(v: number): void {
    this.reserve(4);
    this.buf.writeFloatLE(v, this.length);
    this.length += 4;
  }
  f64(v: number): void {
    this.reserve(8);
    this.buf.writeDoubleLE(v, this.length);
    this.length += 8;
  }
  u64(v: number): void {
    this.reserve(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  u8(v: number): void {
    this.reserve(1);
    this.buf.writeUInt8(v, this.length);
    this.length += 1;
  }
  string(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(bytes.length);
    this.reserve(bytes.length);
    bytes.copy(this.buf, this.length);
    this.length += bytes.length;
  }
  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment;
    this.reserve(pad);
    this.buf.fill(0, this.length, this.length + pad);
    this.length += pad;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function checkInteger(key: string, type: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new Error(`GGUF key "${key}": ${v} is not a valid ${type}`);
  }
}

function writeScalar(sink: ByteSink, key: string, type: keyof typeof SCALAR_CODES, v: number): void {
  if (type === "u32") {
    checkInteger(key, type, v, 0, 0xffffffff);
    sink.u32(v);
  } else if (type === "i32") {
    checkInteger(key, type, v, -0x80000000, 0x7fffffff);
    sink.i32(v);
  } else if (type === "u64") {
    checkInteger(key, type, v, 0, Number.MAX_SAFE_INTEGER);
    sink.u64(v);
  } else if (type === "f32") {
    sink.f32(v);
  } else {
    sink.f64(v);
  }
}

function writeKv(sink: ByteSink, key: string, v: GgufValue): void {
  sink.string(key);
  switch (v.type) {
    case "bool":
      sink.u32(GgufValueType.BOOL);
      sink.u8(v.value ? 1 : 0);
      return;
    case "string":
      sink.u32(GgufValueType.STRING);
      sink.string(v.value);
      return;
    case "array":
      sink.u32(GgufValueType.ARRAY);
      if (v.of === "string") {
        sink.u32(GgufValueType.STRING);
        sink.u64(v.value.length);
        for (const s of v.value) sink.string(s);
      } else {
        sink.u32(SCALAR_CODES[v.of]);
        sink.u64(v.value.length);
        for (let i = 0; i < v.value.length; i++) writeScalar(sink, key, v.of, v.value[i]);
      }
      return;
    default:
      sink.u32(SCALAR_CODES[v.type]);
      writeScalar(sink, key, v.type, v.value);
  }
}

/** Bytes a tensor occupies in the data section (before alignment padding). */
export function tensorByteLength(shape: number[], type: GgmlTypeName): number {
  const n = shape.reduce((a, b) => a * b, 1);
  if (type === "Q8_0") return (n / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
  return n * (type === "F32" ? 4 : 2);
}

function encode(data: Float32Array, type: GgmlTypeName): Uint8Array {
  if (type === "F32") return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // Blocks run along rows (the last torch dim, GGML's ne[0]), which the writer checked is a
  // multiple of 32, so quantizing the flat array block by block is quantizing row by row.
  if (type === "Q8_0") return quantizeQ8_0(data);
  const halves = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) halves[i] = f32ToF16(data[i]);
  return new Uint8Array(halves.buffer);
}

/**
 * Writes a GGUF v3 file: metadata in insertion order, then tensor infos and data in `tensors`
 * order, every tensor's data offset aligned to 32 bytes (Q8_0's 34-byte blocks follow each other
 * unpadded within a tensor, as in ggml). Throws on Q8_0 rows that are not whole blocks, on
 * duplicate tensor names, empty or non-integer shapes, and data whose length does not match the declared shape.
 */
export async function writeGguf(
  path: string,
  metadata: Map<string, GgufValue>,
  tensors: GgufTensorSpec[],
): Promise<{ bytes: number }> {
  const alignment = metadata.get("general.alignment");
  if (alignment && (alignment.type !== "u32" || alignment.value !== GGUF_ALIGNMENT)) {
    throw new Error(`general.alignment must be u32 ${GGUF_ALIGNMENT} (the only alignment this writer produces)`);
  }
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new Error(`GGUF tensor "${t.name}" is declared twice`);
    seen.add(t.name);
    if (t.shape.length === 0 || t.shape.length > 4 || t.shape.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new Error(`GGUF tensor "${t.name}": shape [${t.shape}] must have 1..4 positive integer dims`);
    }
    if (!(t.type in GgmlType)) throw new Error(`GGUF tensor "${t.name}": type ${t.type} not writable (F32, F16, Q8_0)`);
    if (t.type === "Q8_0" && t.shape[t.shape.length - 1] % Q8_0_BLOCK !== 0) {
      throw new Error(
        `GGUF tensor "${t.name}": Q8_0 needs rows (last dim) of a multiple of ${Q8_0_BLOCK} values, shape [${t.shape}]`,
      );
    }
  }

  const head = new ByteSink();
  head.u32(GGUF_MAGIC);
  head.u32(GGUF_VERSION);
  head.u64(tensors.length);
  head.u64(metadata.size);
  for (const [key, value] of metadata) writeKv(head, key, value);
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    head.string(t.name);
    head.u32(t.shape.length);
    // GGML's ne[0] is the fastest-varying dimension: torch's last.
    for (let d = t.shape.length - 1; d >= 0; d--) head.u64(t.shape[d]);
    head.u32(GgmlType[t.type]);
    head.u64(offset);
    offsets.push(offset);
    offset += tensorByteLength(t.shape, t.type);
    offset += (GGUF_ALIGNMENT - (offset % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
  }
  head.padTo(GGUF_ALIGNMENT);

  const fh = await open(path, "w");
  try {
    const headBytes = head.bytes();
    await fh.write(headBytes, 0, headBytes.length, 0);
    const dataStart = headBytes.length;
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i];
      const data = await t.data();
      const n = t.shape.reduce((a, b) => a * b, 1);
      if (data.length !== n) {
        throw new Error(`GGUF tensor "${t.name}": got ${data.length} values, shape [${t.shape}] needs ${n}`);
      }
      const bytes = encode(data, t.type);
      await fh.write(bytes, 0, bytes.length, dataStart + offsets[i]);
    }
    const total = dataStart + offset;
    // The last tensor's trailing padding: keeps the file size a multiple of the alignment.
    await fh.truncate(total);
    return { bytes: total };
  } finally {
    await fh.close();
  }
}
