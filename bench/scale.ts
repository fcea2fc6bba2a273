// Real model sizes: random-init checkpoints with the exact shapes of Qwen2.5-0.5B, Qwen3-0.6B,
// Llama-3.2-1B, Qwen3-1.7B, Qwen3-4B and Gemma-3-1B (written by src/model/random-init.ts from the
// configs in test/fixtures/configs; Gemma without the llama.cpp and PyTorch references, which do
// not implement it), measured end to end on this machine's WebGPU adapter:
//   - load time and the weights' GPU bytes;
//   - prefill and decode tokens/s at batch 1/8/32 with peak pooled GPU memory, against llama.cpp
//     (node-llama-cpp's prebuilt CPU build) decoding the same weights exported as an F16 GGUF, and
//     with --llamacpp-dtypes f16,q8_0 also as a Q8_0 GGUF (llama.cpp's int8 weights: 32 values per
//     f16 scale), the same-precision reference for Fulgur's int8 weights. Every llama.cpp record
//     and Fulgur/llama.cpp ratio carries `gguf` (the GGUF dtype) beside `dtype` (Fulgur's weights);
//   - one LoRA PPO update (r=16 on all seven projections, AdamW, micro-batches with gradient
//     accumulation like the trainer) with its peak GPU memory split into weights, adapter +
//     optimizer state and activations, against the same update in PyTorch on the CPU
//     (bench/reference/scale_step.py, same weights, adapter and tokens; its losses must match).
// Ratios are taken in the same run. Each phase is bounded by flags, because on a software
// adapter a full 8 × 1,024-token update of a 0.5B model takes hours.
//   npx tsx bench/scale.ts [--models qwen2.5-0.5b,llama-3.2-1b,gemma-3-1b] [--quick] [--sequences 8]
//     [--tokens 1024] [--micro 1] [--prompt 32] [--decode 16] [--batches 1,8,32] [--dtype f32|f16]
//     [--quantize int8|int4] (linear weights int8/int4: decode reads them packed by gemv_q.wgsl,
//     compare with `--llamacpp-dtypes f16,q8_0`; the update trains LoRA on the quantised base,
//     so its loss differs from PyTorch's unquantised one by the quantisation)
//     [--quantize-head] (the embedding and LM head int8 too, as llama.cpp's Q8_0 stores them)
//     [--recompute] (the update keeps only each layer's input and recomputes the rest in backward)
//     [--skip decode,update,llamacpp,torch] [--torch-threads n] [--out file.jsonl]
//     [--llamacpp-dtypes f16,q8_0] (GGUF dtypes llama.cpp decodes the weights in, default f16)
//     [--vocab n] (cut the vocabulary: lavapipe's 128 MiB bindings cannot train a 151,936-word head yet)
//     [--ab-gemv] (also time decode with the old GEMV path, FULGUR_GEMV_SG=0, in the same run)
//     [--cache-dir dir | --no-cache]   (generated checkpoints are cached, default $TMPDIR/fulgur-scale-cache)

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Llama } from "node-llama-cpp";
import { type GgufDtype, writeGgufModel } from "../src/export/gguf-model.ts";
import { acquireGpu, type Gpu } from "../src/gpu/index.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { loadCheckpoint, readModelConfig } from "../src/model/loader.ts";
import { loadModel } from "../src/model/model.ts";
import { type RandomModel, writeRandomModel } from "../src/model/random-init.ts";
import { quantizeFlag } from "../src/server.ts";
import { type PolicySample, policyGradients } from "../src/trainer/grads.ts";
import { Optimizer } from "../src/trainer/optimizer.ts";
import {
  decodePrompts,
  parseLlamaCppDtypes,
  type Timing,
  timeFulgur,
  timeLlamaCpp,
  withPlainGemv,
} from "./decode-timing.ts";
import { type BenchRecord, emit } from "./lib.ts";

const here = dirname(fileURLToPath(import.meta.url));
const CONFIG_DIR = join(here, "..", "test", "fixtures", "configs");
const PYTHON = "/usr/bin/python3";
const RANK = 16;
const ALPHA = 32;
const PPO = { temperature: 1, clipLow: 0.2, clipHigh: 0.28 };
const OPTIM = { lr: 1e-4, maxGradNorm: 1, weightDecay: 0 };
const MiB = 2 ** 20;

