// llama.cpp (through node-llama-cpp's prebuilt CPU binary) as an outside yardstick for an
// exported GGUF: next-token distributions position by position against Fulgur's logits, and
// greedy continuations. Shared by the parity test and bench/vs-llamacpp.ts.
import {
  getLlama,
  type Llama,
  type LlamaContextSequence,
  LlamaLogLevel,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";

/**
 * Loads llama.cpp's prebuilt CPU backend; never downloads or builds (the test machine is
 * offline, and a silent source build would take many minutes).
 */
export async function openLlamaCpp(): Promise<Llama> {
  return getLlama({
    gpu: false,
    build: "never",
    usePrebuiltBinaries: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.error,
  });
}

/** log-softmax of one row, accumulated in f64. */
export function logSoftmax(row: ArrayLike<number>): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i] - lse;
  return out;
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** llama.cpp's raw next-token logits after each token of `tokens` (fresh sequence), [n × vocab]. */
export async function llamaCppLogits(sequence: LlamaContextSequence, tokens: number[], vocab: number) {
  await sequence.clearHistory();
  const results = await sequence.controlledEvaluate(
    tokens.map((t) => [t as Token, { generateNext: { logits: true } }] as [Token, { generateNext: { logits: true } }]),
  );
  const out = new Float32Array(tokens.length * vocab);
  for (let p = 0; p < tokens.length; p++) {
    const logits = results[p]?.next.logits;
    if (!logits) throw new Error(`llama.cpp returned no logits for position ${p}`);
    for (const [token, value] of logits) out[p * vocab + token] = value;
  }
  return out;
}

export interface DistributionAgreement {
  positions: number;
  /** Positions where both engines' most likely next token is the same. */
  top1Agree: number;
  /** max over positions and vocabulary of |log p_fulgur − log p_llama.cpp|. */
  maxAbsLogprobDiff: number;
  /** Same, restricted to each position's top-10 tokens (under Fulgur): the mass that matters. */
  maxAbsLogprobDiffTop10: number;
  /** max over positions of the total variation distance ½·Σ|p − q| (0: same, 1: disjoint). */
  maxTotalVariation: number;
}

/** Compares two [positions × vocab] logit matrices through their log-softmax. */
export function compareDistributions(ours: Float32Array, theirs: Float32Array, vocab: number): DistributionAgreement {
  const positions = ours.length / vocab;
  let top1Agree = 0;
  let maxDiff = 0;
  let maxDiffTop = 0;
  let maxTv = 0;
  for (let p = 0; p < positions; p++) {
    const a = logSoftmax(ours.subarray(p * vocab, (p + 1) * vocab));
    const b = logSoftmax(theirs.subarray(p * vocab, (p + 1) * vocab));
    if (argmax(a) === argmax(b)) top1Agree++;
    const order = Array.from(a.keys()).sort((i, j) => a[j] - a[i]);
    for (let i = 0; i < vocab; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    for (const i of order.slice(0, 10)) maxDiffTop = Math.max(maxDiffTop, Math.abs(a[i] - b[i]));
    let tv = 0;
    for (let i = 0; i < vocab; i++) tv += Math.abs(Math.exp(a[i]) - Math.exp(b[i]));
    maxTv = Math.max(maxTv, tv / 2);
  }
  return {
    positions,
    top1Agree,
    maxAbsLogprobDiff: maxDiff,
    maxAbsLogprobDiffTop10: maxDiffTop,
    maxTotalVariation: maxTv,
  };
}

/** Greedy (temperature 0) continuation of `prompt` by llama.cpp, exactly `n` tokens (EOS ignored). */
export async function llamaCppGreedy(sequence: LlamaContextSequence, prompt: number[], n: number): Promise<number[]> {
  await sequence.clearHistory();
  const out: number[] = [];
  for await (const token of sequence.evaluate(prompt as Token[], { temperature: 0 })) {
    out.push(token);
    if (out.length >= n) break;
  }
  return out;
}

/**
 * Loads a GGUF on the CPU with a context of `sequences` parallel sequences of `contextSize` tokens.
 * `kvCache` "f32" stores keys/values unrounded (for parity checks); llama.cpp's default is f16.
 * `threads` defaults to 1: ggml's worker threads spin at barriers, and on an oversubscribed machine
 * (other test workers, lavapipe) 2 threads on 2 cores ran decode ~100× slower than 1 (measured).
 */
export async function openGguf(
  llama: Llama,
  path: string,
  options: { contextSize: number; sequences?: number; batchSize?: number; kvCache?: "f32" | "f16"; threads?: number },
): Promise<{ model: LlamaModel; sequences: LlamaContextSequence[]; dispose: () => Promise<void> }> {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const n = options.sequences ?? 1;
  const context = await model.createContext({
    // node-llama-cpp sizes the KV cache as contextSize × sequences itself.
    contextSize: options.contextSize,
    sequences: n,
    batchSize: options.batchSize ?? options.contextSize * n,
    threads: options.threads ?? 1,
    // With f32 keys/values, flash attention would still round Q·K in f16 on the CPU.
    flashAttention: options.kvCache !== "f32",
    experimentalKvCacheKeyType: options.kvCache === "f32" ? "F32" : "F16",
    experimentalKvCacheValueType: options.kvCache === "f32" ? "F32" : "F16",
  });
  const sequences = Array.from({ length: n }, () => context.getSequence());
  return {
    model,
    sequences,
    dispose: async () => {
      await context.dispose();
      await model.dispose();
    },
  };
}
