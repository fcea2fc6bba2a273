// safetensors writing in the exact layout of HF's Rust `safetensors` library (u64 header length,
// space-padded JSON header, dtype-then-name tensor order), narrowing f32 data to F16/BF16 with
// round-to-nearest-even, plus HF-style sharding with model.safetensors.index.json.
import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { f32ToF16 } from "../gpu/tensor.ts";
import { CHUNK_BYTES, DTYPE_BYTES, type SafetensorsDType } from "./safetensors.ts";

/** One tensor to write: values are given as f32 and narrowed to `dtype` on write. */
export interface TensorToWrite {
  dtype: SafetensorsDType;
  shape: number[];
  data: Float32Array;
}

/** HF's Rust writer orders tensors by dtype (largest enum value first), then by name. */
const DTYPE_ORDER: Record<SafetensorsDType, number> = { F16: 0, BF16: 1, F32: 2 };

/** bf16 bits of a float, rounding to nearest even like torch's `.to(torch.bfloat16)`. */
export function f32ToBf16(value: number): number {
  bf16Scratch[0] = value;
  const x = bf16Bits[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}
const bf16Scratch = new Float32Array(1);
const bf16Bits = new Uint32Array(bf16Scratch.buffer);

function encodeChunk(data: Float32Array, dtype: SafetensorsDType): Uint8Array {
  if (dtype === "F32") return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const halves = new Uint16Array(data.length);
  const narrow = dtype === "F16" ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < data.length; i++) halves[i] = narrow(data[i]);
  return new Uint8Array(halves.buffer);
}

/**
 * Writes tensors to one `.safetensors` file (header padded with spaces to 8 bytes, tensors in
 * HF's order), narrowing each f32 array to its declared dtype. `metadata` values must be strings;
 * it defaults to {format: "pt"} like torch-saved checkpoints.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata: Record<string, string> = { format: "pt" },
): Promise<void> {
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new Error(`safetensors metadata values must be strings; "${k}" is ${typeof v}`);
  }
  const names = Object.keys(tensors).sort((a, b) => {
    const d = DTYPE_ORDER[tensors[b].dtype] - DTYPE_ORDER[tensors[a].dtype];
    return d !== 0 ? d : a < b ? -1 : a > b ? 1 : 0;
  });
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    if (!(t.dtype in DTYPE_BYTES)) throw new Error(`tensor "${name}": dtype ${t.dtype} not writable (F32, F16, BF16)`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (!t.shape.every((d) => Number.isInteger(d) && d >= 0) || n !== t.data.length) {
      throw new Error(`tensor "${name}": shape [${t.shape}] holds ${n} values but data has ${t.data.length}`);
    }
    const bytes = n * DTYPE_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  const fh = await open(path, "w");
  try {
    await fh.write(prefix);
    await fh.write(json);
    const elemsPerChunk = CHUNK_BYTES / 4;
    for (const name of names) {
      const t = tensors[name];
      for (let i = 0; i < t.data.length; i += elemsPerChunk) {
        await fh.write(encodeChunk(t.data.subarray(i, i + elemsPerChunk), t.dtype));
      }
    }
  } finally {
    await fh.close();
  }
}

/**
 * Writes tensors as HF-style shards `model-0000i-of-0000n.safetensors` plus
 * `model.safetensors.index.json`, splitting in HF order into `shards` parts of similar byte size.
 */
export async function writeShardedSafetensors(
  dir: string,
  tensors: Record<string, TensorToWrite>,
  shards: number,
  metadata: Record<string, string> = { format: "pt" },
): Promise<string[]> {
  const names = Object.keys(tensors).sort();
  if (!Number.isInteger(shards) || shards < 1 || shards > names.length) {
    throw new Error(`shards must be an integer in [1, ${names.length}] (one tensor per shard at least), got ${shards}`);
  }
  const sizeOf = (n: string) => tensors[n].data.length * DTYPE_BYTES[tensors[n].dtype];
  const total = names.reduce((a, n) => a + sizeOf(n), 0);
  const groups: string[][] = [[]];
  let groupBytes = 0;
  for (let i = 0; i < names.length; i++) {
    const current = groups[groups.length - 1];
    const groupsLeft = shards - groups.length;
    // Open the next shard once this one holds its share of bytes, or when each remaining tensor
    // must go to its own shard so that no shard file ends up empty.
    if (current.length > 0 && groupsLeft > 0 && (groupBytes >= total / shards || names.length - i <= groupsLeft)) {
      groups.push([]);
      groupBytes = 0;
    }
    groups[groups.length - 1].push(names[i]);
    groupBytes += sizeOf(names[i]);
  }
  const pad = (k: number) => String(k).padStart(5, "0");
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  for (let g = 0; g < shards; g++) {
    const file = `model-${pad(g + 1)}-of-${pad(shards)}.safetensors`;
    const part: Record<string, TensorToWrite> = {};
    for (const n of groups[g]) {
      part[n] = tensors[n];
      weightMap[n] = file;
    }
    await writeSafetensors(join(dir, file), part, metadata);
    files.push(file);
  }
  const sortedMap = Object.fromEntries(
    Object.keys(weightMap)
      .sort()
      .map((k) => [k, weightMap[k]]),
  );
  const index = { metadata: { total_size: total }, weight_map: sortedMap };
  await writeFile(join(dir, "model.safetensors.index.json"), `${JSON.stringify(index, null, 2)}\n`);
  return files;
}
