// Reads every weight of a (fully trained) model back from the GPU and writes it as the model
// directory's model.safetensors in HF names and layout, so the trained model loads like any
// checkpoint. Single-binding f32 weights only (the small models full training handles).

import { join } from "node:path";
import type { Tensor } from "../gpu/tensor.ts";
import { type TensorToWrite, writeSafetensors } from "./safetensors-write.ts";
import type { Transformer } from "./transformer.ts";
import { PROJECTIONS } from "./weights.ts";

/** Writes `dir/model.safetensors` from the weights on the GPU (F32). */
export async function saveFullWeights(model: Transformer, dir: string): Promise<void> {
  const w = model.weights;
  const tensors: Record<string, TensorToWrite> = {};
  const vector = async (name: string, t: Tensor) => {
    tensors[name] = { dtype: "F32", shape: [t.size], data: await t.read() };
  };
  const matrix = async (name: string, m: { shards: { tensor: Tensor }[] }, rows: number, cols: number) => {
    if (m.shards.length !== 1) throw new Error(`saveFullWeights: ${name} is split in ${m.shards.length} shards`);
    const t = m.shards[0].tensor;
    if (t.dtype !== "f32") throw new Error(`saveFullWeights: ${name} is ${t.dtype}, expected f32`);
    tensors[name] = { dtype: "F32", shape: [rows, cols], data: await t.read() };
  };
  const { vocabSize, hiddenSize } = model.config;
  await matrix("model.embed_tokens.weight", w.embed, vocabSize, hiddenSize);
  for (const [i, layer] of w.layers.entries()) {
    await vector(`model.layers.${i}.input_layernorm.weight`, layer.inputNorm);
    await vector(`model.layers.${i}.post_attention_layernorm.weight`, layer.postNorm);
    for (const p of PROJECTIONS) {
      const lin = layer.proj[p];
      await matrix(`${lin.path}.weight`, lin.weight, lin.outFeatures, lin.inFeatures);
      if (lin.bias) await vector(`${lin.path}.bias`, lin.bias);
    }
  }
  await vector("model.norm.weight", w.norm);
  if (w.lmHead !== w.embed) await matrix("lm_head.weight", w.lmHead, vocabSize, hiddenSize);
  await writeSafetensors(join(dir, "model.safetensors"), tensors);
}
