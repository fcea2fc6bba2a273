// Matmul family throughput: every GEMM variant side by side (GFLOP/s) on 1024³ and the
// Qwen2-0.5B training shapes (512 tokens, x·Wᵀ), every GEMV variant on decode shapes (GB/s of
// weight traffic, and as a ratio to the copy kernel's GB/s measured in alternating rounds of the
// same run), and LoRA forward/backward at 512×896×896 r=16. The variant autotune picks for each
// shape carries `chosen: true`.
//
//   npx tsx bench/kernels/matmul.ts          (FULGUR_AUTOTUNE=0: "chosen" = the adapter default)
//
// GEMM shapes are written M×K×N: 512×896×4864 is x [512, 896] · Wᵀ with W [4864, 896].

import { fileURLToPath } from "node:url";
import { acquireGpu, type Gpu, ShardedMatrix, type Tensor, timeGpu } from "../../src/gpu/index.ts";
import { copy } from "../../src/gpu/kernels/copy.ts";
import { loraBackward, loraForward } from "../../src/gpu/kernels/lora.ts";
import {
  GEMM_VARIANTS,
  GEMV_VARIANTS,
  type MatmulOptions,
  matmul,
  matmulVariants,
  tuneMatmul,
} from "../../src/gpu/kernels/matmul.ts";
import { emit } from "../lib.ts";

/** Timed runs per result (the median is reported). */
const ROUNDS = 3;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median milliseconds of `op` (each run GPU-timed, `reps` calls per timed batch). */
async function medianMs(gpu: Gpu, op: () => void, reps = 1): Promise<number> {
  op();
  await gpu.sync();
  const times: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const { ms } = await timeGpu(gpu, () => {
      for (let i = 0; i < reps; i++) op();
    });
    times.push(ms / reps);
  }
  return median(times);
}

/** The variant matmul() picks after tuning (or the adapter default when tuning is off). */
async function chosenVariant(a: Tensor, b: Tensor | ShardedMatrix, opts: MatmulOptions): Promise<string> {
  await tuneMatmul(a, b, opts);
  return matmulVariants(a, b, opts)[0];
}

async function benchGemm(gpu: Gpu, m: number, k: number, n: number, transB: boolean): Promise<void> {
  const adapter = gpu.info.description;
  const a = gpu.zeros([m, k]);
  const b = gpu.zeros(transB ? [n, k] : [k, n]);
  const c = gpu.zeros([m, n]);
  const opts = { transB, out: c };
  const chosen = await chosenVariant(a, b, opts);
  const flop = 2 * m * n * k;
  for (const v of GEMM_VARIANTS) {
    const ms = await medianMs(gpu, () => matmul(a, b, { ...opts, variant: v.name }));
    emit({
      bench: "matmul",
      metric: `gemm ${m}x${k}x${n}${transB ? " x·Wᵀ" : ""}`,
      value: +(flop / ms / 1e6).toFixed(2),
      unit: "GFLOP/s",
      adapter,
      variant: v.name,
      chosen: v.name === chosen,
      m,
      n,
      k,
      ms: +ms.toFixed(3),
    });
  }
  for (const t of [a, b, c]) t.dispose();
}

/** GB/s of the copy kernel over `bytes` (read + write counted). */
async function copyGBs(gpu: Gpu, src: Tensor, dst: Tensor): Promise<number> {
  const ms = await medianMs(gpu, () => copy(src, dst), 4);
  return (2 * src.byteLength) / ms / 1e6;
}

