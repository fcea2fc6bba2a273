// Fulgur vs llama.cpp on the same model: each ENGINE_MODELS model (tiny, ~25M) is exported to GGUF
// F32 with `fulgur export`'s writer, then (1) parity: next-token distributions on a held-out text
// (top-1 agreement, max |Δ log p|) and a 16-token greedy continuation, with llama.cpp in f32 KV
// mode; (2) speed: prefill and decode tokens/s at batch 1 and 8 of Fulgur's engine on this
// machine's WebGPU adapter vs llama.cpp's prebuilt CPU build (node-llama-cpp, f16 KV cache as by
// default, best of 1 thread and all cores), with the ratio in the same run.
// `--llamacpp-dtypes f32,q8_0` runs both on each of those GGUF exports of the same weights (Q8_0:
// llama.cpp's int8 weights, the reference for Fulgur's int8 serving); every llama.cpp record, parity
// figure and ratio carries `gguf` (the GGUF dtype).
//   npx tsx bench/vs-llamacpp.ts [--quick] [--results]   (--results rewrites its section of bench/RESULTS.md)
//     [--models tiny,25m] [--ab-gemv]   (--ab-gemv: also time Fulgur with the old GEMV path, FULGUR_GEMV_SG=0)
//     [--llamacpp-dtypes f32,f16,q8_0]  (GGUF dtypes for llama.cpp, default f32; --results needs f32)

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Llama } from "node-llama-cpp";
import { type GgufDtype, writeGgufModel } from "../src/export/gguf-model.ts";
import { acquireGpu, type Gpu } from "../src/gpu/index.ts";
import { loadCheckpoint } from "../src/model/loader.ts";
import { loadModel } from "../src/model/model.ts";
import { writeTinyModel } from "../src/model/tiny.ts";
import { HELD_OUT_TEXT } from "../test/export/held-out.ts";
import {
  compareDistributions,
  llamaCppGreedy,
  llamaCppLogits,
  openGguf,
  openLlamaCpp,
} from "../test/export/llamacpp.ts";
import {
  decodePrompts,
  parseLlamaCppDtypes,
  type Timing,
  timeFulgur,
  timeLlamaCpp,
  withPlainGemv,
} from "./decode-timing.ts";
import { ENGINE_MODELS } from "./engine.ts";
import { type BenchRecord, emit } from "./lib.ts";

const PROMPT_LEN = 128;

function prompts(batch: number, vocab: number): number[][] {
  return decodePrompts(batch, PROMPT_LEN, vocab);
}

