// GEMM throughput against the adapter's peak: the autotuner's chosen variant on an N×N×N x·Wᵀ
// product with W stored as f32 and as f16 (f32 accumulation, the layout of served weights), as
// GFLOP/s and as a fraction of the adapter's datasheet peak. Our kernels accumulate in f32 on the
// shader cores, so the fraction that says how close they get is against the f32 (FMA) peak; the
// f16 tensor-core peak is given beside it for context, since WebGPU does not reach matrix units.
// Peaks come from FULGUR_PEAK_F32_GFLOPS / FULGUR_PEAK_F16_GFLOPS, else a small table of adapters
// matched on Dawn's adapter strings, else (software adapters) an estimate from the CPU. Also the
// decode GEMV's time at 8 rows over 1 row (bandwidth-bound: should be near 1).
//   npx tsx bench/gemm-peak.ts [--n 4096] [--quick]

import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { acquireGpu, type Gpu, timeGpu } from "../src/gpu/index.ts";
import { matmul, matmulVariants, tuneMatmul } from "../src/gpu/kernels/matmul.ts";
import { emit } from "./lib.ts";

interface Peak {
  /** Dense FP32 FMA peak, GFLOP/s (boost clock). */
  f32: number;
  /** Dense FP16 peak on matrix units (tensor cores), GFLOP/s, when the part has them. */
  f16Tensor?: number;
  source: string;
}

/** Datasheet peaks (dense, boost clock) of adapters this project has run on or is likely to. */
export const ADAPTER_PEAKS: { match: RegExp; peak: Peak }[] = [
  {
    match: /H200|H100.*(SXM|HBM3)/i,
    peak: { f32: 66_900, f16Tensor: 989_000, source: "NVIDIA H100/H200 SXM datasheet" },
  },
  { match: /H100/i, peak: { f32: 51_200, f16Tensor: 756_000, source: "NVIDIA H100 PCIe datasheet" } },
  { match: /A100/i, peak: { f32: 19_500, f16Tensor: 312_000, source: "NVIDIA A100 datasheet" } },
  { match: /L40S/i, peak: { f32: 91_600, f16Tensor: 362_000, source: "NVIDIA L40S datasheet" } },
  { match: /\bL4\b/i, peak: { f32: 30_300, f16Tensor: 121_000, source: "NVIDIA L4 datasheet" } },
  { match: /RTX 4090/i, peak: { f32: 82_600, f16Tensor: 330_000, source: "NVIDIA RTX 4090 (Ada whitepaper)" } },
  { match: /RTX 3090/i, peak: { f32: 35_600, f16Tensor: 142_000, source: "NVIDIA RTX 3090 (Ampere whitepaper)" } },
  { match: /Apple M1(?! (Pro|Max|Ultra))/i, peak: { f32: 2_600, source: "Apple M1 8-core GPU" } },
  { match: /Apple M2(?! (Pro|Max|Ultra))/i, peak: { f32: 3_600, source: "Apple M2 10-core GPU" } },
];

function envPeak(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!(n > 0)) throw new Error(`${name} must be a positive number of GFLOP/s, got ${v}`);
  return n;
}

/** The CPU clock (GHz): Node's figure, else /proc/cpuinfo's (VMs often report 0 to Node). */
function cpuGhz(): number {
  const fromNode = Math.max(...cpus().map((c) => c.speed));
  if (fromNode > 0) return fromNode / 1000;
  try {
    const mhz = /cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync("/proc/cpuinfo", "utf8"));
    return mhz ? Math.round(Number(mhz[1])) / 1000 : 0;
  } catch {
    return 0;
  }
}

/** The adapter's peak: env vars, else the table, else a CPU estimate for software adapters. */
export function adapterPeak(gpu: Gpu): Peak | null {
  const f32 = envPeak("FULGUR_PEAK_F32_GFLOPS");
  const f16 = envPeak("FULGUR_PEAK_F16_GFLOPS");
  if (f32 !== undefined) return { f32, f16Tensor: f16, source: "env FULGUR_PEAK_*_GFLOPS" };
  const text = [gpu.info.description, gpu.info.device, gpu.info.architecture, gpu.info.vendor].join(" ");
  const hit = ADAPTER_PEAKS.find((p) => p.match.test(text));
  if (hit) return hit.peak;
  if (/llvmpipe|lavapipe|swiftshader/i.test(text)) {
    // A software rasteriser runs on the CPU: AVX2 = 2 FMA units × 8 f32 lanes × 2 FLOP per cycle.
    const list = cpus();
    const ghz = cpuGhz();
    if (!ghz) return null;
    return { f32: list.length * ghz * 32, source: `CPU estimate: ${list.length} cores × ${ghz} GHz × 32 FLOP/cycle` };
  }
  return null;
}

