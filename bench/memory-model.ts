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
  /** Bytes of frozen weights: linears in the format, embedding and untied head in f32 or f16, norms f32. */
  weights: number;
  /** LoRA A/B + gradient + AdamW m and v, all f32. */
  loraState: number;
  /** Bytes kept per trained token (all layers), before calibration. */
  activationPerToken: number;
  /**
   * The transients besides per-token activations: one vocabulary block's logits and dLogits of
   * the LM head, and for int8/int4 the f32 copy of the largest matrix a GEMM widens.
   */
  headChunk: number;
  /** KV cache bytes per served token (f32 keys and values). */
  kvPerToken: number;
}

/** How the frozen linear weights are stored (src/model/weights.ts, src/gpu/kernels/quant.ts). */
export type WeightFormat = "f32" | "f16" | "int8" | "int4";

/** Bytes per linear weight of a row of `cols` weights (int8: + one f32 scale per row; int4: per 32). */
function linearBytes(format: WeightFormat, cols: number): number {
  if (format === "f32") return 4;
  if (format === "f16") return 2;
  if (format === "int8") return 1 + 4 / cols;
  return 0.5 + 4 / 32;
}

/**
 * The formula's terms for a config. The embedding (and an untied head) is f32 under "f32" and f16
 * otherwise (int8/int4 quantise only the linears; the rest keeps the f16 load dtype).
 * `recompute`: the forward keeps each layer's input only, and backward rebuilds one layer's
 * activations at a time.
 */
export function memoryTerms(
  c: ModelConfig,
  format: WeightFormat,
  rank = 16,
  tokens = 1024,
  recompute = false,
): MemoryTerms {
  const h = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const m = c.intermediateSize;
  const embedBytes = format === "f32" ? 4 : 2;
  const linear = (rows: number, cols: number) => rows * cols * linearBytes(format, cols);
  const perLayerLinear = 2 * linear(q, h) + 2 * linear(kv, h) + 2 * linear(m, h) + linear(h, m);
  const head = c.tieWordEmbeddings ? 0 : c.vocabSize * h * embedBytes;
  const weights = c.vocabSize * h * embedBytes + c.numLayers * (perLayerLinear + 2 * h * 4) + head;
  const loraPerLayer = rank * (h + q + (h + kv) * 2 + (q + h) + 3 * (h + m));
  const loraState = c.numLayers * loraPerLayer * 4 * 4;
  // Per layer and token, the forward keeps: normed input, o_proj output, residual, post-norm
  // input, down output, layer output (6h); q raw/rotated + attention output (3q); k raw/rotated
  // and v (3kv); gate, up, SwiGLU (3m); LoRA u per projection (7r); norms' rstd and the
  // attention's log-sum-exp (2 + heads).
  const floats = 6 * h + 3 * q + 3 * kv + 3 * m + 7 * rank + 2 + c.numHeads;
  const activationPerToken = recompute
    ? (c.numLayers * h + floats) * 4 + 2 * h * 4
    : c.numLayers * floats * 4 + 2 * h * 4;
  // The LM head runs by vocabulary blocks of at most 16 MiB of logits (src/gpu/kernels/lmhead.ts):
  // one block's logits and dLogits at a time, plus per-row partials.
  const widened = format === "int8" || format === "int4" ? h * Math.max(m, q) * 4 : 0;
  const headChunk = 2 * Math.min(16 * 2 ** 20, tokens * c.vocabSize * 4) + tokens * 64 + widened;
  const kvPerToken = 2 * c.numLayers * kv * 4;
  return { weights, loraState, activationPerToken, headChunk, kvPerToken };
}

export interface Calibration {
  /** Measured over formula activation bytes, without and with recomputation (1 when unmeasured). */
  factor: number;
  recomputeFactor: number;
  /** Measured over formula weight bytes (the pool's size-class rounding). */
  weightsFactor: number;
  from: string[];
}

