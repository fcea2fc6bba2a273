// Vocabulary-sized ops and the optimizer: tokenLogprobs GB/s (8×151936, 64×32000; tile shapes
// side by side), sampling time
// per row (1 and 8 rows × 151936; greedy, top-p, top-k+top-p, and with 5 top logprobs), and AdamW
// GB/s over ~1M parameters (as one tensor and as 64 tensors, which measures the per-tensor
// dispatch cost of the optimizer's one-dispatch-per-tensor design). Every result carries the copy
// kernel's GB/s over the same bytes, measured in alternating rounds in the same run, and the ratio.
//
//   npx tsx bench/kernels/vocab.ts
//
// The LM head's training path, materialised logits (matmul → tokenLogprobs/entropy, and their
// backward recomputing the logits, as head.ts did) vs vocabulary blocks (lmhead.ts), 512 tokens × 896 × 32000: ms per
// forward and forward+backward, and the GPU memory each allocates (pool growth), with ratios.
//
// Bytes counted are the minimum each op must move: logits read once (tokenLogprobs, sampling);
// param, grad, m, v read and param, m, v written (AdamW). Sampling reads its row once per pass
// (3 passes plain, + up to 11 per threshold search), so its "GB/s" is effective, not raw.

import { fileURLToPath } from "node:url";
import { acquireGpu, type Gpu, type Tensor, timeGpu } from "../../src/gpu/index.ts";
import { copy } from "../../src/gpu/kernels/copy.ts";
import { headBackwardByBlocks, headLogprobsByBlocks } from "../../src/gpu/kernels/lmhead.ts";
import {
  defaultVocabTiling,
  entropy,
  entropyBackward,
  tokenLogprobs,
  tokenLogprobsBackward,
  type VocabTiling,
} from "../../src/gpu/kernels/logprobs.ts";
import { matmul } from "../../src/gpu/kernels/matmul.ts";
import { adamw } from "../../src/gpu/kernels/optimizer.ts";
import { type SampleOptions, type SamplingParams, sample } from "../../src/gpu/kernels/sampling.ts";
import { emit } from "../lib.ts";

/** Alternating op/copy measurements per result (medians reported). */
const ROUNDS = 5;
const QWEN_VOCAB = 151936;
/** Tile shapes compared for tokenLogprobs (the launcher picks one per adapter kind). */
const TILINGS: VocabTiling[] = [
  { workgroupSize: 256, items: 8 },
  { workgroupSize: 128, items: 16 },
  { workgroupSize: 64, items: 32 },
  { workgroupSize: 64, items: 16 },
  { workgroupSize: 32, items: 32 },
];

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Milliseconds of one call of `op` (which returns the tensors it allocated), from a batch of `reps`. */
async function batchMs(gpu: Gpu, reps: number, op: () => Tensor[]): Promise<number> {
  const made: Tensor[] = [];
  const { ms } = await timeGpu(gpu, () => {
    for (let i = 0; i < reps; i++) made.push(...op());
  });
  for (const t of made) t.dispose();
  return ms / reps;
}

/** Deterministic logits with an LLM-like spread (a few large, a long tail). */
function logitsData(n: number): Float32Array {
  const out = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = (s >>> 8) / 16777216;
    out[i] = 4 * Math.log(u / (1 - u + 1e-7) + 1e-7);
  }
  return out;
}

interface Measured {
  ms: number;
  gbps: number;
  copyGbps: number;
}

/** Times `op` and a copy of the same byte count in alternating rounds (same machine load). */
async function measure(gpu: Gpu, bytes: number, reps: number, op: () => Tensor[]): Promise<Measured> {
  const n = Math.max(4, Math.round(bytes / 8 / 4) * 4);
  const src = gpu.zeros([n]);
  const dst = gpu.zeros([n]);
  const copyOp = () => {
    copy(src, dst);
    return [];
  };
  await batchMs(gpu, reps, op);
  await batchMs(gpu, reps, copyOp);
  const opTimes: number[] = [];
  const copyTimes: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    opTimes.push(await batchMs(gpu, reps, op));
    copyTimes.push(await batchMs(gpu, reps, copyOp));
  }
  src.dispose();
  dst.dispose();
  const ms = median(opTimes);
  return { ms, gbps: bytes / (ms * 1e6), copyGbps: (8 * n) / (median(copyTimes) * 1e6) };
}

