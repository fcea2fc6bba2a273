// Tensors: a region of a GPU buffer with a shape and a dtype. Data moves in and out as
// Float32Array (f16 is converted on the CPU, so callers never see half floats). Views share the
// parent's buffer; only the owner returns the buffer to the pool on dispose().

import type { Gpu } from "./device.ts";
import type { PooledBuffer } from "./pool.ts";

export type DType = "f32" | "f16" | "u32" | "i32";

export const BYTES_PER_ELEMENT: Record<DType, number> = { f32: 4, f16: 2, u32: 4, i32: 4 };

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid tensor shape [${shape.join(", ")}]`);
    n *= d;
  }
  return n;
}

/** Bytes a tensor of this shape needs, rounded up to 4 (WebGPU copies and bindings need it). */
export function bytesFor(shape: readonly number[], dtype: DType): number {
  return Math.max(4, Math.ceil((numel(shape) * BYTES_PER_ELEMENT[dtype]) / 4) * 4);
}

export class Tensor {
  readonly gpu: Gpu;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly byteOffset: number;
  private pooled: PooledBuffer | null;
  private readonly owner: boolean;

  constructor(gpu: Gpu, pooled: PooledBuffer, shape: readonly number[], dtype: DType, byteOffset = 0, owner = true) {
    this.gpu = gpu;
    this.pooled = pooled;
    this.shape = [...shape];
    this.dtype = dtype;
    this.byteOffset = byteOffset;
    this.owner = owner;
  }

  get buffer(): GPUBuffer {
    if (!this.pooled) throw new Error("tensor used after dispose()");
    return this.pooled.buffer;
  }

  get size(): number {
    return numel(this.shape);
  }

  /** Bytes of data (rounded up to 4). */
  get byteLength(): number {
    return bytesFor(this.shape, this.dtype);
  }

  get disposed(): boolean {
    return this.pooled === null;
  }

  /**
   * A view of `shape` starting `elementOffset` elements in. Bound views must start on the
   * device's storage offset alignment (256 bytes); kernels take element offsets otherwise.
   */
  view(shape: readonly number[], elementOffset = 0): Tensor {
    const bytes = elementOffset * BYTES_PER_ELEMENT[this.dtype];
    if (bytes + numel(shape) * BYTES_PER_ELEMENT[this.dtype] > this.byteLength) {
      throw new Error(`view [${shape.join(", ")}] at ${elementOffset} exceeds tensor [${this.shape.join(", ")}]`);
    }
    return new Tensor(this.gpu, this.pooled!, shape, this.dtype, this.byteOffset + bytes, false);
  }

  /** Same data, another shape with the same element count. */
  reshape(shape: readonly number[]): Tensor {
    if (numel(shape) !== this.size) {
      throw new Error(`cannot reshape [${this.shape.join(", ")}] to [${shape.join(", ")}]`);
    }
    return new Tensor(this.gpu, this.pooled!, shape, this.dtype, this.byteOffset, false);
  }

  /** Queues an upload; ordered before any dispatch recorded after this call. */
  write(data: ArrayLike<number>, elementOffset = 0): void {
    if (elementOffset + data.length > this.size) {
      throw new Error(`write of ${data.length} elements at ${elementOffset} exceeds tensor of ${this.size}`);
    }
    const bytes = encode(data, this.dtype);
    const offset = this.byteOffset + elementOffset * BYTES_PER_ELEMENT[this.dtype];
    // queue.writeBuffer runs before the next submit, so recorded-but-unsubmitted dispatches that
    // read this tensor must go first to keep program order.
    this.gpu.commands.submitIfPending();
    if (offset % 4 !== 0 || (bytes.byteLength % 4 !== 0 && elementOffset + data.length !== this.size)) {
      throw new Error("f16 writes must start and end on an even element (a 4-byte boundary)");
    }
    const padded = bytes.byteLength % 4 === 0 ? bytes : padTo4(bytes);
    this.gpu.device.queue.writeBuffer(this.buffer, offset, padded.buffer, padded.byteOffset, padded.byteLength);
  }

  /** Downloads the data (flushing pending work first). f16 comes back widened to f32. */
  async read(): Promise<Float32Array> {
    const raw = await this.readBytes();
    return decode(raw, this.dtype, this.size) as Float32Array;
  }

  /** Downloads u32/i32 data as integers. */
  async readInts(): Promise<Int32Array | Uint32Array> {
    const raw = await this.readBytes();
    return this.dtype === "u32" ? new Uint32Array(raw, 0, this.size) : new Int32Array(raw, 0, this.size);
  }

  private async readBytes(): Promise<ArrayBuffer> {
    const [bytes] = await readBuffers([this]);
    return bytes;
  }

  /** Returns the buffer to the pool (owners only; views just detach). */
  dispose(): void {
    if (!this.pooled) return;
    if (this.owner) this.gpu.pool.release(this.pooled);
    this.pooled = null;
  }
}

/**
 * Downloads several tensors with one copy into one staging buffer, one submit and one map: a
 * serving step reads tokens, logprobs and alternatives together, and each separate read would
 * cost a GPU round trip.
 */
async function readBuffers(tensors: readonly Tensor[]): Promise<ArrayBuffer[]> {
  const gpu = tensors[0].gpu;
  gpu.assertAlive();
  const offsets: number[] = [];
  let size = 0;
  for (const t of tensors) {
    if (t.gpu !== gpu) throw new Error("readAll: tensors must live on one device");
    offsets.push(size);
    size += t.byteLength;
  }
  const staging = gpu.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  tensors.forEach((t, i) => {
    gpu.commands.copyBufferToBuffer(t.buffer, t.byteOffset, staging, offsets[i], t.byteLength);
  });
  gpu.flush();
  try {
    await staging.mapAsync(GPUMapMode.READ);
    gpu.checkErrors();
    const all = staging.getMappedRange();
    return tensors.map((t, i) => all.slice(offsets[i], offsets[i] + t.byteLength));
  } finally {
    if (staging.mapState === "mapped") staging.unmap();
    staging.destroy();
  }
}

/**
 * Reads many tensors in one GPU round trip: f32/f16 as Float32Array, u32 as Uint32Array, i32 as
 * Int32Array.
 */
export async function readAll(tensors: readonly Tensor[]): Promise<(Float32Array | Uint32Array | Int32Array)[]> {
  if (tensors.length === 0) return [];
  const raw = await readBuffers(tensors);
  return tensors.map((t, i) => {
    if (t.dtype === "u32") return new Uint32Array(raw[i], 0, t.size);
    if (t.dtype === "i32") return new Int32Array(raw[i], 0, t.size);
    return decode(raw[i], t.dtype, t.size) as Float32Array;
  });
}

function padTo4(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  out.set(bytes);
  return out;
}

/** Encodes numbers into the tensor's byte layout. */
export function encode(data: ArrayLike<number>, dtype: DType): Uint8Array {
  switch (dtype) {
    case "f32": {
      const a = data instanceof Float32Array ? data : Float32Array.from(data);
      return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    }
    case "u32": {
      const a = data instanceof Uint32Array ? data : Uint32Array.from(data);
      return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    }
    case "i32": {
      const a = data instanceof Int32Array ? data : Int32Array.from(data);
      return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    }
    case "f16": {
      const a = new Uint16Array(data.length);
      for (let i = 0; i < data.length; i++) a[i] = f32ToF16(data[i]);
      return new Uint8Array(a.buffer);
    }
  }
}

function decode(raw: ArrayBuffer, dtype: DType, n: number): Float32Array | Int32Array | Uint32Array {
  switch (dtype) {
    case "f32":
      return new Float32Array(raw, 0, n);
    case "u32":
      return Float32Array.from(new Uint32Array(raw, 0, n));
    case "i32":
      return Float32Array.from(new Int32Array(raw, 0, n));
    case "f16": {
      const h = new Uint16Array(raw, 0, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = f16ToF32(h[i]);
      return out;
    }
  }
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE half from a float, rounding to nearest even; overflow goes to ±Inf. */
export function f32ToF16(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  e = half >>> 10;
  return sign | half;
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits to float: the high half of an f32. */
export function bf16ToF32(h: number): number {
  u32Scratch[0] = h << 16;
  return f32Scratch[0];
}
