// The LM head: final hidden states → per-token logprobs (and entropy) for training, and its
// backward, by vocabulary blocks (src/gpu/kernels/lmhead.ts): a real vocabulary makes logits
// huge (512 tokens × 151936 × 4 B = 311 MB), so they are never materialised, and are recomputed
// block by block in the backward. Full logits rows (serving's sampler, `Model.logits`) come from
// headLogits over row chunks that fit one binding.

import { gemvQuantized, gemvQuantLegal } from "../gpu/kernels/gemv-quant.ts";
import { headBackwardByBlocks, headLogprobsByBlocks } from "../gpu/kernels/lmhead.ts";
import { GEMV_MAX_ROWS, matmul } from "../gpu/kernels/matmul.ts";
import type { ShardedInt8 } from "../gpu/kernels/quant.ts";
import type { Scope } from "../gpu/scope.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { Transformer } from "./transformer.ts";

/** Rows of logits per chunk: what fits one binding, capped to bound memory. */
export function headChunkRows(model: Transformer, rows: number, cap = 512): number {
  const perRow = model.config.vocabSize * 4;
  return Math.max(1, Math.min(rows, cap, Math.floor(model.gpu.maxBindingSize / perRow)));
}

/** Copies rows [start, start+count) of a [rows, cols] tensor into a new tensor. */
export function sliceRows(t: Tensor, start: number, count: number, scope: Scope): Tensor {
  const cols = t.size / t.shape[0];
  if (start === 0 && count === t.shape[0]) return t;
  const out = scope.track(t.gpu.tensor([count, cols], t.dtype));
  t.gpu.commands.copyBufferToBuffer(
    t.buffer,
    t.byteOffset + start * cols * 4,
    out.buffer,
    out.byteOffset,
    count * cols * 4,
  );
  return out;
}

/** Writes `src` [count, cols] into rows [start, start+count) of `dst`. */
export function writeRows(dst: Tensor, start: number, src: Tensor): void {
  const cols = dst.size / dst.shape[0];
  if (src === dst) return;
  dst.gpu.commands.copyBufferToBuffer(
    src.buffer,
    src.byteOffset,
    dst.buffer,
    dst.byteOffset + start * cols * 4,
    src.size * 4,
  );
}

/** Logits [rows, vocab] of already-normed hidden states (one chunk; caller keeps it small). */
export function headLogits(model: Transformer, normed: Tensor, scope: Scope): Tensor {
  const head = model.weights.lmHead;
  if ("kind" in head) return scope.track(int8Logits(normed, head, scope));
  return scope.track(matmul(normed, head.shards.length === 1 ? head.shards[0].tensor : head, { transB: true }));
}

/**
 * Logits through an int8 head, read packed by gemv_q in launches of up to 8 rows per row shard of
 * the head (decode's batch is one or a few launches; a long prompt's rows cost one read of the
 * head per 8). With gemv_q switched off (FULGUR_GEMV_Q=0) each launch widens its shard first.
 */
function int8Logits(normed: Tensor, head: ShardedInt8, scope: Scope): Tensor {
  const rows = normed.shape[0];
  const logits = normed.gpu.tensor([rows, head.rows]);
  for (let start = 0; start < rows; start += GEMV_MAX_ROWS) {
    const n = Math.min(GEMV_MAX_ROWS, rows - start);
    const whole = n === rows;
    const x = whole ? normed : sliceRows(normed, start, n, scope);
    const out = whole ? logits : normed.gpu.tensor([n, head.rows]);
    const variant = fusedOrWidened(normed, n);
    for (const shard of head.shards) gemvQuantized(x, shard.m, { out, outColumn: shard.rowStart, variant });
    if (!whole) {
      writeRows(logits, start, out);
      out.dispose();
    }
  }
  return logits;
}

function fusedOrWidened(x: Tensor, rows: number): string | undefined {
  return gemvQuantLegal(x.gpu, rows) ? undefined : "dequant";
}

/**
 * log softmax(logits_t / T)[target_t] for every row, each row's log-sum-exp (for backward) and,
 * with `withEntropy`, its entropy. Computed by vocabulary blocks of the head (lmhead.ts): no
 * [rows, vocab] logits tensor exists, so memory stays linear in the rows. `targets` is u32 [rows].
 */
export function headLogprobs(
  model: Transformer,
  normed: Tensor,
  targets: Tensor,
  temperature: number,
  scope: Scope,
  withEntropy = false,
): { logprobs: Tensor; lse: Tensor; entropy: Tensor | null } {
  const r = headLogprobsByBlocks(normed, model.weights.lmHead, targets, { temperature, entropy: withEntropy });
  return {
    logprobs: scope.track(r.logprobs),
    lse: scope.track(r.lse),
    entropy: r.entropy ? scope.track(r.entropy) : null,
  };
}

/**
 * Gradient of Σ dLogprobs·logprobs (+ Σ dEntropy·entropy) w.r.t. the normed hidden states
 * (returned), recomputing each vocabulary block's logits. With `dHead` (full training), also
 * accumulates the LM head's gradient. `entropy` is the forward's (headLogprobs with entropy);
 * without it a dEntropy costs one more forward pass over the head.
 */
export function headBackward(
  model: Transformer,
  normed: Tensor,
  targets: Tensor,
  lse: Tensor,
  dLogprobs: Tensor,
  temperature: number,
  scope: Scope,
  dHead?: Tensor,
  dEntropy?: Tensor,
  entropy?: Tensor,
): Tensor {
  const head = model.weights.lmHead;
  let ent: { value: Tensor; grad: Tensor } | undefined;
  if (dEntropy) {
    const value = entropy ?? headLogprobs(model, normed, targets, temperature, scope, true).entropy;
    ent = { value: value as Tensor, grad: dEntropy };
  }
  return scope.track(headBackwardByBlocks(normed, head, targets, lse, dLogprobs, { temperature, entropy: ent, dHead }));
}
