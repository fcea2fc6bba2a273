// Bandwidth of the per-token transformer kernels (RMSNorm, RoPE, SwiGLU, embedding gather,
// residual add) at Qwen2-0.5B sizes, each next to the copy kernel's GB/s over the same number of
// bytes in the same run, so the ratio says how close an op gets to plain memory movement on this
// adapter. Variants (row-sum build, workgroup size, layouts, in-place) are compared side by side.
//
//   npx tsx bench/kernels/pointwise.ts
//
// Bytes counted are the minimum each op must move (inputs read once, outputs written once).

import { fileURLToPath } from "node:url";
import { acquireGpu, type Gpu, timeGpu } from "../../src/gpu/index.ts";
import { copy } from "../../src/gpu/kernels/copy.ts";
import { add, addInPlace } from "../../src/gpu/kernels/elementwise.ts";
import { embedding, uploadTokenIds } from "../../src/gpu/kernels/embedding.ts";
import { rmsnorm, rmsnormBackward } from "../../src/gpu/kernels/rmsnorm.ts";
import { rope } from "../../src/gpu/kernels/rope.ts";
import { swiglu, swigluBackward, swigluFused } from "../../src/gpu/kernels/swiglu.ts";
import { emit } from "../lib.ts";

/** Dispatches per timed batch: amortises submit and timestamp overhead. */
const REPS = 10;
/** Alternating op/copy measurements per result (medians reported). */
const ROUNDS = 5;
const TOKENS = 512;
const DIM = 896;
const HEADS = 14;
const HEAD_DIM = 64;
const FFN = 4864;
const VOCAB = 151936;

/** Milliseconds of one call of `op`, from a GPU-timed batch of REPS calls. */
async function batchMs(gpu: Gpu, op: () => void): Promise<number> {
  const { ms } = await timeGpu(gpu, () => {
    for (let i = 0; i < REPS; i++) op();
  });
  return ms / REPS;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Times `op` and the copy kernel over the same byte count in alternating rounds (so both see
 * the same machine load: other processes share the CPU that lavapipe runs on) and emits the
 * medians as GB/s with their ratio.
 */
async function measure(
  gpu: Gpu,
  metric: string,
  variant: string,
  shape: number[],
  bytes: number,
  op: () => void,
): Promise<void> {
  const n = Math.max(4, Math.round(bytes / 8 / 4) * 4);
  const src = gpu.zeros([n]);
  const dst = gpu.zeros([n]);
  const copyOp = () => copy(src, dst);
  await batchMs(gpu, op);
  await batchMs(gpu, copyOp);
  const opTimes: number[] = [];
  const copyTimes: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    opTimes.push(await batchMs(gpu, op));
    copyTimes.push(await batchMs(gpu, copyOp));
  }
  src.dispose();
  dst.dispose();
  const ms = median(opTimes);
  const gbps = bytes / (ms * 1e6);
  const copyGbps = (8 * n) / (median(copyTimes) * 1e6);
  emit({
    bench: "pointwise",
    metric,
    value: Number(gbps.toFixed(3)),
    unit: "GB/s",
    variant,
    shape,
    ms: Number(ms.toFixed(4)),
    copy_gbps: Number(copyGbps.toFixed(3)),
    ratio_to_copy: Number((gbps / copyGbps).toFixed(3)),
    adapter: gpu.info.description,
  });
}

