// The GPU runtime's public surface.

export { CommandBatch, type Dispatch } from "./batch.ts";
export {
  type AcquireOptions,
  type AdapterDescription,
  acquireGpu,
  Gpu,
  type GpuFeatures,
  NoAdapterError,
} from "./device.ts";
export { ceilDiv, grid1d } from "./grid.ts";
export {
  type Constants,
  type Defines,
  PipelineCache,
  type PipelineKey,
  renderShader,
  type ShaderEntries,
  type ShaderName,
  type ShaderParams,
} from "./pipeline.ts";
export { BufferPool, sizeClass } from "./pool.ts";
export { type Shard, ShardedMatrix } from "./shard.ts";
export { bf16ToF32, bytesFor, type DType, f16ToF32, f32ToF16, numel, readAll, Tensor } from "./tensor.ts";
export { timeGpu } from "./timing.ts";
