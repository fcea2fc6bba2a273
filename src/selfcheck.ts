// The GPU self-check: proves this machine can run Fulgur's kernels (finds an adapter, runs real
// WGSL, checks the result, measures copy bandwidth). `fulgur selfcheck`, and the demo's first step.

import { acquireGpu, type Gpu } from "./gpu/device.ts";
import { copy, scale } from "./gpu/kernels/copy.ts";
import { timeGpu } from "./gpu/timing.ts";

export interface SelfCheckResult {
  ok: boolean;
  adapter: Gpu["info"];
  features: Gpu["features"];
  maxBindingSize: number;
  copyGBps: number;
  error?: string;
}

/** Runs the self-check on a fresh device, reporting progress through `log`. */
export async function selfCheck(log: (line: string) => void = () => {}): Promise<SelfCheckResult> {
  const gpu = await acquireGpu();
  try {
    const { vendor, architecture, description, runtime } = gpu.info;
    log(`adapter: ${description || vendor} (${architecture || "unknown architecture"}, ${runtime})`);
    log(
      `features: shader-f16 ${yes(gpu.features.shaderF16)}, subgroups ${yes(gpu.features.subgroups)}, ` +
        `timestamp-query ${yes(gpu.features.timestampQuery)}; max binding ${(gpu.maxBindingSize / 2 ** 20).toFixed(0)} MiB`,
    );
    const n = 1 << 22;
    const input = new Float32Array(n);
    for (let i = 0; i < n; i++) input[i] = (i % 1000) - 500;
    const x = gpu.tensor([n], "f32", input);
    const y = gpu.tensor([n]);
    scale(x, y, 0.5);
    const out = await y.read();
    let error: string | undefined;
    for (let i = 0; i < n; i += 997) {
      if (out[i] !== input[i] * 0.5) {
        error = `kernel result wrong at ${i}: ${out[i]} != ${input[i] * 0.5}`;
        break;
      }
    }
    log(error ? `compute: FAILED (${error})` : "compute: a WGSL kernel ran and its result is correct");
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 5; i++) best = Math.min(best, (await timeGpu(gpu, () => copy(x, y))).ms);
    const copyGBps = (2 * n * 4) / (best / 1000) / 1e9;
    log(`copy bandwidth: ${copyGBps.toFixed(1)} GB/s`);
    x.dispose();
    y.dispose();
    return {
      ok: !error,
      adapter: gpu.info,
      features: gpu.features,
      maxBindingSize: gpu.maxBindingSize,
      copyGBps,
      error,
    };
  } finally {
    gpu.destroy();
  }
}

function yes(b: boolean): string {
  return b ? "yes" : "no";
}
