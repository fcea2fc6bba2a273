// Writing model directories: every weight of a (fully trained) model read back from the GPU as
// model.safetensors in HF names and layout (single-binding f32 weights only, the small models full
// training handles), and the tokenizer/template side files copied from the source directory.

import { copyFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Tensor } from "../gpu/tensor.ts";
import { type TensorToWrite, writeSafetensors } from "./safetensors-write.ts";
import type { Transformer } from "./transformer.ts";
import { denseVocabMatrix, denseWeight, PROJECTIONS } from "./weights.ts";

/** Files of a HF model directory that describe (not store) the model: copied verbatim. */
const SIDECAR_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "generation_config.json",
  "special_tokens_map.json",
  "vocab.json",
  "merges.txt",
  "chat_template.jinja",
  "chat_template.json",
];

/** Copies the tokenizer/generation/template files `fromDir` has into `toDir`; returns their names. */
export async function copySidecarFiles(fromDir: string, toDir: string): Promise<string[]> {
  const present = new Set(await readdir(fromDir));
  const copied: string[] = [];
  for (const f of SIDECAR_FILES) {
    if (!present.has(f)) continue;
    await copyFile(join(fromDir, f), join(toDir, f));
    copied.push(f);
  }
  return copied;
}

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
  await matrix(
    "model.embed_tokens.weight",
    denseVocabMatrix(w.embed, "model.embed_tokens.weight", "saveFullWeights"),
    vocabSize,
    hiddenSize,
  );
  for (const [i, layer] of w.layers.entries()) {
    await vector(`model.layers.${i}.input_layernorm.weight`, layer.inputNorm);
    await vector(`model.layers.${i}.post_attention_layernorm.weight`, layer.postNorm);
    if (layer.qNorm) await vector(`model.layers.${i}.self_attn.q_norm.weight`, layer.qNorm);
    if (layer.kNorm) await vector(`model.layers.${i}.self_attn.k_norm.weight`, layer.kNorm);
    if (layer.preFfnNorm) await vector(`model.layers.${i}.pre_feedforward_layernorm.weight`, layer.preFfnNorm);
    if (layer.postFfnNorm) await vector(`model.layers.${i}.post_feedforward_layernorm.weight`, layer.postFfnNorm);
    for (const p of PROJECTIONS) {
      const lin = layer.proj[p];
      await matrix(`${lin.path}.weight`, denseWeight(lin, "saveFullWeights"), lin.outFeatures, lin.inFeatures);
      if (lin.bias) await vector(`${lin.path}.bias`, lin.bias);
    }
  }
  await vector("model.norm.weight", w.norm);
  if (w.lmHead !== w.embed)
    await matrix(
      "lm_head.weight",
      denseVocabMatrix(w.lmHead, "lm_head.weight", "saveFullWeights"),
      vocabSize,
      hiddenSize,
    );
  await writeSafetensors(join(dir, "model.safetensors"), tensors);
}
