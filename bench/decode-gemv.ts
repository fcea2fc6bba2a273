// Decode GEMV by batch rows: every GEMV variant (gemv.wgsl and the subgroup-shared gemv_sg.wgsl)
// on Qwen2.5-0.5B's decode shapes (x·Wᵀ, W [N, K] in f32 and f16) at M = 1..8 rows, in one run,
// plus the autotuner's choice; int8/int4 weights through gemv_q.wgsl beside the widening path
// ("dequant": to f32, then the dense GEMV). Weights are read once per call whatever M is, so a
// kernel at the memory bound costs about the same at 8 rows as at 1: `rows8_over_rows1` says how
// close it gets; `<dtype>_over_f16` compares each format's best with f16's best in the same run.
//   npx tsx bench/decode-gemv.ts [--quick] [--rows 1,8] [--dtypes f32,f16,int8,int4]

import { fileURLToPath } from "node:url";
import { acquireGpu, type Gpu, timeGpu } from "../src/gpu/index.ts";
import { GEMV_Q_CANDIDATES, gemvQuantized } from "../src/gpu/kernels/gemv-quant.ts";
import { GEMV_VARIANTS, matmul, matmulVariants, tuneMatmul } from "../src/gpu/kernels/matmul.ts";
import { disposeQuantized, type QuantizedMatrix, uploadQuantized } from "../src/gpu/kernels/quant.ts";
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

type Dtype = "f32" | "f16" | QuantizedMatrix["kind"];
const BYTES_PER_WEIGHT: Record<Dtype, number> = { f32: 4, f16: 2, int8: 1, int4: 0.625 };

/** int8/int4: every gemv_q variant and the widening path, per row count; returns ms by variant. */
async function benchQuantized(
  gpu: Gpu,
  kind: QuantizedMatrix["kind"],
  k: number,
  n: number,
  rows: number[],
  repeats: number,
  adapter: string,
): Promise<Record<string, Record<number, number>>> {
  const w = uploadQuantized(gpu, kind, new Float32Array(n * k), n, k);
  const byVariant: Record<string, Record<number, number>> = {};
  for (const m of rows) {
    const x = gpu.zeros([m, k]);
    const y = gpu.zeros([m, n]);
    for (const variant of GEMV_Q_CANDIDATES) {
      const ms = await medianMs(gpu, () => gemvQuantized(x, w, { variant, out: y }), repeats);
      byVariant[variant] = { ...byVariant[variant], [m]: ms };
      emit({
        bench: "decode-gemv",
        metric: `gemv ${m}x${k}x${n} ${kind}`,
        value: +ms.toFixed(3),
        unit: "ms",
        variant,
        gbs: +((n * k * BYTES_PER_WEIGHT[kind]) / ms / 1e6).toFixed(2),
        adapter,
      });
    }
    x.dispose();
    y.dispose();
  }
  disposeQuantized(w);
  return byVariant;
}

export async function benchDecodeGemv(
  gpu: Gpu,
  opts: { shapes: [number, number][]; rows: number[]; dtypes: Dtype[]; repeats: number },
): Promise<void> {
  const adapter = gpu.info.description || `${gpu.info.vendor} ${gpu.info.architecture}`.trim();
  // Best ms per "k x n dtype" and row count, for the cross-format ratios.
  const bestOf: Record<string, Record<number, number>> = {};
  const noteBest = (key: string, byVariant: Record<string, Record<number, number>>) => {
    for (const m of opts.rows)
      bestOf[key] = { ...bestOf[key], [m]: Math.min(...Object.values(byVariant).map((t) => t[m])) };
  };
  for (const dtype of opts.dtypes) {
    if (dtype === "f16" && !gpu.features.shaderF16) continue;
    if (dtype === "int8" || dtype === "int4") {
      if (!gpu.features.subgroups) continue;
      for (const [k, n] of opts.shapes) {
        noteBest(`${k}x${n} ${dtype}`, await benchQuantized(gpu, dtype, k, n, opts.rows, opts.repeats, adapter));
      }
      continue;
    }
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
      noteBest(`${k}x${n} ${dtype}`, byVariant);
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
  for (const [k, n] of opts.shapes) {
    const f16 = bestOf[`${k}x${n} f16`];
    if (!f16) continue;
    for (const dtype of opts.dtypes) {
      const t = bestOf[`${k}x${n} ${dtype}`];
      if (!t || dtype === "f16") continue;
      for (const m of opts.rows) {
        emit({
          bench: "decode-gemv",
          metric: `${dtype}_over_f16 rows${m} ${k}x${n}`,
          value: +(t[m] / f16[m]).toFixed(3),
          unit: "x",
        });
      }
    }
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes("--quick");
  const rows = arg("--rows", "1,8").split(",").map(Number);
  const dtypes = arg("--dtypes", "f32,f16,int8,int4").split(",") as Dtype[];
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