/** Emits GB/s for every per-token kernel and its variants, with the copy kernel alongside. */
export async function benchPointwise(gpu: Gpu): Promise<void> {
  const f = 4;
  const x = gpu.zeros([TOKENS, DIM]);
  const dy = gpu.zeros([TOKENS, DIM]);
  const w = gpu.zeros([DIM]);
  const y = gpu.zeros([TOKENS, DIM]);
  const dx = gpu.zeros([TOKENS, DIM]);
  const dweight = gpu.zeros([DIM]);
  const rstd = gpu.zeros([TOKENS]);
  fillOnes(gpu, [x, dy, w]);

  // RMSNorm: the row-sum build and workgroup size are the knobs.
  const rmsShape = [TOKENS, DIM];
  const rmsFwdBytes = (2 * TOKENS * DIM + DIM + TOKENS) * f;
  const rmsBwdBytes = (3 * TOKENS * DIM + 2 * DIM + TOKENS) * f;
  const variants: { name: string; v: { workgroupSize?: number; subgroups?: boolean } }[] = [];
  for (const size of [32, 64, 128]) {
    if (gpu.features.subgroups) variants.push({ name: `subgroups wg${size}`, v: { workgroupSize: size } });
    variants.push({ name: `tree wg${size}`, v: { workgroupSize: size, subgroups: false } });
  }
  for (const { name, v } of variants) {
    await measure(gpu, "rmsnorm_fwd", name, rmsShape, rmsFwdBytes, () => rmsnorm(x, w, 1e-6, { ...v, out: y, rstd }));
  }
  for (const { name, v } of variants) {
    await measure(gpu, "rmsnorm_bwd", name, rmsShape, rmsBwdBytes, () =>
      rmsnormBackward(dy, x, w, rstd, { ...v, dx, dweight }),
    );
  }

  // RoPE on q [512, 14, 64].
  const q = gpu.zeros([TOKENS, HEADS, HEAD_DIM]);
  const qOut = gpu.zeros([TOKENS, HEADS, HEAD_DIM]);
  const positions = gpu.tensor(
    [TOKENS],
    "u32",
    Uint32Array.from({ length: TOKENS }, (_, t) => t),
  );
  const ropeBytes = (2 * TOKENS * HEADS * HEAD_DIM + TOKENS) * f;
  const ropeOpts = { theta: 1e6, nHeads: HEADS, headDim: HEAD_DIM };
  await measure(gpu, "rope", "out of place", [TOKENS, HEADS, HEAD_DIM], ropeBytes, () =>
    rope(q, positions, { ...ropeOpts, out: qOut }),
  );
  await measure(gpu, "rope", "in place", [TOKENS, HEADS, HEAD_DIM], ropeBytes, () =>
    rope(q, positions, { ...ropeOpts, out: q }),
  );

  // SwiGLU [512, 4864]: separate gate/up vs the fused [512, 2·4864] layout; and the backward.
  const gate = gpu.zeros([TOKENS, FFN]);
  const up = gpu.zeros([TOKENS, FFN]);
  const h = gpu.zeros([TOKENS, FFN]);
  const gateUp = gpu.zeros([TOKENS, 2 * FFN]);
  const dgate = gpu.zeros([TOKENS, FFN]);
  const dup = gpu.zeros([TOKENS, FFN]);
  const ffnShape = [TOKENS, FFN];
  await measure(gpu, "swiglu_fwd", "separate", ffnShape, 3 * TOKENS * FFN * f, () => swiglu(gate, up, { out: h }));
  await measure(gpu, "swiglu_fwd", "fused", ffnShape, 3 * TOKENS * FFN * f, () => swigluFused(gateUp, { out: h }));
  await measure(gpu, "swiglu_bwd", "separate", ffnShape, 5 * TOKENS * FFN * f, () =>
    swigluBackward(h, gate, up, { dgate, dup }),
  );

  // Embedding gather: 512 tokens from a 151936 × 896 table (sharded if over the binding limit).
  const tableRows = Math.min(VOCAB, Math.floor(gpu.maxBindingSize / (DIM * f)));
  const table = gpu.zeros([tableRows, DIM]);
  const ids = uploadTokenIds(
    gpu,
    Uint32Array.from({ length: TOKENS }, (_, t) => (t * 7919) % tableRows),
    tableRows,
  );
  await measure(
    gpu,
    "embedding_gather",
    `table ${tableRows}x${DIM}`,
    [TOKENS, DIM],
    (2 * TOKENS * DIM + TOKENS) * f,
    () => embedding(table, ids, { out: y }),
  );

  // Residual add [512, 896]: out of place vs in place (acc += x).
  await measure(gpu, "add", "out of place", [TOKENS, DIM], 3 * TOKENS * DIM * f, () => add(x, dy, y));
  await measure(gpu, "add", "in place", [TOKENS, DIM], 3 * TOKENS * DIM * f, () => addInPlace(y, x));

  for (const t of [x, dy, w, y, dx, dweight, rstd, q, qOut, positions, gate, up, h, gateUp, dgate, dup, table, ids]) {
    t.dispose();
  }
}

function fillOnes(gpu: Gpu, tensors: ReturnType<Gpu["tensor"]>[]): void {
  for (const t of tensors) t.write(new Float32Array(t.size).fill(1));
  gpu.flush();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const gpu = await acquireGpu();
  try {
    await benchPointwise(gpu);
  } finally {
    gpu.destroy();
  }
}
