// Attention benchmarks: training forward/backward on a packed batch (time and GFLOP/s), and
// KV-cache decode bandwidth (bytes of K/V read per second) at several batch sizes and context
// lengths, split (flash-decoding) vs unsplit side by side, each as a ratio to the copy kernel's
// bandwidth measured in the same run.
//
//   npx tsx bench/kernels/attention.ts

import { fileURLToPath } from "node:url";
import { acquireGpu, type Gpu, type Tensor, timeGpu } from "../../src/gpu/index.ts";
import { attention, attentionBackward, attentionVariant, packedSeqStart } from "../../src/gpu/kernels/attention.ts";
import { copy } from "../../src/gpu/kernels/copy.ts";
import { cachedAttention, createKvCache, kvWrite, splitPlan } from "../../src/gpu/kernels/kvcache.ts";
import { emit, medianMs } from "../lib.ts";

const BENCH = "attention";

/** Seeded-enough filler: benchmarks need realistic magnitudes, not particular values. */
function filler(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

async function timeMs(gpu: Gpu, record: () => Tensor[]): Promise<number> {
  let made: Tensor[] = [];
  const { ms } = await timeGpu(gpu, () => {
    made = record();
  });
  for (const t of made) t.dispose();
  return ms;
}

/** Copy kernel bandwidth (bytes read + written per second) on a buffer of `bytes`. */
async function copyGbps(gpu: Gpu, bytes: number): Promise<number> {
  const n = bytes / 4;
  const a = gpu.tensor([n], "f32", filler(n, 1));
  const b = gpu.tensor([n]);
  const ms = await medianMs(
    () =>
      timeMs(gpu, () => {
        copy(a, b);
        return [];
      }),
    7,
    2,
  );
  a.dispose();
  b.dispose();
  return (2 * bytes) / (ms * 1e6);
}

async function benchTraining(gpu: Gpu, adapter: string): Promise<void> {
  const lengths = [128, 128, 128, 128];
  const opts = { nHeads: 14, nKvHeads: 2, headDim: 64 };
  const seqStart = packedSeqStart(lengths);
  const T = seqStart.length;
  const q = gpu.tensor([T, 14, 64], "f32", filler(T * 14 * 64, 2));
  const k = gpu.tensor([T, 2, 64], "f32", filler(T * 2 * 64, 3));
  const v = gpu.tensor([T, 2, 64], "f32", filler(T * 2 * 64, 4));
  const dOut = gpu.tensor([T, 14, 64], "f32", filler(T * 14 * 64, 5));
  const s = gpu.tensor([T], "u32", seqStart);
  // (query, key) pairs per head that causal masking leaves: L(L+1)/2 per sequence.
  const pairs = opts.nHeads * lengths.reduce((a, n) => a + (n * (n + 1)) / 2, 0);
  // FlashAttention-2 convention: forward 4·D flops per pair (q·k and p·v), backward 2.5× that.
  const fwdFlops = 4 * opts.headDim * pairs;
  const bwdFlops = 2.5 * fwdFlops;
  const { out, lse } = attention(q, k, v, s, opts);
  const shape = { tokens: T, sequences: lengths.length, ...opts, adapter };
  // The adapter's default variant and the one-head-per-invocation variant, side by side.
  const chosen = attentionVariant(gpu, opts, BENCH).headsPerInvocation;
  const fwdByVariant: Record<number, number> = {};
  for (const heads of chosen === 1 ? [1] : [chosen, 1]) {
    const run = { ...opts, headsPerInvocation: heads };
    const rec = { ...shape, headsPerInvocation: heads, default: heads === chosen };
    const fwdMs = await medianMs(() => timeMs(gpu, () => Object.values(attention(q, k, v, s, run))));
    fwdByVariant[heads] = fwdMs;
    emit({ bench: BENCH, metric: "train_forward_ms", value: fwdMs, unit: "ms", ...rec });
    emit({ bench: BENCH, metric: "train_forward_gflops", value: fwdFlops / (fwdMs * 1e6), unit: "GFLOP/s", ...rec });
    const bwdMs = await medianMs(() =>
      timeMs(gpu, () => Object.values(attentionBackward(dOut, q, k, v, out, lse, s, run))),
    );
    emit({ bench: BENCH, metric: "train_backward_ms", value: bwdMs, unit: "ms", ...rec });
    emit({ bench: BENCH, metric: "train_backward_gflops", value: bwdFlops / (bwdMs * 1e6), unit: "GFLOP/s", ...rec });
    emit({ bench: BENCH, metric: "train_backward_over_forward", value: bwdMs / fwdMs, unit: "ratio", ...rec });
  }
  if (chosen !== 1) {
    emit({
      bench: BENCH,
      metric: "train_forward_speedup_vs_one_head",
      value: fwdByVariant[1] / fwdByVariant[chosen],
      unit: "ratio",
      ...shape,
      headsPerInvocation: chosen,
    });
  }
  for (const t of [q, k, v, dOut, s, out, lse]) t.dispose();
}

async function benchDecode(gpu: Gpu, adapter: string, copyRate: number): Promise<void> {
  const heads = { nHeads: 14, nKvHeads: 2, headDim: 64 };
  const maxSlots = 8;
  const maxLen = 4096;
  const cache = createKvCache(gpu, { maxSlots, maxLen, ...heads });
  // Fill every slot's cache with data (one big write, slot-major).
  const rows = maxSlots * maxLen;
  const kvRow = heads.nKvHeads * heads.headDim;
  const kAll = gpu.tensor([rows, 2, 64], "f32", filler(rows * kvRow, 6));
  const vAll = gpu.tensor([rows, 2, 64], "f32", filler(rows * kvRow, 7));
  const slotAll = gpu.tensor(
    [rows],
    "u32",
    Uint32Array.from({ length: rows }, (_, r) => Math.floor(r / maxLen)),
  );
  const posAll = gpu.tensor(
    [rows],
    "u32",
    Uint32Array.from({ length: rows }, (_, r) => r % maxLen),
  );
  kvWrite(cache.k, cache.v, kAll, vAll, slotAll, posAll);
  await gpu.sync();
  for (const t of [kAll, vAll, slotAll, posAll]) t.dispose();

  for (const batch of [1, 8]) {
    const q = gpu.tensor([batch, 14, 64], "f32", filler(batch * 14 * 64, 8));
    const slot = gpu.tensor(
      [batch],
      "u32",
      Uint32Array.from({ length: batch }, (_, i) => i),
    );
    for (const context of [128, 1024, 4096]) {
      const pos = gpu.tensor([batch], "u32", new Uint32Array(batch).fill(context - 1));
      const bytes = batch * context * kvRow * 4 * 2;
      // [name, keys per split (auto when undefined), query heads per invocation (adapter default)]
      const variants: [string, number | undefined, number | undefined][] = [
        ["split", undefined, undefined],
        ["unsplit", context, undefined],
        ["split_one_head", undefined, 1],
      ];
      const rates: Record<string, number> = {};
      for (const [variant, splitSize, headsPerInvocation] of variants) {
        const opts = { ...heads, maxContext: context, splitSize, headsPerInvocation };
        const hpi = attentionVariant(gpu, opts, BENCH).headsPerInvocation;
        const ms = await medianMs(
          () => timeMs(gpu, () => [cachedAttention(q, cache.k, cache.v, slot, pos, opts)]),
          7,
          2,
        );
        rates[variant] = bytes / (ms * 1e6);
        const splits = splitPlan((batch * heads.nHeads) / hpi, context, splitSize).splits;
        const rec = { batch, context, variant, splits, headsPerInvocation: hpi, ...heads, adapter };
        emit({ bench: BENCH, metric: "decode_ms", value: ms, unit: "ms", ...rec });
        emit({ bench: BENCH, metric: "decode_kv_gbps", value: rates[variant], unit: "GB/s", ...rec });
        emit({ bench: BENCH, metric: "decode_vs_copy", value: rates[variant] / copyRate, unit: "ratio", ...rec });
      }
      emit({
        bench: BENCH,
        metric: "decode_split_speedup",
        value: rates.split / rates.unsplit,
        unit: "ratio",
        batch,
        context,
        adapter,
      });
      emit({
        bench: BENCH,
        metric: "decode_group_speedup",
        value: rates.split / rates.split_one_head,
        unit: "ratio",
        batch,
        context,
        adapter,
      });
      pos.dispose();
    }
    q.dispose();
    slot.dispose();
  }
  cache.k.dispose();
  cache.v.dispose();
}

/** Emits training attention time/GFLOP/s and decode K/V bandwidth (vs copy) on this adapter. */
export async function benchAttention(gpu: Gpu): Promise<void> {
  const adapter = gpu.info.description;
  const copyRate = await copyGbps(gpu, 32 * 1024 * 1024);
  emit({ bench: BENCH, metric: "copy_gbps", value: copyRate, unit: "GB/s", bytes: 32 * 1024 * 1024, adapter });
  await benchTraining(gpu, adapter);
  await benchDecode(gpu, adapter, copyRate);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const gpu = await acquireGpu();
  try {
    await benchAttention(gpu);
  } finally {
    gpu.destroy();
  }
}