function emitGbps(gpu: Gpu, metric: string, variant: string, shape: number[], m: Measured): void {
  emit({
    bench: "vocab",
    metric,
    value: Number(m.gbps.toFixed(3)),
    unit: "GB/s",
    variant,
    shape,
    ms: Number(m.ms.toFixed(4)),
    copy_gbps: Number(m.copyGbps.toFixed(3)),
    ratio_to_copy: Number((m.gbps / m.copyGbps).toFixed(3)),
    adapter: gpu.info.description,
  });
}

async function benchTokenLogprobs(gpu: Gpu): Promise<void> {
  for (const [rows, vocab] of [
    [8, QWEN_VOCAB],
    [64, 32000],
  ]) {
    const logits = gpu.tensor([rows, vocab], "f32", logitsData(rows * vocab));
    const targets = gpu.tensor(
      [rows],
      "u32",
      new Uint32Array(rows).map((_, i) => (i * 7919) % vocab),
    );
    for (const tiling of TILINGS) {
      const m = await measure(gpu, rows * vocab * 4, 5, () => {
        const r = tokenLogprobs(logits, targets, { temperature: 0.7, tiling });
        return [r.logprobs, r.lse];
      });
      const isDefault = JSON.stringify(tiling) === JSON.stringify(defaultVocabTiling(gpu));
      emitGbps(
        gpu,
        "token_logprobs",
        `wg${tiling.workgroupSize}×${tiling.items}${isDefault ? " (default)" : ""}`,
        [rows, vocab],
        m,
      );
    }
    logits.dispose();
    targets.dispose();
  }
}

async function benchSampling(gpu: Gpu): Promise<void> {
  const variants: { name: string; params: SamplingParams; options?: SampleOptions }[] = [
    { name: "greedy", params: { temperature: 0 } },
    { name: "temperature", params: { temperature: 0.8 } },
    { name: "top-p 0.9", params: { temperature: 0.8, topP: 0.9 } },
    { name: "top-k 50 + top-p 0.9", params: { temperature: 0.8, topK: 50, topP: 0.9 } },
    { name: "greedy + 5 top logprobs", params: { temperature: 0 }, options: { topLogprobs: 5 } },
  ];
  for (const rows of [1, 8]) {
    const logits = gpu.tensor([rows, QWEN_VOCAB], "f32", logitsData(rows * QWEN_VOCAB));
    for (const v of variants) {
      const params = Array.from({ length: rows }, (_, r) => ({ ...v.params, seed: r, step: 1 }));
      const m = await measure(gpu, rows * QWEN_VOCAB * 4, 3, () => {
        const r = sample(logits, params, v.options);
        return [r.tokens, r.logprobs, ...(r.topTokens ? [r.topTokens, r.topLogprobs!] : [])];
      });
      emit({
        bench: "vocab",
        metric: "sample_ms_per_row",
        value: Number((m.ms / rows).toFixed(4)),
        unit: "ms",
        variant: v.name,
        shape: [rows, QWEN_VOCAB],
        effective_gbps: Number(m.gbps.toFixed(3)),
        copy_gbps: Number(m.copyGbps.toFixed(3)),
        ratio_to_copy: Number((m.gbps / m.copyGbps).toFixed(3)),
        adapter: gpu.info.description,
      });
    }
    logits.dispose();
  }
}

async function benchAdamW(gpu: Gpu): Promise<void> {
  const total = 1 << 20;
  for (const tensors of [1, 64]) {
    const n = total / tensors;
    const groups = Array.from({ length: tensors }, () => ({
      param: gpu.zeros([n]),
      grad: gpu.zeros([n]),
      m: gpu.zeros([n]),
      v: gpu.zeros([n]),
    }));
    let step = 0;
    const m = await measure(gpu, 7 * 4 * total, 5, () => {
      adamw(groups, { lr: 1e-4, weightDecay: 0.01, step: ++step });
      return [];
    });
    emitGbps(gpu, "adamw", `${tensors} tensor${tensors > 1 ? "s" : ""} × ${n}`, [total], m);
    for (const g of groups) for (const t of Object.values(g)) t.dispose();
  }
}

