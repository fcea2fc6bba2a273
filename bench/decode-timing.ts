// Prefill and decode throughput of one batch of prompts, measured the same way for Fulgur and for
// llama.cpp (node-llama-cpp), so bench/vs-llamacpp.ts and bench/scale.ts compare like with like:
// the slowest time to first token is the prefill, the rest of the wall time is decode.
import type { LlamaContextSequence, Token } from "node-llama-cpp";
import { GGUF_DTYPES, type GgufDtype } from "../src/export/gguf-model.ts";
import type { Model } from "../src/model/model.ts";

/**
 * `--llamacpp-dtypes` of bench/scale.ts and bench/vs-llamacpp.ts: the GGUF storage types llama.cpp
 * runs the same weights in ("f16,q8_0": F16 beside Q8_0, llama.cpp's int8 format), comma-separated.
 */
export function parseLlamaCppDtypes(value: string | undefined, fallback: GgufDtype): GgufDtype[] {
  const list = (value ?? fallback).split(",").filter(Boolean);
  if (list.length === 0) throw new Error("--llamacpp-dtypes needs at least one of f32, f16, q8_0");
  for (const d of list) {
    if (!GGUF_DTYPES.includes(d as GgufDtype)) {
      throw new Error(`--llamacpp-dtypes: unknown GGUF dtype '${d}' (known: ${GGUF_DTYPES.join(", ")})`);
    }
  }
  return [...new Set(list)] as GgufDtype[];
}

export interface Timing {
  prefillTokPerS: number;
  decodeTokPerS: number;
}

/** `batch` deterministic prompts of `len` token ids below `vocab`. */
export function decodePrompts(batch: number, len: number, vocab: number): number[][] {
  return Array.from({ length: batch }, (_, i) =>
    Array.from({ length: len }, (_, t) => ((i + 1) * 7919 + t * 31) % vocab),
  );
}

function timing(prompts: number[][], decode: number, prefillMs: number, totalMs: number): Timing {
  const batch = prompts.length;
  return {
    prefillTokPerS: (batch * prompts[0].length) / (prefillMs / 1000),
    decodeTokPerS: (batch * decode) / ((totalMs - prefillMs) / 1000),
  };
}

/** Fulgur: every prompt fed in one step, greedy, `decode` tokens after the first. */
export async function timeFulgur(model: Model, prompts: number[][], decode: number): Promise<Timing> {
  const t0 = performance.now();
  const out = await model.generate(prompts, { temperature: 0, maxTokens: decode + 1, ignoreEos: true });
  const totalMs = performance.now() - t0;
  return timing(prompts, decode, Math.max(...out.map((g) => g.timeToFirstTokenMs)), totalMs);
}

/**
 * Runs `fn` with the subgroup decode GEMV (gemv_sg.wgsl) switched off (FULGUR_GEMV_SG=0), so a
 * benchmark can time the old GEMV path beside the new one in the same run (`--ab-gemv`).
 */
export async function withPlainGemv<T>(fn: () => Promise<T>): Promise<T> {
  const saved = process.env.FULGUR_GEMV_SG;
  process.env.FULGUR_GEMV_SG = "0";
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.FULGUR_GEMV_SG;
    else process.env.FULGUR_GEMV_SG = saved;
  }
}

/** llama.cpp: the same prompts on parallel sequences of one context (one llama_decode per step). */
export async function timeLlamaCpp(
  sequences: LlamaContextSequence[],
  prompts: number[][],
  decode: number,
): Promise<Timing> {
  await Promise.all(sequences.map((s) => s.clearHistory()));
  const t0 = performance.now();
  const firstAt: number[] = [];
  await Promise.all(
    sequences.map(async (seq, i) => {
      let n = 0;
      for await (const _ of seq.evaluate(prompts[i] as Token[], { temperature: 0 })) {
        if (n === 0) firstAt[i] = performance.now() - t0;
        if (++n >= decode + 1) break;
      }
    }),
  );
  return timing(prompts, decode, Math.max(...firstAt), performance.now() - t0);
}
