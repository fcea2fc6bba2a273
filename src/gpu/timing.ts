// GPU time of recorded work: timestamp queries where the adapter has them (Dawn rounds to 1 µs),
// else wall-clock time around a full submit-and-wait. Benchmarks use this; tests never assert on it.

import type { Gpu } from "./device.ts";

/** Runs `record` (which records dispatches), waits for the GPU, and returns elapsed milliseconds. */
export async function timeGpu(gpu: Gpu, record: () => void): Promise<{ ms: number; source: "timestamp" | "wall" }> {
  await gpu.sync();
  if (!gpu.features.timestampQuery) {
    const t0 = performance.now();
    record();
    await gpu.sync();
    return { ms: performance.now() - t0, source: "wall" };
  }
  const device = gpu.device;
  const querySet = device.createQuerySet({ type: "timestamp", count: 2 });
  const resolve = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const staging = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const batch = gpu.commands;
    batch.writeTimestamp(querySet, 0);
    record();
    batch.writeTimestamp(querySet, 1);
    batch.resolveQuery(querySet, 2, resolve);
    batch.copyBufferToBuffer(resolve, 0, staging, 0, 16);
    gpu.flush();
    await staging.mapAsync(GPUMapMode.READ);
    const [t0, t1] = new BigInt64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    return { ms: Number(t1 - t0) / 1e6, source: "timestamp" };
  } finally {
    querySet.destroy();
    resolve.destroy();
    staging.destroy();
  }
}
