// GPU memory of LoRA training and serving by model size, from the per-component formula in
// docs/memory.md: weights + LoRA/AdamW state + activations per trained token (+ the LM head's
// logits chunk), and KV cache per served token. The activation term counts the tensors the
// training forward keeps per layer; `--calibrate file.jsonl` scales it by what bench/scale.ts
// measured (update_memory_activations ÷ the formula at the same shape), so the table is computed
// from the measurement. Prints the markdown table of docs/memory.md.
//   npx tsx bench/memory-model.ts [--calibrate a.jsonl,b.jsonl] [--budget-gib 12] [--rank 16]

import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type ModelConfig, parseModelConfig } from "../src/model/config.ts";

const CONFIG_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "test", "fixtures", "configs");
const GiB = 2 ** 30;

export interface MemoryTerms {
  /** Bytes of frozen weights (embedding, linears and an untied head at `bytes`; norms f32). */
  weights: number;
  /** LoRA A/B + gradient + AdamW m and v, all f32. */
  loraState: number;
  /** Bytes kept per trained token (all layers), before calibration. */
  activationPerToken: number;
  /** The LM head's transient in training: one vocabulary block's logits and dLogits. */
  headChunk: number;
  /** KV cache bytes per served token (f32 keys and values). */
  kvPerToken: number;
}

/** The formula's terms for a config; `bytes` = 4 (f32 weights) or 2 (f16). */
export function memoryTerms(c: ModelConfig, bytes: number, rank = 16, tokens = 1024): MemoryTerms {
  const h = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const m = c.intermediateSize;
  const perLayerLinear = h * q * 2 + h * kv * 2 + 3 * h * m;
  const head = c.tieWordEmbeddings ? 0 : c.vocabSize * h * bytes;
  const weights = c.vocabSize * h * bytes + c.numLayers * (perLayerLinear * bytes + 2 * h * 4) + head;
  const loraPerLayer = rank * (h + q + (h + kv) * 2 + (q + h) + 3 * (h + m));
  const loraState = c.numLayers * loraPerLayer * 4 * 4;
  // Per layer and token, the forward keeps: normed input, o_proj output, residual, post-norm
  // input, down output, layer output (6h); q raw/rotated + attention output (3q); k raw/rotated
  // and v (3kv); gate, up, SwiGLU (3m); LoRA u per projection (7r); norms' rstd and the
  // attention's log-sum-exp (2 + heads).
  const floats = 6 * h + 3 * q + 3 * kv + 3 * m + 7 * rank + 2 + c.numHeads;
  const activationPerToken = c.numLayers * floats * 4 + 2 * h * 4;
  // The LM head runs by vocabulary blocks of at most 16 MiB of logits (src/gpu/kernels/lmhead.ts):
  // one block's logits and dLogits at a time, plus per-row partials.
  const headChunk = 2 * Math.min(16 * 2 ** 20, tokens * c.vocabSize * 4) + tokens * 64;
  const kvPerToken = 2 * c.numLayers * kv * 4;
  return { weights, loraState, activationPerToken, headChunk, kvPerToken };
}

/** The measured/formula ratio of activation bytes from bench/scale.ts JSON lines, if any. */
export function calibration(path: string): { factor: number; weightsFactor: number; from: string } | null {
  const records = readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map(
      (l) =>
        JSON.parse(l) as {
          metric: string;
          model: string;
          value: number;
          vocab?: number;
          microTokens: number;
          loraRank?: number;
          dtype?: string;
        },
    );
  for (const r of records) {
    if (r.metric !== "update_memory_activations") continue;
    const file = readdirSync(CONFIG_DIR).find((f) => f.startsWith(r.model));
    if (!file) continue;
    const raw = JSON.parse(readFileSync(join(CONFIG_DIR, file), "utf8"));
    const config = parseModelConfig({ ...raw, vocab_size: r.vocab ?? raw.vocab_size });
    const tokens = r.microTokens as number;
    const t = memoryTerms(config, r.dtype === "f16" ? 2 : 4, r.loraRank ?? 16, tokens);
    const predicted = tokens * t.activationPerToken + t.headChunk;
    // Pooled buffers are rounded up to size classes (≤ 12.5 %): measured weights over the formula.
    const w = records.find((x) => x.metric === "update_memory_weights" && x.model === r.model && x.vocab === r.vocab);
    const weightsFactor = w ? (w.value * 2 ** 20) / t.weights : 1;
    return {
      factor: (r.value * 2 ** 20) / predicted,
      weightsFactor,
      from: `${r.model} (vocab ${config.vocabSize}), ${tokens} tokens: activations measured ${r.value.toFixed(0)} MiB vs formula ${(predicted / 2 ** 20).toFixed(0)} MiB; weights measured ${w ? w.value.toFixed(0) : "?"} MiB vs formula ${(t.weights / 2 ** 20).toFixed(0)} MiB`,
    };
  }
  return null;
}

const MODELS = ["qwen2.5-0.5b", "qwen3-0.6b", "llama-3.2-1b", "qwen3-1.7b", "qwen3-4b"];

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (flag: string) => {
    const at = process.argv.indexOf(flag);
    return at >= 0 ? process.argv[at + 1] : undefined;
  };
  const budget = Number(arg("--budget-gib") ?? 12) * GiB;
  const rank = Number(arg("--rank") ?? 16);
  // Several runs (comma-separated files): the largest factors, so the table errs on the safe side.
  const cals = (arg("--calibrate") ?? "")
    .split(",")
    .filter(Boolean)
    .map((f) => calibration(f))
    .filter((c) => c !== null);
  const factor = Math.max(1, ...cals.map((c) => c.factor));
  const wf = Math.max(1, ...cals.map((c) => c.weightsFactor));
  for (const c of cals) console.log(`calibration: ${c.from}`);
  console.log(
    cals.length
      ? `using the largest: activations ×${factor.toFixed(3)}, weights ×${wf.toFixed(3)}`
      : "uncalibrated (formula only)",
  );
  console.log(`budget ${(budget / GiB).toFixed(1)} GiB, LoRA rank ${rank}, one sequence per micro-batch`);
  console.log(
    "\n| model | embedding params | W, f32 / f16 linears (GiB) | LoRA + AdamW (MiB) | activations per token (MiB) | longest trained sequence in budget, f32 / f16 | KV per served token (KiB) |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const name of MODELS) {
    const file = readdirSync(CONFIG_DIR).find((f) => f.startsWith(name));
    if (!file) continue;
    const config = parseModelConfig(JSON.parse(readFileSync(join(CONFIG_DIR, file), "utf8")));
    const cells: string[] = [];
    const fits: string[] = [];
    for (const bytes of [4, 2]) {
      const t = memoryTerms(config, bytes, rank);
      cells.push(((t.weights * wf) / GiB).toFixed(2));
      const free = budget - t.weights * wf - t.loraState - t.headChunk;
      const perToken = t.activationPerToken * factor;
      fits.push(free <= 0 ? "does not fit" : Math.floor(free / perToken).toLocaleString("en-US"));
    }
    const t = memoryTerms(config, 4, rank);
    const params = (config.vocabSize * config.hiddenSize) / 1e6;
    console.log(
      `| ${name} | ${params.toFixed(0)}M | ${cells.join(" / ")} | ${(t.loraState / 2 ** 20).toFixed(0)} | ${((t.activationPerToken * factor) / 2 ** 20).toFixed(2)} | ${fits.join(" / ")} | ${(t.kvPerToken / 1024).toFixed(0)} |`,
    );
  }
}
