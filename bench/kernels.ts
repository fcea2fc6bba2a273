// Every kernel family's benchmark in one run on one adapter: matmul/GEMV/LoRA (GFLOP/s), the
// per-token ops, attention and the vocabulary ops/optimizer (GB/s), each beside the copy kernel.
//   npx tsx bench/kernels.ts [matmul|pointwise|attention|vocab ...]

import { fileURLToPath } from "node:url";
import { acquireGpu, type Gpu } from "../src/gpu/index.ts";
import { benchAttention } from "./kernels/attention.ts";
import { benchMatmul } from "./kernels/matmul.ts";
import { benchPointwise } from "./kernels/pointwise.ts";
import { benchVocab } from "./kernels/vocab.ts";

export const KERNEL_BENCHES: Record<string, (gpu: Gpu) => Promise<void>> = {
  matmul: benchMatmul,
  pointwise: benchPointwise,
  attention: benchAttention,
  vocab: benchVocab,
};

/** Runs the named families (all when none are named). */
export async function benchKernels(gpu: Gpu, names: string[] = []): Promise<void> {
  const chosen = names.length > 0 ? names : Object.keys(KERNEL_BENCHES);
  for (const name of chosen) {
    const run = KERNEL_BENCHES[name];
    if (!run) throw new Error(`unknown kernel bench '${name}' (known: ${Object.keys(KERNEL_BENCHES).join(", ")})`);
    await run(gpu);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const gpu = await acquireGpu();
  try {
    await benchKernels(gpu, process.argv.slice(2));
  } finally {
    gpu.destroy();
  }
}