/** Runs parity and speed for every engine model; returns the records it emitted. */
export async function benchVsLlamaCpp(
  gpu: Gpu,
  llama: Llama,
  options: { quick?: boolean; abGemv?: boolean; models?: string[]; llamacppDtypes?: GgufDtype[] } = {},
) {
  const ggufDtypes = options.llamacppDtypes ?? ["f32"];
  const records: BenchRecord[] = [];
  const put = (r: BenchRecord) => {
    emit(r);
    records.push(r);
  };
  const adapter = gpu.info.description;
  const decode = options.quick ? 8 : 32;
  for (const [name, spec] of Object.entries(ENGINE_MODELS)) {
    if (options.models && !options.models.includes(name)) continue;
    const dir = mkdtempSync(join(tmpdir(), `fulgur-vs-llamacpp-${name}-`));
    try {
      await writeTinyModel(dir, spec);
      const ggufs = new Map<GgufDtype, string>();
      for (const dtype of ggufDtypes) {
        const gguf = join(dir, `model-${dtype}.gguf`);
        const checkpoint = await loadCheckpoint(dir);
        try {
          await writeGgufModel(checkpoint, null, gguf, { dtype });
        } finally {
          await checkpoint.close();
        }
        ggufs.set(dtype, gguf);
      }
      const model = await loadModel(dir, { gpu, maxSlots: 8, maxSeqLen: 320, maxStepTokens: 4096 });
      try {
        const vocab = model.config.vocabSize;
        const common = { bench: "vs-llamacpp", model: name, adapter };

        const tokens = model.tokenizer.encode(HELD_OUT_TEXT);
        const ourLogits = await model.logits(tokens);
        const prompt = tokens.slice(0, 24);
        const [ours] = await model.generate([prompt], { temperature: 0, maxTokens: 16, ignoreEos: true });
        for (const [gguf, path] of ggufs) {
          const exact = await openGguf(llama, path, { contextSize: 512, kvCache: "f32" });
          try {
            const agreement = compareDistributions(
              ourLogits,
              await llamaCppLogits(exact.sequences[0], tokens, vocab),
              vocab,
            );
            const theirs = await llamaCppGreedy(exact.sequences[0], prompt, 16);
            const greedyMatch = ours.tokens.filter((t, i) => t === theirs[i]).length;
            const parity = { ...common, gguf, positions: agreement.positions, kv: "f32" };
            put({
              ...parity,
              metric: "top1_agreement",
              value: agreement.top1Agree / agreement.positions,
              unit: "ratio",
            });
            put({ ...parity, metric: "max_abs_logprob_diff", value: agreement.maxAbsLogprobDiff, unit: "nats" });
            put({ ...parity, metric: "max_total_variation", value: agreement.maxTotalVariation, unit: "ratio" });
            put({ ...parity, metric: "greedy_tokens_equal", value: greedyMatch, unit: "of 16" });
          } finally {
            await exact.dispose();
          }
        }

        await model.generate([prompts(1, vocab)[0]], { temperature: 0, maxTokens: 2, ignoreEos: true }); // warm-up
        for (const batch of [1, 8]) {
          const fulgur = await timeFulgur(model, prompts(batch, model.config.vocabSize), decode);
          const plain = options.abGemv
            ? await withPlainGemv(() => timeFulgur(model, prompts(batch, model.config.vocabSize), decode))
            : null;
          // ggml's threads spin at barriers: on a loaded machine 1 thread can beat all cores by
          // far, so both are measured and the ratio is taken against llama.cpp's better one.
          const llamaCpp = new Map<GgufDtype, Record<string, Timing>>();
          for (const [gguf, path] of ggufs) {
            const byThreads: Record<string, Timing> = {};
            for (const threads of [...new Set([1, cpus().length])]) {
              const cpp = await openGguf(llama, path, {
                contextSize: PROMPT_LEN + decode + 8,
                sequences: batch,
                threads,
              });
              try {
                await timeLlamaCpp(cpp.sequences, prompts(cpp.sequences.length, vocab), 2); // warm-up
                byThreads[threads] = await timeLlamaCpp(cpp.sequences, prompts(cpp.sequences.length, vocab), decode);
              } finally {
                await cpp.dispose();
              }
            }
            llamaCpp.set(gguf, byThreads);
          }
          const speed = { ...common, batch, promptLen: PROMPT_LEN, decode };
          for (const [phase, key] of [
            ["prefill", "prefillTokPerS"],
            ["decode", "decodeTokPerS"],
          ] as const) {
            const metric = `${phase}_tokens_per_s`;
            put({ ...speed, metric, engine: "fulgur", value: fulgur[key], unit: "tok/s" });
            if (plain) put({ ...speed, metric, engine: "fulgur-gemv-plain", value: plain[key], unit: "tok/s" });
            for (const [gguf, byThreads] of llamaCpp) {
              const g = { ...speed, gguf };
              let best = 0;
              for (const [threads, t] of Object.entries(byThreads)) {
                put({ ...g, metric, engine: "llama.cpp-cpu", threads: Number(threads), value: t[key], unit: "tok/s" });
                best = Math.max(best, t[key]);
              }
              put({ ...g, metric: `${phase}_tokens_per_s_llamacpp_best`, value: best, unit: "tok/s" });
              put({ ...g, metric: `${phase}_ratio_fulgur_over_llamacpp`, value: fulgur[key] / best, unit: "x" });
              if (plain) {
                put({ ...g, metric: `${phase}_ratio_gemv_plain_over_llamacpp`, value: plain[key] / best, unit: "x" });
              }
            }
          }
        }
      } finally {
        model.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return records;
}

const START = "<!-- vs-llamacpp:start -->";
const END = "<!-- vs-llamacpp:end -->";

/** Markdown for bench/RESULTS.md from one run's records. */
function resultsSection(records: BenchRecord[], adapter: string): string {
  // The table is the F32 export's (the exact-parity one); other GGUF dtypes stay in the JSON lines.
  const find = (model: string, metric: string, extra: Record<string, unknown> = {}) =>
    records.find(
      (r) =>
        r.model === model &&
        r.metric === metric &&
        (r.gguf === undefined || r.gguf === "f32") &&
        Object.entries(extra).every(([k, v]) => r[k] === v),
    )?.value ?? Number.NaN;
  const models = Object.keys(ENGINE_MODELS);
  const f = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "n/a");
  const lines = [
    START,
    "## Fulgur vs llama.cpp (`npx tsx bench/vs-llamacpp.ts`)",
    "",
    `${new Date().toISOString().slice(0, 10)}; Fulgur on \`${adapter}\` (WebGPU) vs llama.cpp's prebuilt CPU build`,
    `(node-llama-cpp 3.22.1, f16 KV cache, best of 1 and ${cpus().length} threads) on the same machine, same GGUF F32`,
    `export, prompt ${PROMPT_LEN} tokens. Other sessions share these cores, so treat the ratios as rough.`,
    "",
    "Parity (llama.cpp with f32 KV cache, no flash attention; held-out text; greedy continuation of 16 tokens):",
    "",
    "| model | positions | top-1 agreement | max abs logprob diff | greedy tokens equal |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const m of models) {
    const pos = records.find((r) => r.model === m && r.metric === "top1_agreement" && r.gguf === "f32")?.positions;
    lines.push(
      `| ${m} | ${pos} | ${f(100 * find(m, "top1_agreement"), 1)} % | ${find(m, "max_abs_logprob_diff").toExponential(1)} | ${find(m, "greedy_tokens_equal")}/16 |`,
    );
  }
  lines.push(
    "",
    "Speed (tokens/s; ratio = Fulgur / llama.cpp):",
    "",
    "| model | batch | prefill Fulgur | prefill llama.cpp | ratio | decode Fulgur | decode llama.cpp | ratio |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const m of models) {
    for (const batch of [1, 8]) {
      const v = (metric: string, engine?: string) => find(m, metric, engine ? { batch, engine } : { batch });
      lines.push(
        `| ${m} | ${batch} | ${f(v("prefill_tokens_per_s", "fulgur"))} | ${f(v("prefill_tokens_per_s_llamacpp_best"))} | ${f(v("prefill_ratio_fulgur_over_llamacpp"), 3)} | ${f(v("decode_tokens_per_s", "fulgur"))} | ${f(v("decode_tokens_per_s_llamacpp_best"))} | ${f(v("decode_ratio_fulgur_over_llamacpp"), 3)} |`,
      );
    }
  }
  lines.push(END);
  return lines.join("\n");
}

/** Replaces (or appends) this bench's section of bench/RESULTS.md, leaving the rest untouched. */
function writeResults(section: string): void {
  const path = join(dirname(fileURLToPath(import.meta.url)), "RESULTS.md");
  const text = readFileSync(path, "utf8");
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  const next =
    start >= 0 && end > start
      ? text.slice(0, start) + section + text.slice(end + END.length)
      : `${text.trimEnd()}\n\n${section}\n`;
  writeFileSync(path, next);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dtypesAt = process.argv.indexOf("--llamacpp-dtypes");
  const llamacppDtypes = parseLlamaCppDtypes(dtypesAt >= 0 ? process.argv[dtypesAt + 1] : undefined, "f32");
  if (process.argv.includes("--results") && !llamacppDtypes.includes("f32")) {
    throw new Error("--results writes the F32 export's table: include f32 in --llamacpp-dtypes");
  }
  const gpu = await acquireGpu();
  const llama = await openLlamaCpp();
  try {
    const at = process.argv.indexOf("--models");
    const records = await benchVsLlamaCpp(gpu, llama, {
      quick: process.argv.includes("--quick"),
      abGemv: process.argv.includes("--ab-gemv"),
      models: at >= 0 ? process.argv[at + 1].split(",") : undefined,
      llamacppDtypes,
    });
    if (process.argv.includes("--results")) writeResults(resultsSection(records, gpu.info.description));
  } finally {
    await llama.dispose();
    gpu.destroy();
  }
}
