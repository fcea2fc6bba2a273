// safetensors reading: single-file and sharded (model.safetensors.index.json) checkpoints, tensor
// by tensor through file handles, widening F32/F16/BF16 to Float32Array. Reading never holds more
// than one tensor (plus a bounded chunk) in memory, so multi-GB checkpoints load with one tensor
// of overhead. The writer lives in safetensors-write.ts.
import { existsSync, type Stats, statSync } from "node:fs";
import { type FileHandle, open, readdir, readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

export type SafetensorsDType = "F32" | "F16" | "BF16";
const READABLE_DTYPES: readonly string[] = ["F32", "F16", "BF16"];
/** Bytes per element of each dtype we read and write. */
export const DTYPE_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2 };

/** Upper bound on a header's size; the format caps it at 100 MB. */
const MAX_HEADER_BYTES = 100_000_000;
/** Bytes converted per read: bounds the scratch memory beside the output tensor. */
export const CHUNK_BYTES = 16 << 20;

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
}

export interface SafetensorsReader {
  /** All tensor names, sorted. */
  names(): string[];
  /** dtype and shape of a tensor; throws naming the tensor and the files searched if absent. */
  info(name: string): TensorInfo;
  has(name: string): boolean;
  /** Reads one tensor from disk and widens it to f32. */
  read(name: string): Promise<Float32Array>;
  /** `__metadata__` of the (first) file. */
  metadata(): Record<string, string>;
  close(): Promise<void>;
}

interface Entry extends TensorInfo {
  file: string;
  /** Absolute byte offset of the tensor's data in its file. */
  start: number;
  byteLength: number;
}

interface ParsedHeader {
  entries: Map<string, Entry>;
  metadata: Record<string, string>;
}