/** Bench name → config fixture file stem (the first fixture whose name starts with it is used). */
export const SCALE_MODELS: Record<string, string> = {
  "qwen3-0.6b": "qwen3-0.6b",
  "qwen2.5-0.5b": "qwen2.5-0.5b",
  "llama-3.2-1b": "llama-3.2-1b",
  "qwen3-1.7b": "qwen3-1.7b",
  "qwen3-4b": "qwen3-4b",
  // Fulgur only: GGUF export and the PyTorch reference script do not implement Gemma 3.
  "gemma-3-1b": "gemma-3-1b",
};

export interface ScaleOptions {
  models: string[];
  sequences: number;
  tokens: number;
  micro: number;
  prompt: number;
  decode: number;
  batches: number[];
  dtype: "f32" | "f16";
  /**
   * int8/int4 linear weights: decode reads them packed (gemv_q.wgsl), the update widens one matrix
   * per GEMM (a QLoRA-style frozen base; PyTorch still runs the unquantised weights).
   */
  quantize?: "int8" | "int4";
  /** The embedding and LM head int8 as well (quantizeHead). */
  quantizeHead: boolean;
  /** The update keeps only each layer's input and recomputes the rest in backward. */
  recompute: boolean;
  skip: Set<string>;
  torchThreads: number;
  out?: string;
  /** Overrides vocab_size (e.g. to fit the LM head in one binding on a 128 MiB-limit adapter). */
  vocab?: number;
  /** Keep generated checkpoints here between runs (null: a temporary directory per run). */
  cacheDir: string | null;
  /** Also time decode with the old GEMV path (FULGUR_GEMV_SG=0) beside the default, same run. */
  abGemv?: boolean;
  /** GGUF dtypes the llama.cpp reference decodes the same weights in (default ["f16"]). */
  llamacppDtypes: GgufDtype[];
}

