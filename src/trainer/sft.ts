// Supervised fine-tuning on the GPU: the mean negative log-likelihood of the loss-masked tokens of
// packed sequences, and its gradient backpropagated through the LM head and every layer into a
// gradient sink. Used to pre-train the built-in demo model (all weights) and for SFT runs.

import { Scope } from "../gpu/scope.ts";
import { backward, type GradientSink } from "../model/backward.ts";
import { packSequences, uploadBatch } from "../model/batch.ts";
import { headBackward, headLogprobs } from "../model/head.ts";
import type { Transformer } from "../model/transformer.ts";

/** One supervised sequence: the whole text as tokens and which tokens are learned. */
export interface SftSample {
  tokens: number[];
  /** 1 where token t is a target (its NLL counts); the first token can never be one. */
  lossMask: number[];
}

export interface SftOptions {
  /**
   * Scales this micro-batch's loss and gradient (default 1): for gradient accumulation, weight
   * each micro-batch by its share of the batch's target tokens so the sum is the batch mean.
   */
  weight?: number;
  /** Recompute layer activations in backward instead of keeping them. */
  recompute?: boolean;
}

export interface SftResult {
  /** weight × mean NLL over the masked tokens (nats per token). */
  loss: number;
  /** Number of masked (target) tokens. */
  tokens: number;
}

/**
 * Accumulates ∂(weight · mean NLL)/∂θ over `samples` into `sink` and returns the loss; with a null
 * `sink` only the loss is computed (evaluation: no backward pass). Token t's
 * logprob is log softmax(logits_{t−1})[x_t], so the row predicting it is t − 1; each target's
 * logprob gets the gradient −weight/N (N = number of target tokens in this call).
 */
export async function sftGradients(
  model: Transformer,
  samples: SftSample[],
  sink: GradientSink | null,
  options: SftOptions = {},
): Promise<SftResult> {
  const gpu = model.gpu;
  const weight = options.weight ?? 1;
  if (!Number.isFinite(weight)) throw new Error(`weight must be finite, got ${weight}`);
  let count = 0;
  for (const [i, s] of samples.entries()) {
    if (s.lossMask.length !== s.tokens.length) {
      throw new Error(
        `sample ${i}: lossMask has ${s.lossMask.length} entries, expected one per token (${s.tokens.length})`,
      );
    }
    if (s.lossMask[0])
      throw new Error(`sample ${i}: the first token has no logprob (nothing predicts it); mask it out`);
    for (const m of s.lossMask) if (m) count++;
  }
  if (count === 0) throw new Error("no sample has a loss-masked token: nothing to learn");
  const host = packSequences(
    samples.map((s) => s.tokens),
    model.config.vocabSize,
  );
  const total = host.tokenIds.length;
  // Row p predicts token p+1 of the same sequence; a sequence's last row predicts nothing.
  const targets = new Uint32Array(total);
  const dLogprobHost = new Float32Array(total);
  const isTarget = new Uint8Array(total);
  samples.forEach((s, i) => {
    const at = host.offsets[i];
    for (let p = 0; p + 1 < s.tokens.length; p++) {
      targets[at + p] = s.tokens[p + 1];
      if (s.lossMask[p + 1]) {
        isTarget[at + p] = 1;
        dLogprobHost[at + p] = -weight / count;
      }
    }
  });

  const scope = new Scope();
  try {
    const batch = uploadBatch(gpu, host, scope);
    const targetsGpu = scope.track(gpu.tensor([total], "u32", targets));
    const fwd = model.forward(batch, { recompute: options.recompute });
    try {
      const { logprobs, lse } = headLogprobs(model, fwd.normed, targetsGpu, 1, fwd.scope);
      if (sink) {
        const dLogprobs = scope.track(gpu.tensor([total], "f32", dLogprobHost));
        const dHead = sink.full?.get(model.config.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
        const dNormed = headBackward(model, fwd.normed, targetsGpu, lse, dLogprobs, 1, scope, dHead);
        backward(model, batch, fwd, dNormed, sink);
      }
      const lp = await logprobs.read();
      await gpu.sync();
      let nll = 0;
      for (let r = 0; r < total; r++) if (isTarget[r]) nll -= lp[r];
      return { loss: (weight * nll) / count, tokens: count };
    } finally {
      fwd.scope.dispose();
    }
  } finally {
    scope.dispose();
  }
}
