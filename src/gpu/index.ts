// The GPU runtime's public surface.
export {
  acquireGpu,
  Gpu,
  NoAdapterError,
  type AcquireOptions,
  type AdapterDescription,
  type GpuFeatures,
} from "./device.ts";
export { Tensor, type DType, numel, bytesFor, f32ToF16, f16ToF32, bf16ToF32 } from "./tensor.ts";
export { BufferPool, sizeClass } from "./pool.ts";
export { PipelineCache, renderShader, type Defines, type Constants } from "./pipeline.ts";
export { CommandBatch, f32, i32, type Param, type Dispatch } from "./batch.ts";
export { ShardedMatrix, type Shard } from "./shard.ts";
export { timeGpu } from "./timing.ts";
export { grid1d, ceilDiv } from "./grid.ts";