/** Parses argv into options; --quick shrinks every phase to minutes on a software adapter. */
export function parseScaleArgs(argv: string[]): ScaleOptions {
  const value = (flag: string): string | undefined => {
    const at = argv.indexOf(flag);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const int = (flag: string, fallback: number): number => {
    const v = value(flag);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got ${v}`);
    return n;
  };
  const quick = argv.includes("--quick");
  const models = (value("--models") ?? "qwen2.5-0.5b").split(",").filter(Boolean);
  for (const m of models) {
    if (!(m in SCALE_MODELS)) throw new Error(`unknown model '${m}' (known: ${Object.keys(SCALE_MODELS).join(", ")})`);
  }
  const dtype = value("--dtype") ?? "f32";
  if (dtype !== "f32" && dtype !== "f16") throw new Error(`--dtype must be f32 or f16, got ${dtype}`);
  const batches = (value("--batches") ?? (quick ? "1,8" : "1,8,32")).split(",").map(Number);
  if (!batches.every((b) => Number.isInteger(b) && b >= 1)) throw new Error("--batches must list positive integers");
  return {
    models,
    sequences: int("--sequences", quick ? 1 : 8),
    tokens: int("--tokens", quick ? 64 : 1024),
    micro: int("--micro", 1),
    prompt: int("--prompt", quick ? 16 : 32),
    decode: int("--decode", quick ? 4 : 16),
    batches,
    dtype,
    quantize: quantizeFlag(value("--quantize")),
    quantizeHead: argv.includes("--quantize-head"),
    recompute: argv.includes("--recompute"),
    skip: new Set((value("--skip") ?? "").split(",").filter(Boolean)),
    torchThreads: int("--torch-threads", cpus().length),
    out: value("--out"),
    vocab: value("--vocab") === undefined ? undefined : int("--vocab", 1),
    abGemv: argv.includes("--ab-gemv"),
    llamacppDtypes: parseLlamaCppDtypes(value("--llamacpp-dtypes"), "f16"),
    cacheDir: argv.includes("--no-cache") ? null : (value("--cache-dir") ?? join(tmpdir(), "fulgur-scale-cache")),
  };
}

/** Finds the config fixture for a bench model name, or null when this checkout has none. */
export function findConfig(stem: string): string | null {
  if (!existsSync(CONFIG_DIR)) return null;
  const file = readdirSync(CONFIG_DIR)
    .filter((f) => f.endsWith(".json") && f.startsWith(stem))
    .sort()[0];
  return file ? join(CONFIG_DIR, file) : null;
}

/** Parameters by group (embedding, per-layer linears, LM head) for FLOP and memory accounting. */
export function parameterCounts(c: ModelConfig) {
  const h = c.hiddenSize;
  const linear = h * c.numHeads * c.headDim * 2 + h * c.numKvHeads * c.headDim * 2 + 3 * h * c.intermediateSize;
  const embed = c.vocabSize * h;
  return {
    embed,
    linears: linear * c.numLayers,
    head: embed,
    total: embed * (c.tieWordEmbeddings ? 1 : 2) + linear * c.numLayers,
  };
}

/** Forward FLOPs of a sequence of `len` tokens (matmuls only: linears, causal attention, LM head). */
export function forwardFlops(c: ModelConfig, len: number): number {
  const p = parameterCounts(c);
  const attention = 2 * 2 * c.numHeads * c.headDim * ((len * (len + 1)) / 2) * c.numLayers;
  return 2 * len * (p.linears + p.head) + attention;
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Sequences of `len` tokens, first half masked as prompt, advantages ±1, uniform-ish old logprobs. */
/** Random PPO samples: prompt half unmasked, alternating advantages, perturbed old logprobs. */
export function makeBatch(vocab: number, sequences: number, len: number, seed: number): PolicySample[] {
  const r = seeded(seed);
  const promptLen = Math.floor(len / 2);
  return Array.from({ length: sequences }, (_, i) => {
    const tokens = Array.from({ length: len }, () => Math.floor(r() * vocab));
    return {
      tokens,
      lossMask: tokens.map((_, t) => (t >= promptLen ? 1 : 0)),
      advantage: i % 2 === 0 ? 1 : -1,
      oldLogprobs: tokens.map((_, t) => (t >= promptLen ? -Math.log(vocab) + (r() - 0.5) * 0.6 : 0)),
    };
  });
}

interface TorchResult {
  torch_version: string;
  threads: number;
  losses: number[];
  step_ms: number[];
  blas: string;
  blas_libraries: string[];
  matmul512_gflops: number;
  max_rss_mib: number;
}

function runTorch(
  modelDir: string,
  adapterDir: string,
  batch: PolicySample[],
  micro: number,
  threads: number,
): { result: TorchResult } | { skipped: string } {
  if (!existsSync(PYTHON)) return { skipped: `${PYTHON} not found` };
  const probe = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" });
  if (probe.status !== 0) return { skipped: `torch does not import: ${probe.stderr.trim().split("\n").pop()}` };
  const batchPath = join(adapterDir, "scale-batch.json");
  writeFileSync(batchPath, JSON.stringify({ samples: batch, ...PPO, ...OPTIM, steps: 1, micro }));
  const run = spawnSync(
    PYTHON,
    [join(here, "reference", "scale_step.py"), modelDir, adapterDir, batchPath, String(threads)],
    { encoding: "utf8", maxBuffer: 1 << 24, env: { ...process.env, OMP_NUM_THREADS: String(threads) } },
  );
  if (run.status !== 0) throw new Error(`scale_step.py failed (exit ${run.status}): ${run.stderr}`);
  return { result: JSON.parse(run.stdout.trim().split("\n").pop() ?? "") as TorchResult };
}

/** Runs every phase for one model; returns the records emitted. */
export async function benchScaleModel(
  gpu: Gpu,
  llama: Llama | null,
  name: string,
  opts: ScaleOptions,
): Promise<BenchRecord[]> {
  const records: BenchRecord[] = [];
  const put = (r: BenchRecord) => {
    emit(r);
    if (opts.out) appendFileSync(opts.out, `${JSON.stringify(r)}\n`);
    records.push(r);
  };
  const adapter = gpu.info.description || `${gpu.info.vendor} ${gpu.info.architecture}`.trim();
  const configPath = findConfig(SCALE_MODELS[name]);
  if (!configPath) {
    put({ bench: "scale", model: name, metric: "skipped", value: 0, unit: "", reason: "no config fixture" });
    return records;
  }
  const hfConfig = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
  // Generated checkpoints are kept in a cache keyed by the config file and seed: writing 0.5–4B
  // random values takes minutes on a loaded 2-core machine, and they never change.
  const key = createHash("sha256")
    .update(readFileSync(configPath))
    .update(`seed=1;F16;v1;vocab=${opts.vocab ?? "config"}`)
    .digest("hex")
    .slice(0, 12);
  const dir = opts.cacheDir
    ? join(opts.cacheDir, `${name}-${key}`)
    : mkdtempSync(join(tmpdir(), `fulgur-scale-${name}-`));
  const work = mkdtempSync(join(tmpdir(), `fulgur-scale-work-${name}-`));
  try {
    let t0 = performance.now();
    let written: Awaited<ReturnType<typeof writeRandomModel>>;
    const marker = join(dir, ".complete.json");
    try {
      if (existsSync(marker)) {
        written = { ...(JSON.parse(readFileSync(marker, "utf8")) as RandomModel), config: await readModelConfig(dir) };
      } else {
        rmSync(dir, { recursive: true, force: true });
        written = await writeRandomModel(dir, hfConfig, { seed: 1, dtype: "F16", vocabSize: opts.vocab });
        if (opts.cacheDir) {
          const { parameters, weightBytes } = written;
          writeFileSync(marker, JSON.stringify({ dir, parameters, weightBytes }));
        }
      }
    } catch (err) {
      put({ bench: "scale", model: name, metric: "skipped", value: 0, unit: "", reason: String(err) });
      return records;
    }
    const config = written.config;
    const common = {
      bench: "scale",
      model: name,
      params: written.parameters,
      vocab: config.vocabSize,
      dtype: opts.dtype,
      ...(opts.quantize ? { quantize: opts.quantize } : {}),
      ...(opts.quantizeHead ? { quantize_head: true } : {}),
      adapter,
    };
    put({ ...common, metric: "generate_checkpoint_time", value: performance.now() - t0, unit: "ms" });

    // Serving: weights + KV cache for the largest batch.
    const maxBatch = Math.max(...opts.batches);
    const maxSeqLen = opts.prompt + opts.decode + 8;
    if (!opts.skip.has("decode")) {
      gpu.pool.trim();
      const base = gpu.pool.stats().liveBytes;
      t0 = performance.now();
      const model = await loadModel(dir, {
        gpu,
        dtype: opts.dtype,
        quantize: opts.quantize,
        quantizeHead: opts.quantizeHead,
        maxSlots: maxBatch,
        maxSeqLen,
        maxStepTokens: Math.max(512, maxBatch * opts.prompt),
      });
      await gpu.sync();
      put({ ...common, metric: "load_time", value: performance.now() - t0, unit: "ms" });
      put({ ...common, metric: "weights_memory", value: (gpu.pool.stats().liveBytes - base) / MiB, unit: "MiB" });
      try {
        await model.generate([decodePrompts(1, 4, config.vocabSize)[0]], {
          temperature: 0,
          maxTokens: 2,
          ignoreEos: true,
        });
        for (const batch of opts.batches) {
          gpu.pool.peakBytes = gpu.pool.stats().liveBytes + gpu.pool.stats().freeBytes;
          const t = await timeFulgur(model, decodePrompts(batch, opts.prompt, config.vocabSize), opts.decode);
          const s = { ...common, batch, promptLen: opts.prompt, decode: opts.decode, engine: "fulgur" };
          put({ ...s, metric: "prefill_tokens_per_s", value: t.prefillTokPerS, unit: "tok/s" });
          put({ ...s, metric: "decode_tokens_per_s", value: t.decodeTokPerS, unit: "tok/s" });
          put({ ...s, metric: "serve_peak_memory", value: gpu.pool.peakBytes / MiB, unit: "MiB" });
          if (opts.abGemv) {
            const p = await withPlainGemv(() =>
              timeFulgur(model, decodePrompts(batch, opts.prompt, config.vocabSize), opts.decode),
            );
            const sp = { ...s, engine: "fulgur-gemv-plain" };
            put({ ...sp, metric: "prefill_tokens_per_s", value: p.prefillTokPerS, unit: "tok/s" });
            put({ ...sp, metric: "decode_tokens_per_s", value: p.decodeTokPerS, unit: "tok/s" });
          }
        }
      } finally {
        model.dispose();
        gpu.pool.trim();
      }
    }

    if (config.gemma3 && !opts.skip.has("llamacpp") && !opts.skip.has("decode") && llama) {
      put({ ...common, metric: "llamacpp_reference", value: 0, unit: "skipped", reason: "no GGUF export for Gemma 3" });
    } else if (!opts.skip.has("llamacpp") && !opts.skip.has("decode") && llama) {
      for (const ggufDtype of opts.llamacppDtypes) {
        const gguf = join(work, `model-${ggufDtype}.gguf`);
        t0 = performance.now();
        const ck = await loadCheckpoint(dir);
        let ggufBytes: number;
        try {
          ({ bytes: ggufBytes } = await writeGgufModel(ck, null, gguf, { dtype: ggufDtype }));
        } finally {
          await ck.close();
        }
        const g = { ...common, gguf: ggufDtype };
        put({ ...g, metric: "gguf_export_time", value: performance.now() - t0, unit: "ms", ggufMiB: ggufBytes / MiB });
        for (const batch of opts.batches) {
          const prompts = decodePrompts(batch, opts.prompt, config.vocabSize);
          let best: Timing | null = null;
          let bestThreads = 0;
          // ggml threads spin at barriers: on a shared machine one thread can beat all cores.
          for (const threads of [...new Set([1, cpus().length])]) {
            const cpp = await openGguf(llama, gguf, { contextSize: maxSeqLen, sequences: batch, threads });
            try {
              await timeLlamaCpp(
                cpp.sequences,
                prompts.map((p) => p.slice(0, 4)),
                1,
              ); // warm-up
              const t = await timeLlamaCpp(cpp.sequences, prompts, opts.decode);
              if (!best || t.decodeTokPerS > best.decodeTokPerS) {
                best = t;
                bestThreads = threads;
              }
            } finally {
              await cpp.dispose();
            }
          }
          if (!best) continue;
          const s = { ...g, batch, promptLen: opts.prompt, decode: opts.decode, engine: "llama.cpp-cpu" };
          put({
            ...s,
            threads: bestThreads,
            metric: "prefill_tokens_per_s",
            value: best.prefillTokPerS,
            unit: "tok/s",
          });
          put({ ...s, threads: bestThreads, metric: "decode_tokens_per_s", value: best.decodeTokPerS, unit: "tok/s" });
          for (const engine of ["fulgur", "fulgur-gemv-plain"]) {
            const ours = records.find(
              (r) => r.metric === "decode_tokens_per_s" && r.engine === engine && r.batch === batch,
            );
            if (ours)
              put({
                ...g,
                batch,
                metric:
                  engine === "fulgur" ? "decode_ratio_fulgur_over_llamacpp" : "decode_ratio_gemv_plain_over_llamacpp",
                value: ours.value / best.decodeTokPerS,
                unit: "x",
              });
          }
        }
        rmSync(gguf, { force: true });
      }
    }

    if (!opts.skip.has("update")) {
      try {
        gpu.pool.trim();
        const base = gpu.pool.stats().liveBytes;
        t0 = performance.now();
        const model = await loadModel(dir, {
          gpu,
          dtype: opts.dtype,
          quantize: opts.quantize,
          quantizeHead: opts.quantizeHead,
          maxSlots: 1,
          maxSeqLen: 64,
        });
        let disposed = false;
        await gpu.sync();
        const loadMs = performance.now() - t0;
        const weights = gpu.pool.stats().liveBytes - base;
        try {
          const lora = model.createAdapter({ rank: RANK, alpha: ALPHA, seed: 3 });
          const r = seeded(11);
          for (const m of lora.modules.values()) m.b.write(Array.from({ length: m.b.size }, () => (r() - 0.5) * 0.04));
          const adapterDir = join(work, "adapter");
          mkdirSync(adapterDir, { recursive: true });
          await model.saveAdapter(adapterDir);
          const optimizer = Optimizer.forLora(lora, OPTIM);
          const state = gpu.pool.stats().liveBytes - base - weights;
          const batch = makeBatch(config.vocabSize, opts.sequences, opts.tokens, 5);
          const micros: PolicySample[][] = [];
          for (let i = 0; i < batch.length; i += opts.micro) micros.push(batch.slice(i, i + opts.micro));
          const masked = (b: PolicySample[]) => b.reduce((a, s) => a + s.lossMask.reduce((x, y) => x + y, 0), 0);
          const totalMasked = masked(batch);
          const u = {
            ...common,
            sequences: opts.sequences,
            seqLen: opts.tokens,
            micro: opts.micro,
            loraRank: RANK,
            loraParams: optimizer.parameterCount,
            recompute: opts.recompute,
          };
          // Warm-up on a short batch: compiles every pipeline without paying for a full update.
          const ppo = { ...PPO, recompute: opts.recompute };
          await policyGradients(model.transformer, makeBatch(config.vocabSize, 1, 16, 9), ppo, optimizer.sink);
          optimizer.zeroGrad();
          await gpu.sync();
          gpu.pool.peakBytes = gpu.pool.stats().liveBytes + gpu.pool.stats().freeBytes;
          const liveBefore = gpu.pool.stats().liveBytes;
          t0 = performance.now();
          let loss = 0;
          for (const m of micros) {
            const weight = masked(m) / totalMasked;
            loss += (await policyGradients(model.transformer, m, { ...ppo, weight }, optimizer.sink)).loss;
          }
          await optimizer.apply();
          const updateMs = performance.now() - t0;
          const peak = gpu.pool.peakBytes;
          const tokens = opts.sequences * opts.tokens;
          const flops = 2 * opts.sequences * forwardFlops(config, opts.tokens);
          put({ ...u, metric: "update_load_time", value: loadMs, unit: "ms" });
          put({ ...u, metric: "update_time", value: updateMs, unit: "ms", loss });
          put({ ...u, metric: "update_tokens_per_s", value: tokens / (updateMs / 1000), unit: "tok/s" });
          put({ ...u, metric: "update_effective_gflops", value: flops / updateMs / 1e6, unit: "GFLOP/s" });
          put({ ...u, metric: "update_peak_memory", value: peak / MiB, unit: "MiB" });
          put({ ...u, metric: "update_memory_weights", value: weights / MiB, unit: "MiB" });
          put({ ...u, metric: "update_memory_lora_and_adam", value: state / MiB, unit: "MiB" });
          put({
            ...u,
            metric: "update_memory_activations",
            value: (peak - liveBefore) / MiB,
            unit: "MiB",
            microTokens: opts.micro * opts.tokens,
          });
          optimizer.dispose();
          model.dispose();
          disposed = true;
          gpu.pool.trim();

          if (config.gemma3 && !opts.skip.has("torch")) {
            put({ ...u, metric: "torch_reference", value: 0, unit: "skipped", reason: "scale_step.py has no Gemma 3" });
          } else if (!opts.skip.has("torch")) {
            const torch = runTorch(dir, adapterDir, batch, opts.micro, opts.torchThreads);
            if ("skipped" in torch) {
              put({ ...u, metric: "torch_reference", value: 0, unit: "skipped", reason: torch.skipped });
            } else {
              const t = torch.result;
              const tc = {
                ...u,
                torch: t.torch_version,
                threads: t.threads,
                blas: t.blas,
                blasLibraries: t.blas_libraries,
              };
              const torchMs = t.step_ms[0];
              put({ ...tc, metric: "torch_matmul512_gflops", value: t.matmul512_gflops, unit: "GFLOP/s" });
              put({ ...tc, metric: "torch_update_time", value: torchMs, unit: "ms", loss: t.losses[0] });
              put({ ...tc, metric: "torch_max_rss", value: t.max_rss_mib, unit: "MiB" });
              put({ ...tc, metric: "update_ratio_fulgur_over_torch", value: torchMs / updateMs, unit: "x" });
              const diff = Math.abs(loss - t.losses[0]);
              put({
                ...tc,
                metric: "loss_abs_diff_vs_torch",
                value: diff,
                unit: "abs",
                fulgur: loss,
                torchLoss: t.losses[0],
              });
              if (!(diff < 1e-3 * Math.max(1, Math.abs(t.losses[0]))))
                throw new Error(`scale bench ${name}: Fulgur loss ${loss} differs from PyTorch's ${t.losses[0]}`);
            }
          }
        } finally {
          if (!disposed) model.dispose();
        }
      } catch (err) {
        // Reported, not fatal: the other models and phases still run (and gpu.sh keeps its budget).
        put({ ...common, metric: "update_failed", value: 0, unit: "", reason: String(err).split("\n")[0] });
        gpu.pool.trim();
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
    if (!opts.cacheDir) rmSync(dir, { recursive: true, force: true });
  }
  return records;
}

// node-llama-cpp is a devDependency: import lazily so the bench still runs where it is absent.
async function openGguf(llama: Llama, path: string, o: { contextSize: number; sequences: number; threads: number }) {
  const { openGguf: open } = await import("../test/export/llamacpp.ts");
  return open(llama, path, o);
}

async function tryLlama(): Promise<Llama | string> {
  try {
    const { openLlamaCpp } = await import("../test/export/llamacpp.ts");
    return await openLlamaCpp();
  } catch (err) {
    return String(err).split("\n")[0];
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const opts = parseScaleArgs(process.argv.slice(2));
  const gpu = await acquireGpu();
  const llama = opts.skip.has("llamacpp") || opts.skip.has("decode") ? null : await tryLlama();
  if (typeof llama === "string")
    emit({ bench: "scale", metric: "llamacpp_reference", value: 0, unit: "skipped", reason: llama });
  try {
    for (const name of opts.models) {
      await benchScaleModel(gpu, typeof llama === "string" ? null : llama, name, opts);
    }
  } finally {
    if (llama && typeof llama !== "string") await llama.dispose();
    gpu.destroy();
  }
}