/** Old (materialised logits) vs new (vocabulary blocks) LM head: time and memory, same run. */
export async function benchHead(gpu: Gpu): Promise<void> {
  // 512 tokens (a training micro-batch) × Qwen2.5-0.5B's hidden size; a 32000 vocabulary keeps
  // the f32 head in one binding, which the materialised backward needs.
  const rows = 512;
  const dim = 896;
  const vocab = 32000;
  const hidden = gpu.tensor(
    [rows, dim],
    "f32",
    logitsData(rows * dim).map((v) => v / 16),
  );
  const head = gpu.tensor(
    [vocab, dim],
    "f32",
    logitsData(vocab * dim).map((v) => v / 64),
  );
  const targets = gpu.tensor(
    [rows],
    "u32",
    new Uint32Array(rows).map((_, i) => (i * 7919) % vocab),
  );
  const dLp = gpu.tensor([rows], "f32", new Float32Array(rows).fill(1));
  const dH = gpu.tensor([rows], "f32", new Float32Array(rows).fill(0.01));
  const paths = {
    // What head.ts did before the blocks: logits for the forward, released, and recomputed
    // for the backward (so both paths run the logits GEMM twice in a training step).
    materialised: (backward: boolean): Tensor[] => {
      const logits = matmul(hidden, head, { transB: true });
      const r = tokenLogprobs(logits, targets);
      const h = entropy(logits);
      logits.dispose();
      const made = [r.logprobs, r.lse, h];
      if (backward) {
        const again = matmul(hidden, head, { transB: true });
        const dLogits = tokenLogprobsBackward(dLp, again, targets, r.lse);
        entropyBackward(dH, again, { out: dLogits, accumulate: true });
        made.push(again, dLogits, matmul(dLogits, head));
      }
      return made;
    },
    blocks: (backward: boolean): Tensor[] => {
      const r = headLogprobsByBlocks(hidden, head, targets, { entropy: true });
      const made = [r.logprobs, r.lse, r.entropy as Tensor];
      if (backward) {
        made.push(
          headBackwardByBlocks(hidden, head, targets, r.lse, dLp, {
            entropy: { value: r.entropy as Tensor, grad: dH },
          }),
        );
      }
      return made;
    },
  };
  const results: Record<string, { ms: number; trainMs: number; bytes: number }> = {};
  // Blocks first: the pool keeps freed buffers, so the path measured second only shows growth.
  for (const name of ["blocks", "materialised"] as const) {
    await gpu.sync();
    const before = gpu.pool.stats().peakBytes;
    for (const t of paths[name](true)) t.dispose();
    await gpu.sync();
    const bytes = gpu.pool.stats().peakBytes - before;
    const ms: number[] = [];
    const trainMs: number[] = [];
    for (let round = 0; round < 3; round++) {
      ms.push(await batchMs(gpu, 1, () => paths[name](false)));
      trainMs.push(await batchMs(gpu, 1, () => paths[name](true)));
    }
    results[name] = { ms: median(ms), trainMs: median(trainMs), bytes };
  }
  const { blocks: b, materialised: m } = results;
  const shape = [rows, dim, vocab];
  const adapter = gpu.info.description;
  for (const [metric, unit, nb, nm] of [
    ["head_forward", "ms", b.ms, m.ms],
    ["head_forward_backward", "ms", b.trainMs, m.trainMs],
    ["head_peak_alloc", "MiB", b.bytes / 2 ** 20, m.bytes / 2 ** 20],
  ] as const) {
    emit({ bench: "vocab", metric, value: Number(nb.toFixed(3)), unit, variant: "blocks", shape, adapter });
    emit({
      bench: "vocab",
      metric,
      value: Number(nm.toFixed(3)),
      unit,
      variant: "materialised",
      shape,
      adapter,
      ratio_blocks_to_materialised: Number((nb / nm).toFixed(3)),
    });
  }
  for (const t of [hidden, head, targets, dLp, dH]) t.dispose();
}

/** Emits tokenLogprobs and AdamW GB/s and sampling ms/row, each with the copy kernel alongside. */
export async function benchVocab(gpu: Gpu): Promise<void> {
  await benchHead(gpu);
  await benchTokenLogprobs(gpu);
  await benchSampling(gpu);
  await benchAdamW(gpu);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const gpu = await acquireGpu();
  try {
    await benchVocab(gpu);
  } finally {
    gpu.destroy();
  }
}
