// Decode GEMV by batch rows: every GEMV variant (gemv.wgsl and the subgroup-shared gemv_sg.wgsl)
// on Qwen2.5-0.5B's decode shapes (x·Wᵀ, W [N, K] in f32 and f16) at M = 1..8 rows, in one run,
// plus the autotuner's choice. Weights are read once per call whatever M is, so a kernel at the
// memory bound costs about the same at 8 rows as at 1: `rows8_over_rows1` says how close it gets.
//   npx tsx bench/decode-gemv.ts [--quick] [--rows 1,8] [--dtypes f32,f16]

import { fileURLToPath } from "node:url";
import { acquireGpu, type Gpu, timeGpu } from "../src/gpu/index.ts";
import { GEMV_VARIANTS, matmul, matmulVariants, tuneMatmul } from "../src/gpu/kernels/matmul.ts";
import { emit } from "./lib.ts";

function arg(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : fallback;
}

async function medianMs(gpu: Gpu, record: () => void, repeats: number): Promise<number> {
  record();
  await gpu.sync();
  const t: number[] = [];
  for (let i = 0; i < repeats; i++) t.push((await timeGpu(gpu, record)).ms);
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

export async function benchDecodeGemv(
  gpu: Gpu,
  opts: { shapes: [number, number][]; rows: number[]; dtypes: ("f32" | "f16")[]; repeats: number },
): Promise<void> {
  const adapter = gpu.info.description || `${gpu.info.vendor} ${gpu.info.architecture}`.trim();
  for (const dtype of opts.dtypes) {
    if (dtype === "f16" && !gpu.features.shaderF16) continue;
    for (const [k, n] of opts.shapes) {
      const w = dtype === "f32" ? gpu.zeros([n, k]) : gpu.tensor([n, k], "f16", new Float32Array(n * k));
      const byVariant: Record<string, Record<number, number>> = {};
      for (const m of opts.rows) {
        const x = gpu.zeros([m, k]);
        const y = gpu.zeros([m, n]);
        const mo = { transB: true, out: y };
        for (const v of GEMV_VARIANTS) {
          if (v.rn && !gpu.features.subgroups) continue;
          const ms = await medianMs(gpu, () => matmul(x, w, { ...mo, variant: v.name }), opts.repeats);
          byVariant[v.name] = { ...byVariant[v.name], [m]: ms };
          const bytes = n * k * (dtype === "f32" ? 4 : 2);
          emit({
            bench: "decode-gemv",
            metric: `gemv ${m}x${k}x${n} ${dtype}`,
            value: +ms.toFixed(3),
            unit: "ms",
            variant: v.name,
            gbs: +(bytes / ms / 1e6).toFixed(2),
            adapter,
          });
        }
        await tuneMatmul(x, w, mo);
        const chosen = matmulVariants(x, w, mo)[0];
        emit({
          bench: "decode-gemv",
          metric: `chosen ${m}x${k}x${n} ${dtype}`,
          value: 0,
          unit: "variant",
          variant: chosen,
        });
        x.dispose();
        y.dispose();
      }
      const lo = Math.min(...opts.rows);
      const hi = Math.max(...opts.rows);
      for (const [name, t] of Object.entries(byVariant)) {
        emit({
          bench: "decode-gemv",
          metric: `rows${hi}_over_rows${lo} ${k}x${n} ${dtype}`,
          value: +(t[hi] / t[lo]).toFixed(2),
          unit: "x",
          variant: name,
        });
      }
      const best = (m: number, sg: boolean) =>
        Math.min(
          ...Object.entries(byVariant)
            .filter(([v]) => v.startsWith("gemv-sg") === sg)
            .map(([, t]) => t[m]),
        );
      if (gpu.features.subgroups)
        emit({
          bench: "decode-gemv",
          metric: `best_sg_over_best_plain rows${hi} ${k}x${n} ${dtype}`,
          value: +(best(hi, true) / best(hi, false)).toFixed(3),
          unit: "x",
        });
      w.dispose();
    }
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes("--quick");
  const rows = arg("--rows", "1,8").split(",").map(Number);
  const dtypes = arg("--dtypes", "f32,f16").split(",") as ("f32" | "f16")[];
  const shapes: [number, number][] = quick
    ? [[896, 4864]]
    : [
        [896, 4864],
        [4864, 896],
        [896, 896],
      ];
  const gpu = await acquireGpu();
  try {
    await benchDecodeGemv(gpu, { shapes, rows, dtypes, repeats: quick ? 3 : 5 });
  } finally {
    gpu.destroy();
  }
}