async function readHeader(fh: FileHandle, file: string, fileSize: number): Promise<ParsedHeader> {
  const lenBuf = Buffer.alloc(8);
  const { bytesRead } = await fh.read(lenBuf, 0, 8, 0);
  if (bytesRead < 8) throw new Error(`${file}: too short to be a safetensors file (${fileSize} bytes)`);
  const headerLen = Number(lenBuf.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > fileSize) {
    throw new Error(`${file}: header length ${headerLen} is invalid for a ${fileSize}-byte file`);
  }
  const headerBuf = Buffer.alloc(headerLen);
  await fh.read(headerBuf, 0, headerLen, 8);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(headerBuf.toString("utf8"));
  } catch (e) {
    throw new Error(`${file}: header is not valid JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + headerLen;
  const entries = new Map<string, Entry>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = (value ?? {}) as Record<string, string>;
      continue;
    }
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const shape = v.shape;
    const offsets = v.data_offsets;
    if (!Array.isArray(shape) || !Array.isArray(offsets) || offsets.length !== 2 || typeof v.dtype !== "string") {
      throw new Error(`${file}: malformed header entry for tensor "${name}": ${JSON.stringify(value)}`);
    }
    const [begin, end] = offsets as number[];
    if (!(begin >= 0 && end >= begin && dataStart + end <= fileSize)) {
      throw new Error(`${file}: tensor "${name}" data_offsets [${begin}, ${end}] fall outside the file`);
    }
    const dtype = v.dtype as SafetensorsDType;
    if (READABLE_DTYPES.includes(dtype)) {
      const n = shape.reduce((a: number, b: number) => a * b, 1);
      if (n * DTYPE_BYTES[dtype] !== end - begin) {
        throw new Error(
          `${file}: tensor "${name}" has ${end - begin} bytes but shape [${shape}] of ${dtype} needs ${n * DTYPE_BYTES[dtype]}`,
        );
      }
    }
    entries.set(name, { dtype, shape: shape as number[], file, start: dataStart + begin, byteLength: end - begin });
  }
  return { entries, metadata };
}

/** Lazily built f16 → f32 table: one lookup per element instead of float arithmetic. */
let f16Table: Float32Array | null = null;
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) table[h] = sign * mant * 2 ** -24;
    else if (exp === 0x1f) table[h] = mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else table[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  f16Table = table;
  return table;
}

async function readEntry(fh: FileHandle, e: Entry, name: string): Promise<Float32Array> {
  if (!READABLE_DTYPES.includes(e.dtype)) {
    throw new Error(`tensor "${name}" in ${e.file} has dtype ${e.dtype}; only F32, F16 and BF16 can be loaded`);
  }
  const n = e.byteLength / DTYPE_BYTES[e.dtype];
  const out = new Float32Array(n);
  if (e.dtype === "F32") {
    // Read straight into the output's memory: no scratch buffer at all.
    const bytes = new Uint8Array(out.buffer);
    for (let off = 0; off < e.byteLength; off += CHUNK_BYTES) {
      await readFully(fh, bytes, off, Math.min(CHUNK_BYTES, e.byteLength - off), e.start + off, e.file);
    }
    return out;
  }
  const scratch = new Uint8Array(Math.min(CHUNK_BYTES, e.byteLength));
  const halves = new Uint16Array(scratch.buffer);
  const outBits = new Uint32Array(out.buffer);
  const table = e.dtype === "F16" ? halfTable() : null;
  for (let off = 0; off < e.byteLength; off += scratch.byteLength) {
    const len = Math.min(scratch.byteLength, e.byteLength - off);
    await readFully(fh, scratch, 0, len, e.start + off, e.file);
    const base = off / 2;
    const count = len / 2;
    if (table) {
      for (let i = 0; i < count; i++) out[base + i] = table[halves[i]];
    } else {
      // bf16 is the high half of an f32.
      for (let i = 0; i < count; i++) outBits[base + i] = halves[i] << 16;
    }
  }
  return out;
}

async function readFully(
  fh: FileHandle,
  into: Uint8Array,
  offset: number,
  length: number,
  position: number,
  file: string,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(into, offset + done, length - done, position + done);
    if (bytesRead === 0) throw new Error(`${file}: unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/** Finds the safetensors file(s) for a path: a file, an index.json, or a directory holding either. */
async function resolveFiles(dirOrFile: string): Promise<{ files: string[]; weightMap: Map<string, string> | null }> {
  const st = statOrNull(dirOrFile);
  if (!st) throw new Error(`safetensors path not found: ${dirOrFile}`);
  let indexPath: string | null = null;
  if (st.isDirectory()) {
    const idx = join(dirOrFile, "model.safetensors.index.json");
    const single = join(dirOrFile, "model.safetensors");
    if (existsSync(idx)) indexPath = idx;
    else if (existsSync(single)) return { files: [single], weightMap: null };
    else {
      const found = (await readdir(dirOrFile)).filter((f) => f.endsWith(".safetensors")).sort();
      if (found.length !== 1) {
        throw new Error(
          `${dirOrFile}: expected model.safetensors, model.safetensors.index.json or exactly one *.safetensors file, found ${
            found.length ? found.join(", ") : "none"
          }`,
        );
      }
      return { files: [join(dirOrFile, found[0])], weightMap: null };
    }
  } else if (dirOrFile.endsWith(".json")) {
    indexPath = dirOrFile;
  } else {
    return { files: [dirOrFile], weightMap: null };
  }
  const index = JSON.parse(await readFile(indexPath, "utf8")) as { weight_map?: Record<string, string> };
  if (!index.weight_map || typeof index.weight_map !== "object") {
    throw new Error(`${indexPath}: missing "weight_map"`);
  }
  const dir = dirname(indexPath);
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(index.weight_map)) weightMap.set(name, join(dir, file));
  return { files: [...new Set(weightMap.values())].sort(), weightMap };
}

/**
 * Opens a safetensors checkpoint: a `.safetensors` file, a `model.safetensors.index.json`, or a
 * directory containing either. Only headers are read here; tensors are read on demand.
 */
export async function openSafetensors(dirOrFile: string): Promise<SafetensorsReader> {
  const { files, weightMap } = await resolveFiles(dirOrFile);
  const handles = new Map<string, FileHandle>();
  const entries = new Map<string, Entry>();
  let metadata: Record<string, string> = {};
  try {
    for (const file of files) {
      if (!existsSync(file)) throw new Error(`shard ${file} listed in the index does not exist`);
      const fh = await open(file, "r");
      handles.set(file, fh);
      const parsed = await readHeader(fh, file, (await fh.stat()).size);
      if (file === files[0]) metadata = parsed.metadata;
      for (const [name, entry] of parsed.entries) {
        // With an index, the weight map is authoritative about which shard holds a tensor.
        if (weightMap && weightMap.get(name) !== file) continue;
        entries.set(name, entry);
      }
    }
    if (weightMap) {
      const missing = [...weightMap.keys()].filter((n) => !entries.has(n));
      if (missing.length) {
        throw new Error(`index lists tensors absent from their shard files: ${missing.slice(0, 10).join(", ")}`);
      }
    }
  } catch (e) {
    await Promise.all([...handles.values()].map((h) => h.close()));
    throw e;
  }
  const searched = files.map((f) => basename(f)).join(", ");
  const lookup = (name: string): Entry => {
    const e = entries.get(name);
    if (!e) throw new Error(`tensor "${name}" not found (searched ${searched})`);
    return e;
  };
  return {
    names: () => [...entries.keys()].sort(),
    info: (name) => {
      const e = lookup(name);
      return { dtype: e.dtype, shape: [...e.shape] };
    },
    has: (name) => entries.has(name),
    read: async (name) => {
      const e = lookup(name);
      const fh = handles.get(e.file);
      if (!fh) throw new Error(`safetensors reader is closed (reading "${name}")`);
      return readEntry(fh, e, name);
    },
    metadata: () => ({ ...metadata }),
    close: async () => {
      const all = [...handles.values()];
      handles.clear();
      await Promise.all(all.map((h) => h.close()));
    },
  };
}