/** The measured/formula ratios from bench/scale.ts JSON lines (the largest of each kind). */
export function calibration(path: string): Calibration | null {
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
          quantize?: WeightFormat;
          recompute?: boolean;
        },
    );
  const cal: Calibration = { factor: 0, recomputeFactor: 0, weightsFactor: 0, from: [] };
  for (const r of records) {
    if (r.metric !== "update_memory_activations") continue;
    const file = readdirSync(CONFIG_DIR).find((f) => f.startsWith(r.model));
    if (!file) continue;
    const raw = JSON.parse(readFileSync(join(CONFIG_DIR, file), "utf8"));
    const config = parseModelConfig({ ...raw, vocab_size: r.vocab ?? raw.vocab_size });
    const tokens = r.microTokens as number;
    const format: WeightFormat = r.quantize ?? (r.dtype === "f16" ? "f16" : "f32");
    const recompute = r.recompute === true;
    const t = memoryTerms(config, format, r.loraRank ?? 16, tokens, recompute);
    const predicted = tokens * t.activationPerToken + t.headChunk;
    const factor = (r.value * 2 ** 20) / predicted;
    if (recompute) cal.recomputeFactor = Math.max(cal.recomputeFactor, factor);
    else cal.factor = Math.max(cal.factor, factor);
    // Pooled buffers are rounded up to size classes (≤ 12.5 %): measured weights over the formula.
    const w = records.find(
      (x) =>
        x.metric === "update_memory_weights" &&
        x.model === r.model &&
        x.vocab === r.vocab &&
        x.quantize === r.quantize &&
        x.recompute === r.recompute,
    );
    if (w) cal.weightsFactor = Math.max(cal.weightsFactor, (w.value * 2 ** 20) / t.weights);
    cal.from.push(
      `${r.model} (vocab ${config.vocabSize}), ${format}${recompute ? " + recompute" : ""}, ${tokens} tokens: activations measured ${r.value.toFixed(0)} MiB vs formula ${(predicted / 2 ** 20).toFixed(0)} MiB; weights measured ${w ? w.value.toFixed(0) : "?"} MiB vs formula ${(t.weights / 2 ** 20).toFixed(0)} MiB`,
    );
  }
  return cal.from.length ? cal : null;
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
  const rFactor = Math.max(1, ...cals.map((c) => c.recomputeFactor));
  const wf = Math.max(1, ...cals.map((c) => c.weightsFactor));
  for (const c of cals) for (const f of c.from) console.log(`calibration: ${f}`);
  console.log(
    cals.length
      ? `using the largest: activations ×${factor.toFixed(3)} (recompute ×${rFactor.toFixed(3)}), weights ×${wf.toFixed(3)}`
      : "uncalibrated (formula only)",
  );
  console.log(`budget ${(budget / GiB).toFixed(1)} GiB, LoRA rank ${rank}, one sequence per micro-batch`);
  // The longest sequence one micro-batch can train within the budget, for a format and mode.
  const longest = (config: ModelConfig, format: WeightFormat, recompute: boolean): string => {
    const t = memoryTerms(config, format, rank, 1024, recompute);
    const free = budget - t.weights * wf - t.loraState - t.headChunk;
    const perToken = t.activationPerToken * (recompute ? rFactor : factor);
    return free <= 0 ? "does not fit" : Math.floor(free / perToken).toLocaleString("en-US");
  };
  console.log(
    "\n| model | embedding params | W, f32 / f16 / int8 (GiB) | LoRA + AdamW (MiB) | activations per token, kept / recompute (MiB) | longest trained sequence in budget: f32 / f16 / f16 + recompute / int8 + recompute | KV per served token (KiB) |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const name of MODELS) {
    const file = readdirSync(CONFIG_DIR).find((f) => f.startsWith(name));
    if (!file) continue;
    const config = parseModelConfig(JSON.parse(readFileSync(join(CONFIG_DIR, file), "utf8")));
    const w = (["f32", "f16", "int8"] as const).map((f) =>
      ((memoryTerms(config, f, rank).weights * wf) / GiB).toFixed(2),
    );
    const fits = [
      longest(config, "f32", false),
      longest(config, "f16", false),
      longest(config, "f16", true),
      longest(config, "int8", true),
    ];
    const t = memoryTerms(config, "f32", rank);
    const tr = memoryTerms(config, "f32", rank, 1024, true);
    const params = (config.vocabSize * config.hiddenSize) / 1e6;
    const perToken = `${((t.activationPerToken * factor) / 2 ** 20).toFixed(2)} / ${((tr.activationPerToken * rFactor) / 2 ** 20).toFixed(2)}`;
    console.log(
      `| ${name} | ${params.toFixed(0)}M | ${w.join(" / ")} | ${(t.loraState / 2 ** 20).toFixed(0)} | ${perToken} | ${fits.join(" / ")} | ${(t.kvPerToken / 1024).toFixed(0)} |`,
    );
  }
}
