// One GPU device per test file, destroyed afterwards so the worker can exit.
import { afterAll, beforeAll } from "vitest";
import { type AcquireOptions, acquireGpu, type Gpu } from "../../src/gpu/index.ts";

export function useGpu(options?: AcquireOptions): () => Gpu {
  let gpu: Gpu | null = null;
  beforeAll(async () => {
    gpu = await acquireGpu(options);
  });
  afterAll(() => {
    gpu?.destroy();
  });
  return () => {
    if (!gpu) throw new Error("GPU not acquired yet");
    return gpu;
  };
}
