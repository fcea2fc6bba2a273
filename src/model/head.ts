// The LM head: final hidden states → logits → per-token logprobs, and its backward. A real
// vocabulary makes logits huge (512 tokens × 151936 × 4 B = 311 MB, over one binding), so rows
// are processed in chunks that fit, and logits are recomputed in backward instead of kept.

import { entropy, entropyBackward, tokenLogprobs, tokenLogprobsBackward } from "../gpu/kernels/logprobs.ts";
import { matmul } from "../gpu/kernels/matmul.ts";
import type { Scope } from "../gpu/scope.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { wholeMatrix } from "./linear.ts";
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
  return scope.track(matmul(normed, head.shards.length === 1 ? head.shards[0].tensor : head, { transB: true }));
}

/**
 * log softmax(logits_t / T)[target_t] for every row, and each row's log-sum-exp (for backward).
 * `targets` is u32 [rows].
 */
export function headLogprobs(
  model: Transformer,
  normed: Tensor,
  targets: Tensor,
  temperature: number,
  scope: Scope,
  withEntropy = false,
): { logprobs: Tensor; lse: Tensor; entropy: Tensor | null } {
  const rows = normed.shape[0];
  const chunk = headChunkRows(model, rows);
  if (chunk >= rows) {
    // The common case (all rows' logits fit one binding): no chunk buffers to stitch together.
    const logits = headLogits(model, normed, scope);
    const r = tokenLogprobs(logits, targets, { temperature });
    const ent = withEntropy ? scope.track(entropy(logits, { temperature })) : null;
    return { logprobs: scope.track(r.logprobs), lse: scope.track(r.lse), entropy: ent };
  }
  const logprobs = scope.track(model.gpu.tensor([rows]));
  const lse = scope.track(model.gpu.tensor([rows]));
  const ent = withEntropy ? scope.track(model.gpu.tensor([rows])) : null;
  for (let start = 0; start < rows; start += chunk) {
    const n = Math.min(chunk, rows - start);
    const logits = headLogits(model, sliceRows(normed, start, n, scope), scope);
    const r = tokenLogprobs(logits, sliceRows(targets, start, n, scope).reshape([n]), { temperature });
    scope.track(r.logprobs);
    scope.track(r.lse);
    writeRows(logprobs.reshape([rows, 1]), start, r.logprobs);
    writeRows(lse.reshape([rows, 1]), start, r.lse);
    if (ent) writeRows(ent.reshape([rows, 1]), start, scope.track(entropy(logits, { temperature })));
  }
  return { logprobs, lse, entropy: ent };
}

/**
 * Gradient of Σ dLogprobs·logprobs (+ Σ dEntropy·entropy) w.r.t. the normed hidden states
 * (returned), recomputing each chunk's logits. With `dHead` (full training), also accumulates the
 * LM head's gradient.
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
): Tensor {
  const rows = normed.shape[0];
  const chunk = headChunkRows(model, rows);
  const head = wholeMatrix(model.weights.lmHead, "LM head backward");
  const dNormed = scope.track(model.gpu.tensor(normed.shape));
  for (let start = 0; start < rows; start += chunk) {
    const n = Math.min(chunk, rows - start);
    const x = sliceRows(normed, start, n, scope);
    const logits = headLogits(model, x, scope);
    const dLogits = scope.track(
      tokenLogprobsBackward(
        sliceRows(dLogprobs.reshape([rows, 1]), start, n, scope).reshape([n]),
        logits,
        sliceRows(targets.reshape([rows, 1]), start, n, scope).reshape([n]),
        sliceRows(lse.reshape([rows, 1]), start, n, scope).reshape([n]),
        { temperature },
      ),
    );
    if (dEntropy) {
      const dH = sliceRows(dEntropy.reshape([rows, 1]), start, n, scope).reshape([n]);
      entropyBackward(dH, logits, { temperature, out: dLogits, accumulate: true });
    }
    const dx = scope.track(matmul(dLogits, head));
    writeRows(dNormed, start, dx);
    if (dHead) matmul(dLogits, x, { transA: true, accumulate: true, out: dHead });
  }
  return dNormed;
}
