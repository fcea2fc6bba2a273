// Policy-gradient backprop on the GPU for one micro-batch of samples (single calls or merged
// multi-turn sequences): forward the packed batch, read each token's logprob (one float per
// token), compute the PPO loss and its gradient on the CPU (src/trainer/ppo.ts), and
// backpropagate that gradient through the LM head and every layer into the gradient sink (LoRA
// tensors, or all weights for full training).

import { Scope } from "../gpu/scope.ts";
import { readAll } from "../gpu/tensor.ts";
import { backward, type GradientSink } from "../model/backward.ts";
import { packSequences, uploadBatch } from "../model/batch.ts";
import { headBackward, headLogprobs } from "../model/head.ts";
import type { LoraAdapter } from "../model/lora.ts";
import type { Transformer } from "../model/transformer.ts";
import { type PpoOptions, type PpoResult, ppoLoss } from "./ppo.ts";

/** One training sample: a whole sequence (prompt + response) and which tokens are trained. */
export interface PolicySample {
  tokens: number[];
  /**
   * Weight of token t's loss: 0 where it is not trained (prompt, tool results), 1 for a trained
   * response token; per-rollout loss normalisation scales a rollout's tokens (samples.ts).
   */
  lossMask: number[];
  advantage: number;
  /**
   * Per-token advantages (one per token, read where lossMask > 0), for a multi-turn sequence whose
   * calls carry different advantages; `advantage` is used where absent.
   */
  tokenAdvantages?: number[];
  /** Behaviour-policy logprob of token t (0 where masked). */
  oldLogprobs: number[];
}

export interface PolicyGradientOptions extends PpoOptions {
  temperature: number;
  /**
   * Scales this micro-batch's loss and gradient (default 1): gradient accumulation over
   * micro-batches weights each by its share of the batch's tokens, so the sum is the batch mean.
   */
  weight?: number;
  /** Recompute layer activations in backward instead of keeping them. */
  recompute?: boolean;
  /** The adapter trained (a named one, multi-agent); default: the model's default adapter. */
  lora?: LoraAdapter | null;
}

/**
 * Accumulates ∂L/∂θ for the PPO loss over `samples` into `sink` and returns the loss and metrics.
 * Token t's logprob is log softmax(logits_{t−1} / T)[x_t], so the row predicting it is t − 1.
 */
export async function policyGradients(
  model: Transformer,
  samples: PolicySample[],
  options: PolicyGradientOptions,
  sink: GradientSink,
): Promise<PpoResult> {
  const gpu = model.gpu;
  for (const [i, s] of samples.entries()) {
    if (s.lossMask.length !== s.tokens.length || s.oldLogprobs.length !== s.tokens.length) {
      throw new Error(`sample ${i}: tokens, lossMask and oldLogprobs must have the same length`);
    }
    if (s.lossMask[0])
      throw new Error(`sample ${i}: the first token has no logprob (nothing predicts it); mask it out`);
    if (!Number.isFinite(s.advantage)) throw new Error(`sample ${i}: advantage must be finite, got ${s.advantage}`);
    if (s.tokenAdvantages) {
      if (s.tokenAdvantages.length !== s.tokens.length)
        throw new Error(`sample ${i}: tokenAdvantages must have one entry per token`);
      if (!s.tokenAdvantages.every(Number.isFinite)) throw new Error(`sample ${i}: tokenAdvantages must be finite`);
    }
    if (!s.lossMask.every((m) => Number.isFinite(m) && m >= 0))
      throw new Error(`sample ${i}: lossMask entries must be finite and ≥ 0`);
  }
  const host = packSequences(
    samples.map((s) => s.tokens),
    model.config.vocabSize,
  );
  const total = host.tokenIds.length;
  // Row p predicts token p+1 of the same sequence; a sequence's last row predicts nothing.
  const targets = new Uint32Array(total);
  const mask = new Float32Array(total);
  const old = new Float32Array(total);
  const advantages = new Float32Array(total);
  const sequence = new Uint32Array(total);
  samples.forEach((s, i) => {
    const at = host.offsets[i];
    for (let p = 0; p < s.tokens.length; p++) {
      sequence[at + p] = i;
      if (p + 1 < s.tokens.length) {
        targets[at + p] = s.tokens[p + 1];
        mask[at + p] = s.lossMask[p + 1];
        old[at + p] = s.oldLogprobs[p + 1];
        advantages[at + p] = s.tokenAdvantages ? s.tokenAdvantages[p + 1] : s.advantage;
      }
    }
  });

  const scope = new Scope();
  try {
    const batch = uploadBatch(gpu, host, scope);
    const targetsGpu = scope.track(gpu.tensor([total], "u32", targets));
    let refLogprobs: Float32Array | undefined;
    const lora = options.lora === undefined ? model.lora : options.lora;
    if ((options.klCoef ?? 0) > 0 && lora) {
      const ref = model.forward(batch, { adapter: false });
      try {
        refLogprobs = await headLogprobs(model, ref.normed, targetsGpu, options.temperature, ref.scope).logprobs.read();
      } finally {
        ref.scope.dispose();
      }
    }
    const fwd = model.forward(batch, { recompute: options.recompute, lora });
    try {
      const { logprobs, lse, entropy } = headLogprobs(
        model,
        fwd.normed,
        targetsGpu,
        options.temperature,
        fwd.scope,
        true,
      );
      const [lp, ent] = (await readAll([logprobs, entropy!])) as Float32Array[];
      const result = ppoLoss(
        {
          logprobs: lp,
          oldLogprobs: old,
          refLogprobs: refLogprobs ?? (options.klCoef ? lp : undefined),
          mask,
          advantages,
          sequence,
          entropy: ent,
        },
        options,
      );
      const weight = options.weight ?? 1;
      if (weight !== 1) {
        for (let i = 0; i < result.dLogprobs.length; i++) result.dLogprobs[i] *= weight;
        if (result.dEntropy) for (let i = 0; i < result.dEntropy.length; i++) result.dEntropy[i] *= weight;
        result.loss *= weight;
      }
      const dLogprobs = scope.track(gpu.tensor([total], "f32", result.dLogprobs));
      const dHead = sink.full?.get(model.config.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
      const dEntropy = result.dEntropy ? scope.track(gpu.tensor([total], "f32", result.dEntropy)) : undefined;
      const dNormed = headBackward(
        model,
        fwd.normed,
        targetsGpu,
        lse,
        dLogprobs,
        options.temperature,
        scope,
        dHead,
        dEntropy,
        entropy ?? undefined,
      );
      backward(model, batch, fwd, dNormed, sink, { lora });
      await gpu.sync();
      return result;
    } finally {
      fwd.scope.dispose();
    }
  } finally {
    scope.dispose();
  }
}
