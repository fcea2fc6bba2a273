// The model's parameters on the GPU: streamed from a checkpoint tensor by tensor (one tensor of
// CPU memory at a time), laid out the way the kernels want them (HF's [out, in] linear weights,
// used as x·Wᵀ), with the embedding and LM head as row-sharded matrices because a real vocabulary
// (151936 × 896 f32 = 544 MB) exceeds one storage binding.

import type { Gpu } from "../gpu/device.ts";
import { ShardedMatrix } from "../gpu/shard.ts";
import type { DType, Tensor } from "../gpu/tensor.ts";
import {
  ATTENTION_PROJECTIONS,
  MLP_PROJECTIONS,
  type ModelConfig,
  type ProjectionName,
  projectionHasBias,
  projectionPath,
  projectionShape,
} from "./config.ts";
import type { Checkpoint } from "./loader.ts";

export const PROJECTIONS: readonly ProjectionName[] = [...ATTENTION_PROJECTIONS, ...MLP_PROJECTIONS];

/** One nn.Linear: y = x·Wᵀ + b. */
export interface LinearWeights {
  /** HF module path, e.g. "model.layers.0.self_attn.q_proj" (LoRA and PEFT keys hang off it). */
  path: string;
  layer: number;
  projection: ProjectionName;
  weight: ShardedMatrix;
  bias: Tensor | null;
  outFeatures: number;
  inFeatures: number;
}

export interface LayerWeights {
  inputNorm: Tensor;
  postNorm: Tensor;
  /** Per-head RMSNorm weights [headDim] of q and k (Qwen3); null without q/k norm. */
  qNorm: Tensor | null;
  kNorm: Tensor | null;
  proj: Record<ProjectionName, LinearWeights>;
}

export interface ModelWeights {
  embed: ShardedMatrix;
  layers: LayerWeights[];
  norm: Tensor;
  /** The same object as `embed` when embeddings are tied. */
  lmHead: ShardedMatrix;
}

export interface UploadOptions {
  /** Storage type of linear weights; "f16" needs the shader-f16 feature (f32 accumulation). */
  dtype?: "f32" | "f16";
  /** Called after each tensor (for progress bars). */
  onTensor?: (name: string, index: number, total: number) => void;
}

/** Uploads every tensor of `checkpoint` to the GPU. */
export async function uploadWeights(
  gpu: Gpu,
  checkpoint: Checkpoint,
  options: UploadOptions = {},
): Promise<ModelWeights> {
  const config = checkpoint.config;
  const dtype: DType = options.dtype ?? "f32";
  if (dtype === "f16" && !gpu.features.shaderF16) {
    throw new Error("dtype f16 needs the shader-f16 feature, which this adapter lacks; load with dtype f32");
  }
  const total = checkpoint.specs.length;
  let index = 0;
  const get = async (name: string): Promise<Float32Array> => {
    const data = await checkpoint.get(name);
    options.onTensor?.(name, index++, total);
    return data;
  };
  const vector = async (name: string): Promise<Tensor> => {
    const data = await get(name);
    return gpu.tensor([data.length], "f32", data);
  };
  const matrix = async (name: string, rows: number, cols: number, type: DType): Promise<ShardedMatrix> =>
    ShardedMatrix.upload(gpu, rows, cols, await get(name), type);

  const { vocabSize, hiddenSize } = config;
  const embed = await matrix("model.embed_tokens.weight", vocabSize, hiddenSize, "f32");
  const layers: LayerWeights[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const inputNorm = await vector(`model.layers.${i}.input_layernorm.weight`);
    const proj = {} as Record<ProjectionName, LinearWeights>;
    for (const p of ATTENTION_PROJECTIONS) proj[p] = await linear(config, i, p, matrix, vector, dtype);
    const qNorm = config.qkNorm ? await vector(`model.layers.${i}.self_attn.q_norm.weight`) : null;
    const kNorm = config.qkNorm ? await vector(`model.layers.${i}.self_attn.k_norm.weight`) : null;
    const postNorm = await vector(`model.layers.${i}.post_attention_layernorm.weight`);
    for (const p of MLP_PROJECTIONS) proj[p] = await linear(config, i, p, matrix, vector, dtype);
    layers.push({ inputNorm, postNorm, qNorm, kNorm, proj });
  }
  const norm = await vector("model.norm.weight");
  const lmHead = config.tieWordEmbeddings ? embed : await matrix("lm_head.weight", vocabSize, hiddenSize, dtype);
  return { embed, layers, norm, lmHead };
}

async function linear(
  config: ModelConfig,
  layer: number,
  projection: ProjectionName,
  matrix: (name: string, rows: number, cols: number, type: DType) => Promise<ShardedMatrix>,
  vector: (name: string) => Promise<Tensor>,
  dtype: DType,
): Promise<LinearWeights> {
  const path = projectionPath(layer, projection);
  const [outFeatures, inFeatures] = projectionShape(config, projection);
  const weight = await matrix(`${path}.weight`, outFeatures, inFeatures, dtype);
  const bias = projectionHasBias(config, projection) ? await vector(`${path}.bias`) : null;
  return { path, layer, projection, weight, bias, outFeatures, inFeatures };
}

/** Every linear layer, in checkpoint order. */
export function allLinears(weights: ModelWeights): LinearWeights[] {
  return weights.layers.flatMap((l) => PROJECTIONS.map((p) => l.proj[p]));
}

/** Frees every GPU buffer the weights hold. */
export function disposeWeights(weights: ModelWeights): void {
  weights.embed.dispose();
  if (weights.lmHead !== weights.embed) weights.lmHead.dispose();
  weights.norm.dispose();
  for (const layer of weights.layers) {
    layer.inputNorm.dispose();
    layer.postNorm.dispose();
    layer.qNorm?.dispose();
    layer.kNorm?.dispose();
    for (const p of PROJECTIONS) {
      layer.proj[p].weight.dispose();
      layer.proj[p].bias?.dispose();
    }
  }
}