/** Times the chosen GEMM variant for f32 and f16 weights on N³ and emits GFLOP/s and the peak fraction. */
export async function benchGemmPeak(gpu: Gpu, n: number): Promise<void> {
  const adapter = gpu.info.description || `${gpu.info.vendor} ${gpu.info.architecture}`.trim();
  const peak = adapterPeak(gpu);
  const a = gpu.zeros([n, n]);
  const c = gpu.zeros([n, n]);
  const dtypes: ("f32" | "f16")[] = gpu.features.shaderF16 ? ["f32", "f16"] : ["f32"];
  if (!gpu.features.shaderF16)
    emit({
      bench: "gemm-peak",
      metric: "gemm_f16_weights",
      value: 0,
      unit: "skipped",
      adapter,
      reason: "no shader-f16",
    });
  for (const dtype of dtypes) {
    const w = dtype === "f32" ? gpu.zeros([n, n]) : gpu.tensor([n, n], "f16", new Float32Array(n * n));
    try {
      const opts = { transB: true, out: c };
      await tuneMatmul(a, w, opts);
      const variant = matmulVariants(a, w, opts)[0];
      matmul(a, w, opts);
      await gpu.sync();
      const times: number[] = [];
      for (let r = 0; r < 3; r++) times.push((await timeGpu(gpu, () => matmul(a, w, opts))).ms);
      times.sort((x, y) => x - y);
      const ms = times[1];
      const gflops = (2 * n * n * n) / ms / 1e6;
      const common = { bench: "gemm-peak", adapter, n, weights: dtype, variant, ms: +ms.toFixed(3) };
      emit({ ...common, metric: `gemm_${dtype}_weights`, value: +gflops.toFixed(1), unit: "GFLOP/s" });
      if (peak) {
        emit({
          ...common,
          metric: `gemm_${dtype}_weights_fraction_of_f32_peak`,
          value: +(gflops / peak.f32).toFixed(4),
          unit: "ratio",
          peakGflops: peak.f32,
          peakSource: peak.source,
        });
        if (peak.f16Tensor && dtype === "f16")
          emit({
            ...common,
            metric: "gemm_f16_weights_fraction_of_f16_tensor_peak",
            value: +(gflops / peak.f16Tensor).toFixed(5),
            unit: "ratio",
            peakGflops: peak.f16Tensor,
            peakSource: peak.source,
          });
      } else {
        emit({ ...common, metric: "adapter_peak", value: 0, unit: "unknown", reason: "set FULGUR_PEAK_F32_GFLOPS" });
      }
    } finally {
      w.dispose();
    }
  }
  a.dispose();
  c.dispose();
}

/**
 * Decode GEMV cost by batch rows: one weight read serves up to 8 rows, so a bandwidth-bound
 * kernel should cost about the same at 8 rows as at 1; the ratio says whether it does.
 */
export async function benchGemvRows(gpu: Gpu, n: number, k: number): Promise<void> {
  const adapter = gpu.info.description || `${gpu.info.vendor} ${gpu.info.architecture}`.trim();
  const w = gpu.zeros([n, k]);
  const ms: Record<number, number> = {};
  for (const m of [1, 8]) {
    const x = gpu.zeros([m, k]);
    const y = gpu.zeros([m, n]);
    const opts = { transB: true, out: y };
    await tuneMatmul(x, w, opts);
    matmul(x, w, opts);
    await gpu.sync();
    const times: number[] = [];
    for (let r = 0; r < 5; r++) times.push((await timeGpu(gpu, () => matmul(x, w, opts))).ms);
    ms[m] = times.sort((a, b) => a - b)[2];
    const variant = matmulVariants(x, w, opts)[0];
    emit({
      bench: "gemm-peak",
      adapter,
      metric: `gemv_time_rows_${m}`,
      value: +ms[m].toFixed(3),
      unit: "ms",
      n,
      k,
      variant,
    });
    x.dispose();
    y.dispose();
  }
  emit({
    bench: "gemm-peak",
    adapter,
    metric: "gemv_rows8_over_rows1_time",
    value: +(ms[8] / ms[1]).toFixed(2),
    unit: "x",
    n,
    k,
  });
  w.dispose();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf("--n");
  const n = at >= 0 ? Number(process.argv[at + 1]) : process.argv.includes("--quick") ? 512 : 4096;
  if (!Number.isInteger(n) || n < 16) throw new Error(`--n must be an integer >= 16, got ${process.argv[at + 1]}`);
  const gpu = await acquireGpu();
  try {
    await benchGemmPeak(gpu, n);
    await benchGemvRows(gpu, 4864, 896);
  } finally {
    gpu.destroy();
  }
}