async function benchGemv(gpu: Gpu, k: number, n: number, dtype: "f32" | "f16"): Promise<void> {
  const adapter = gpu.info.description;
  const x = gpu.zeros([1, k]);
  const w = ShardedMatrix.upload(gpu, n, k, null, dtype);
  const y = gpu.zeros([1, n]);
  const opts = { transB: true, out: y };
  const chosen = await chosenVariant(x, w, opts);
  const bytes = n * k * (dtype === "f16" ? 2 : 4) + 4 * (k + n);
  // the copy yardstick moves 64 MiB (or the weight's size if smaller): big enough to stream
  const copyElems = Math.min(16 << 20, Math.floor(bytes / 16) * 4);
  const src = gpu.zeros([copyElems]);
  const dst = gpu.zeros([copyElems]);
  for (const v of GEMV_VARIANTS) {
    const gemv: number[] = [];
    const cp: number[] = [];
    // alternate so both see the same machine load (other processes share lavapipe's CPU)
    for (let r = 0; r < ROUNDS; r++) {
      gemv.push(bytes / (await medianMs(gpu, () => matmul(x, w, { ...opts, variant: v.name }))) / 1e6);
      cp.push(await copyGBs(gpu, src, dst));
    }
    const gbs = median(gemv);
    const copyBw = median(cp);
    emit({
      bench: "matmul",
      metric: `gemv 1x${k}x${n} ${dtype}`,
      value: +gbs.toFixed(2),
      unit: "GB/s",
      adapter,
      variant: v.name,
      chosen: v.name === chosen,
      shards: w.shards.length,
      copyGBs: +copyBw.toFixed(2),
      ratioToCopy: +(gbs / copyBw).toFixed(3),
    });
  }
  for (const t of [x, y, src, dst, w]) t.dispose();
}

async function benchLora(gpu: Gpu, m: number, inF: number, outF: number, rank: number): Promise<void> {
  const adapter = gpu.info.description;
  const x = gpu.zeros([m, inF]);
  const w = gpu.zeros([outF, inF]);
  const a = gpu.zeros([rank, inF]);
  const b = gpu.zeros([outF, rank]);
  const dy = gpu.zeros([m, outF]);
  const y = gpu.zeros([m, outF]);
  const u = gpu.zeros([m, rank]);
  const dx = gpu.zeros([m, inF]);
  const da = gpu.zeros([rank, inF]);
  const db = gpu.zeros([outF, rank]);
  const scale = 32 / rank;
  const fwdFlop = 2 * m * inF * (outF + rank) + 2 * m * rank * outF;
  const bwdFlop = 2 * m * outF * rank + 2 * m * inF * (outF + rank) + 2 * rank * m * inF + 2 * outF * m * rank;
  const fwd = await medianMs(gpu, () => loraForward(x, w, a, b, scale, { out: y, u }));
  const bwd = await medianMs(gpu, () => loraBackward(dy, x, u, w, a, b, scale, { dx, da, db }));
  const variant = matmulVariants(x, w, { transB: true })[0];
  for (const [metric, flop, ms] of [
    ["lora forward", fwdFlop, fwd],
    ["lora backward", bwdFlop, bwd],
  ] as const) {
    emit({
      bench: "matmul",
      metric: `${metric} ${m}x${inF}x${outF} r=${rank}`,
      value: +(flop / ms / 1e6).toFixed(2),
      unit: "GFLOP/s",
      adapter,
      variant,
      chosen: true,
      ms: +ms.toFixed(3),
    });
  }
  for (const t of [x, w, a, b, dy, y, u, dx, da, db]) t.dispose();
}

/** Runs every matmul benchmark on `gpu`, one JSON line per result. */
export async function benchMatmul(gpu: Gpu): Promise<void> {
  await benchGemm(gpu, 1024, 1024, 1024, false);
  await benchGemm(gpu, 1024, 1024, 1024, true);
  await benchGemm(gpu, 512, 896, 896, true);
  await benchGemm(gpu, 512, 896, 4864, true);
  await benchGemm(gpu, 512, 4864, 896, true);
  await benchGemv(gpu, 896, 151936, "f32");
  await benchGemv(gpu, 896, 4864, "f32");
  if (gpu.features.shaderF16) {
    await benchGemv(gpu, 896, 151936, "f16");
    await benchGemv(gpu, 896, 4864, "f16");
  }
  await benchLora(gpu, 512, 896, 896, 16);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const gpu = await acquireGpu();
  try {
    await benchMatmul(gpu);
  } finally {
    gpu.destroy();
  }
}
