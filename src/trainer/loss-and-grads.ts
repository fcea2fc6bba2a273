// `lossAndGrads`: the trainer's low-level API. One PPO loss over a batch and the gradient of
// every LoRA tensor, returned to the CPU keyed by PEFT name (for tests, interop and custom loops;
// the Trainer keeps gradients on the GPU instead).

import type { Tensor } from "../gpu/tensor.ts";
import type { Model } from "../model/model.ts";
import { peftKey } from "../model/peft.ts";
import { type PolicySample, policyGradients } from "./grads.ts";

export interface LossAndGradsOptions {
  temperature: number;
  clipLow: number;
  clipHigh: number;
  klCoef?: number;
}

/**
 * loss = −(1/Σmask) Σ_t mask_t · min(r_t·A, clip(r_t, 1−clipLow, 1+clipHigh)·A) (+ klCoef·k3 KL
 * to the adapter-off policy), r_t = exp(logprob_t − oldLogprob_t); grads of the attached LoRA.
 */
export async function lossAndGrads(
  model: Model,
  batch: PolicySample[],
  options: LossAndGradsOptions,
): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
  const lora = model.adapter;
  if (!lora) throw new Error("lossAndGrads needs a LoRA adapter attached (model.createAdapter or model.loadAdapter)");
  const gpu = model.gpu;
  const sink = new Map<string, { dA: Tensor; dB: Tensor }>();
  for (const m of lora.modules.values()) sink.set(m.path, { dA: gpu.zeros(m.a.shape), dB: gpu.zeros(m.b.shape) });
  try {
    const result = await policyGradients(model.transformer, batch, options, { lora: sink });
    const grads = new Map<string, Float32Array>();
    for (const m of lora.modules.values()) {
      const g = sink.get(m.path)!;
      grads.set(peftKey(m.layer, m.projection, "A"), await g.dA.read());
      grads.set(peftKey(m.layer, m.projection, "B"), await g.dB.read());
    }
    return { loss: result.loss, grads };
  } finally {
    for (const g of sink.values()) {
      g.dA.dispose();
      g.dB.dispose();
    }
  }
}
