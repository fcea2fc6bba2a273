// Engine throughput: prefill and decode tokens/s at batch 1, 8 and 32, time to first token and
// peak pooled GPU memory, for the tiny test model and a ~25M-parameter model (both random-init,
// written in HF format by writeTinyModel). Decode runs with ignoreEos so every request generates
// exactly `decode` tokens.
//   npx tsx bench/engine.ts [--quick]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { acquireGpu, type Gpu } from "../src/gpu/index.ts";
import { loadModel } from "../src/model/model.ts";
import { type TinyModelSpec, writeTinyModel } from "../src/model/tiny.ts";
import { emit } from "./lib.ts";

export const ENGINE_MODELS: Record<string, TinyModelSpec> = {
  tiny: { hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 128, seed: 1 },
  "25m": { hidden: 512, layers: 8, heads: 8, kvHeads: 2, intermediate: 1536, seed: 1, tie: false },
};

/** Runs the engine benchmark on `gpu` for each model. */
export async function benchEngine(gpu: Gpu, options: { quick?: boolean } = {}): Promise<void> {
  const adapter = gpu.info.description;
  for (const [name, spec] of Object.entries(ENGINE_MODELS)) {
    const dir = mkdtempSync(join(tmpdir(), `fulgur-bench-${name}-`));
    try {
      await writeTinyModel(dir, spec);
      const model = await loadModel(dir, { gpu, maxSlots: 32, maxSeqLen: 320, maxStepTokens: 4096 });
      const params = countParams(model.config);
      const promptLen = 128;
      const decode = options.quick ? 8 : 32;
      const batches = options.quick ? [1, 8] : [1, 8, 32];
      const prompt = (i: number) =>
        Array.from({ length: promptLen }, (_, t) => (i * 7919 + t * 31) % model.config.vocabSize);
      // Warm up pipelines and the autotuner's choices for these shapes.
      await model.generate([prompt(0)], { temperature: 0, maxTokens: 2, ignoreEos: true });
      for (const batch of batches) {
        const prompts = Array.from({ length: batch }, (_, i) => prompt(i + 1));
        gpu.pool.peakBytes = 0;
        // One run: every prompt is fed in the first step (maxStepTokens covers the batch), so the
        // slowest time to first token is the prefill, and the rest is decode.
        const t0 = performance.now();
        const out = await model.generate(prompts, { temperature: 0, maxTokens: decode + 1, ignoreEos: true });
        const totalMs = performance.now() - t0;
        const prefillMs = Math.max(...out.map((g) => g.timeToFirstTokenMs));
        const common = { bench: "engine", model: name, params, batch, promptLen, adapter };
        emit({
          ...common,
          metric: "prefill_tokens_per_s",
          value: (batch * promptLen) / (prefillMs / 1000),
          unit: "tok/s",
        });
        emit({
          ...common,
          metric: "decode_tokens_per_s",
          value: (batch * decode) / ((totalMs - prefillMs) / 1000),
          unit: "tok/s",
        });
        const ttft = out.reduce((a, g) => a + g.timeToFirstTokenMs, 0) / out.length;
        emit({ ...common, metric: "time_to_first_token", value: ttft, unit: "ms" });
        emit({ ...common, metric: "peak_pool_memory", value: gpu.pool.peakBytes / 2 ** 20, unit: "MiB" });
      }
      model.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

function countParams(c: {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  tieWordEmbeddings: boolean;
}): number {
  const h = c.hiddenSize;
  const attn = h * c.numHeads * c.headDim * 2 + h * c.numKvHeads * c.headDim * 2;
  const mlp = 3 * h * c.intermediateSize;
  const embed = c.vocabSize * h * (c.tieWordEmbeddings ? 1 : 2);
  return c.numLayers * (attn + mlp + 2 * h) + embed + h;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const gpu = await acquireGpu();
  try {
    await benchEngine(gpu, { quick: process.argv.includes("--quick") });
  } finally {
    gpu.destroy();
  }
}
