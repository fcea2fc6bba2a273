// Where a decode step's GPU time goes, per kernel: generates with the engine (short prompt, many
// decoded tokens, so decode dominates) while every dispatch is bracketed by two timestamp queries
// (each dispatch then runs in its own pass, which costs a little; compare the shares, not sums
// with an unprofiled run). Prints one line per kernel (shader.entry and its numeric defines) with
// total ms, calls and share of the profiled GPU time, plus the run's wall time.
//   npx tsx bench/decode-profile.ts [--model 25m|tiny | --dir <HF checkpoint dir>] [--dtype f32|f16|auto]
//     [--batch 8] [--prompt 4] [--decode 16]
//     [--plain-gemv] (FULGUR_GEMV_SG=0: the old GEMV path) [--quantize int8|int4] [--quantize-head]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { acquireGpu, type Gpu } from "../src/gpu/index.ts";
import { loadModel } from "../src/model/model.ts";
import { writeTinyModel } from "../src/model/tiny.ts";
import { quantizeFlag } from "../src/server.ts";
import { decodePrompts } from "./decode-timing.ts";
import { ENGINE_MODELS } from "./engine.ts";
import { emit } from "./lib.ts";

const SET_SIZE = 4096;

/** Brackets every dispatch recorded on `gpu` with timestamps until `stop()` returns per-kernel ms. */
export function profileDispatches(
  gpu: Gpu,
  options: { shapes?: boolean } = {},
): { stop: () => Promise<Map<string, { ms: number; calls: number }>> } {
  const batch = gpu.commands;
  const original = batch.dispatch.bind(batch);
  const sets: GPUQuerySet[] = [];
  const keys: string[] = [];
  let used = SET_SIZE;
  batch.dispatch = ((d: Parameters<typeof batch.dispatch>[0]) => {
    if (used + 2 > SET_SIZE) {
      sets.push(gpu.device.createQuerySet({ type: "timestamp", count: SET_SIZE }));
      used = 0;
    }
    const set = sets[sets.length - 1];
    const defines = Object.entries(d.defines ?? {})
      .filter(([, v]) => typeof v === "number")
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    // With `shapes`, GEMMs are told apart by transposes and M×K×N (where the time goes by layer).
    const p = d.params as Record<string, number> | undefined;
    const shape =
      options.shapes && p && "m" in p && "k" in p
        ? ` ${d.defines?.TRANS_A ? "t" : "n"}${d.defines?.TRANS_B ? "t" : "n"} ${p.m}x${p.k}x${p.n}`
        : "";
    keys.push(`${d.shader}.${d.entry}${defines ? ` ${defines}` : ""}${shape}`);
    batch.writeTimestamp(set, used);
    original(d);
    batch.writeTimestamp(set, used + 1);
    used += 2;
  }) as typeof batch.dispatch;
  return {
    stop: async () => {
      batch.dispatch = original;
      const out = new Map<string, { ms: number; calls: number }>();
      for (let s = 0; s < sets.length; s++) {
        const count = s === sets.length - 1 ? used : SET_SIZE;
        const resolve = gpu.device.createBuffer({
          size: count * 8,
          usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
        });
        const staging = gpu.device.createBuffer({
          size: count * 8,
          usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        });
        const enc = gpu.device.createCommandEncoder();
        enc.resolveQuerySet(sets[s], 0, count, resolve, 0);
        enc.copyBufferToBuffer(resolve, 0, staging, 0, count * 8);
        gpu.device.queue.submit([enc.finish()]);
        await staging.mapAsync(GPUMapMode.READ);
        const t = new BigInt64Array(staging.getMappedRange().slice(0));
        staging.unmap();
        for (let i = 0; i < count; i += 2) {
          const key = keys[(s * SET_SIZE + i) / 2];
          const e = out.get(key) ?? { ms: 0, calls: 0 };
          e.ms += Number(t[i + 1] - t[i]) / 1e6;
          e.calls++;
          out.set(key, e);
        }
        resolve.destroy();
        staging.destroy();
        sets[s].destroy();
      }
      return out;
    },
  };
}

/** One JSON line for the wall time, the profiled GPU total, and each kernel by time (with its share). */
export function emitProfile(
  common: { bench: string } & Record<string, unknown>,
  kernels: Map<string, { ms: number; calls: number }>,
  wallMs: number,
): void {
  const sorted = [...kernels].sort((a, b) => b[1].ms - a[1].ms);
  const total = sorted.reduce((s, [, e]) => s + e.ms, 0);
  emit({ ...common, metric: "wall", value: +wallMs.toFixed(1), unit: "ms" });
  emit({ ...common, metric: "gpu_total", value: +total.toFixed(1), unit: "ms" });
  for (const [kernel, e] of sorted) {
    emit({
      ...common,
      metric: "kernel",
      kernel,
      value: +e.ms.toFixed(2),
      unit: "ms",
      calls: e.calls,
      share: +(e.ms / total).toFixed(3),
    });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name: string, fallback: string) => {
    const at = process.argv.indexOf(name);
    return at >= 0 ? process.argv[at + 1] : fallback;
  };
  const name = arg("--model", "25m");
  const batch = Number(arg("--batch", "8"));
  const prompt = Number(arg("--prompt", "4"));
  const decode = Number(arg("--decode", "16"));
  if (process.argv.includes("--plain-gemv")) process.env.FULGUR_GEMV_SG = "0";
  const given = process.argv.includes("--dir") ? arg("--dir", "") : null;
  const dtype = arg("--dtype", "auto") as "f32" | "f16" | "auto";
  const quantize = quantizeFlag(arg("--quantize", ""));
  const quantizeHead = process.argv.includes("--quantize-head");
  const spec = ENGINE_MODELS[name];
  if (!given && !spec) throw new Error(`--model must be one of ${Object.keys(ENGINE_MODELS).join(", ")}`);
  const gpu = await acquireGpu();
  if (!gpu.features.timestampQuery) throw new Error("decode-profile needs the timestamp-query feature");
  const dir = given ?? mkdtempSync(join(tmpdir(), `fulgur-decode-profile-${name}-`));
  try {
    if (!given) await writeTinyModel(dir, spec);
    const model = await loadModel(dir, {
      gpu,
      dtype,
      quantize,
      quantizeHead,
      maxSlots: batch,
      maxSeqLen: prompt + decode + 8,
    });
    const prompts = decodePrompts(batch, prompt, model.config.vocabSize);
    await model.generate(prompts, { temperature: 0, maxTokens: 2, ignoreEos: true }); // compile pipelines
    const profile = profileDispatches(gpu);
    const t0 = performance.now();
    await model.generate(prompts, { temperature: 0, maxTokens: decode, ignoreEos: true });
    const wallMs = performance.now() - t0;
    emitProfile(
      { bench: "decode-profile", model: given ?? name, batch, prompt, decode, adapter: gpu.info.description },
      await profile.stop(),
      wallMs,
    );
    model.dispose();
  } finally {
    if (!given) rmSync(dir, { recursive: true, force: true });
    gpu.destroy();
  }
}
