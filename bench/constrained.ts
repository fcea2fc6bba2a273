// Constrained decoding's costs, side by side in one run: GPU sampling per row with and without a
// token mask (8 rows × 151936, temperature and top-p; the ratio is the mask's overhead, which
// includes the unmasked-logprob passes), and on the CPU, for a synthetic byte-level vocabulary of
// the same size: building the trie, a fresh mask inside a JSON string and after `{`, a cached
// mask, and a budget-filtered mask (ratios to the GPU sampling step).
//
//   npx tsx bench/constrained.ts

import { acquireGpu, type Tensor, timeGpu } from "../src/gpu/index.ts";
import { maskWords, sample } from "../src/gpu/kernels/sampling.ts";
import { TokenGrammar, type TokenVocabulary } from "../src/model/grammar/constraint.ts";
import { GrammarMachine } from "../src/model/grammar/machine.ts";
import { SchemaCompiler } from "../src/model/grammar/schema.ts";
import { TokenTrie } from "../src/model/grammar/token-bytes.ts";
import { mulberry32 } from "../src/random.ts";
import { emit } from "./lib.ts";

const VOCAB = 151936;
const ROWS = 8;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** 256 single bytes, then random 2–9 byte pieces, mostly letters and spaces (like BPE merges). */
function syntheticVocabulary(size: number): (Uint8Array | null)[] {
  const rand = mulberry32(1);
  const alphabet = ' abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789{}[]":,.-_\n';
  const enc = new TextEncoder();
  const out: (Uint8Array | null)[] = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
  while (out.length < size - 1) {
    let piece = "";
    const len = 2 + Math.floor(rand() * 8);
    for (let i = 0; i < len; i++) piece += alphabet[Math.floor(rand() * (rand() < 0.8 ? 27 : alphabet.length))];
    out.push(enc.encode(piece));
  }
  out.push(null); // EOS: no bytes
  return out;
}

async function gpuSampling(): Promise<number> {
  const gpu = await acquireGpu();
  try {
    const rand = mulberry32(2);
    const logits = gpu.tensor(
      [ROWS, VOCAB],
      "f32",
      Float32Array.from({ length: ROWS * VOCAB }, () => rand() * 8 - 4),
    );
    const mask = new Uint32Array(maskWords(VOCAB));
    for (let w = 0; w < mask.length; w++) mask[w] = (rand() * 0x100000000) >>> 0;
    const params = Array.from({ length: ROWS }, (_, r) => ({ temperature: 0.8, topP: 0.95, seed: r, step: 1 }));
    const variants = [
      { name: "unmasked", masks: undefined },
      { name: "masked", masks: Array(ROWS).fill(mask) },
    ];
    const ms: Record<string, number[]> = { unmasked: [], masked: [] };
    // Alternating rounds, so both variants see the same machine load.
    for (let round = 0; round < 4; round++) {
      for (const v of variants) {
        const made: Tensor[] = [];
        const t = await timeGpu(gpu, () => {
          for (let i = 0; i < 3; i++) {
            const r = sample(logits, params, { masks: v.masks });
            made.push(r.tokens, r.logprobs, ...(r.unmaskedLogprobs ? [r.unmaskedLogprobs] : []));
          }
        });
        for (const x of made) x.dispose();
        if (round > 0) ms[v.name].push(t.ms / 3 / ROWS);
      }
    }
    const plain = median(ms.unmasked);
    const masked = median(ms.masked);
    for (const [variant, value] of [
      ["unmasked", plain],
      ["masked", masked],
    ] as const) {
      emit({
        bench: "constrained",
        metric: "sample_ms_per_row",
        value: Number(value.toFixed(4)),
        unit: "ms",
        variant,
        shape: [ROWS, VOCAB],
        ratio_to_unmasked: Number((value / plain).toFixed(3)),
        adapter: gpu.info.description,
      });
    }
    logits.dispose();
    return plain;
  } finally {
    gpu.destroy();
  }
}

function cpuMasks(sampleMs: number): void {
  const bytes = syntheticVocabulary(VOCAB);
  let t = performance.now();
  const trie = new TokenTrie(bytes);
  const trieMs = performance.now() - t;
  const vocab = { size: VOCAB, words: maskWords(VOCAB), bytes, trie, eos: [VOCAB - 1] } as unknown as TokenVocabulary;
  const grammar = new TokenGrammar(vocab, new GrammarMachine([{ value: new SchemaCompiler({}).anyValue(true) }]));
  const c = grammar.constraint();
  c.accept(0x7b); // {
  t = performance.now();
  c.allowed(1000);
  const afterBrace = performance.now() - t;
  c.accept(0x22); // "
  t = performance.now();
  c.allowed(1000);
  const inString = performance.now() - t;
  t = performance.now();
  for (let i = 0; i < 100; i++) c.allowed(1000);
  const cached = (performance.now() - t) / 100;
  t = performance.now();
  c.allowed(4);
  const budget = performance.now() - t;
  for (const [variant, value] of [
    ["build_trie", trieMs],
    ["fresh_mask_after_brace", afterBrace],
    ["fresh_mask_in_string", inString],
    ["cached_mask", cached],
    ["budget_filtered_mask", budget],
  ] as const) {
    emit({
      bench: "constrained",
      metric: "cpu_ms",
      value: Number(value.toFixed(4)),
      unit: "ms",
      variant,
      vocab: VOCAB,
      trie_nodes: trie.nodes,
      ratio_to_gpu_sample_row: Number((value / sampleMs).toFixed(3)),
    });
  }
}

const sampleMs = await gpuSampling();
cpuMasks(sampleMs);
