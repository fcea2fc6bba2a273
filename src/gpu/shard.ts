// Matrices larger than one storage binding (maxStorageBufferBindingSize: 128 MiB on lavapipe,
// e.g. a 151936×896 f32 LM head) are split into row blocks, each its own tensor. Kernels that
// take a weight matrix loop over the shards and write the matching output columns.

import type { Gpu } from "./device.ts";
import { BYTES_PER_ELEMENT, type DType, type Tensor } from "./tensor.ts";

export interface Shard {
  tensor: Tensor;
  /** First row of the full matrix this shard holds. */
  rowStart: number;
  rows: number;
}

export class ShardedMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly dtype: DType;
  readonly shards: Shard[];

  private constructor(rows: number, cols: number, dtype: DType, shards: Shard[]) {
    this.rows = rows;
    this.cols = cols;
    this.dtype = dtype;
    this.shards = shards;
  }

  /** Rows per shard so that each shard fits one binding (a multiple of 64 rows when possible). */
  static rowsPerShard(gpu: Gpu, rows: number, cols: number, dtype: DType): number {
    const rowBytes = cols * BYTES_PER_ELEMENT[dtype];
    let per = Math.floor(gpu.maxBindingSize / rowBytes);
    if (per < 1) throw new Error(`one row of ${cols} ${dtype} exceeds the binding limit ${gpu.maxBindingSize}`);
    if (per >= rows) return rows;
    if (per >= 64) per -= per % 64;
    return per;
  }

  /** Uploads a row-major [rows × cols] matrix, sharded as needed. */
  static upload(gpu: Gpu, rows: number, cols: number, data: Float32Array | null, dtype: DType = "f32"): ShardedMatrix {
    const per = ShardedMatrix.rowsPerShard(gpu, rows, cols, dtype);
    const shards: Shard[] = [];
    for (let rowStart = 0; rowStart < rows; rowStart += per) {
      const n = Math.min(per, rows - rowStart);
      const tensor = gpu.tensor([n, cols], dtype);
      if (data) tensor.write(data.subarray(rowStart * cols, (rowStart + n) * cols));
      shards.push({ tensor, rowStart, rows: n });
    }
    return new ShardedMatrix(rows, cols, dtype, shards);
  }

  async read(): Promise<Float32Array> {
    const out = new Float32Array(this.rows * this.cols);
    for (const s of this.shards) out.set(await s.tensor.read(), s.rowStart * this.cols);
    return out;
  }

  dispose(): void {
    for (const s of this.shards) s.tensor.dispose();
  }
}
