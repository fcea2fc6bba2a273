// The model's parameters on the GPU: streamed from a checkpoint tensor by tensor (one tensor of
// CPU memory at a time), laid out the way the kernels want them (HF's [out, in] linear weights,
// used as x·Wᵀ), with the embedding and LM head as row-sharded matrices because a real vocabulary
// (151936 × 896 f32 = 544 MB) exceeds one storage binding.

import type { Gpu } from "../gpu/device.ts";
import {
  disposeQuantized,
  type QuantizedMatrix,
  type ShardedInt8,
  uploadInt8Sharded,
  uploadQuantized,
} from "../gpu/kernels/quant.ts";
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
  /** Dense, or int8/int4 when loaded with `quantize` (frozen then). */
  weight: ShardedMatrix | QuantizedMatrix;
  bias: Tensor | null;
  outFeatures: number;
  inFeatures: number;
}

export interface LayerWeights {
  inputNorm: Tensor;
  postNorm: Tensor;
  /** Per-head RMSNorm weights [headDim] of q and k (Qwen3, Gemma 3); null without q/k norm. */
  qNorm: Tensor | null;
  kNorm: Tensor | null;
  /** Gemma 3's pre/post_feedforward_layernorm (postNorm is then the attention output's norm). */
  preFfnNorm: Tensor | null;
  postFfnNorm: Tensor | null;
  proj: Record<ProjectionName, LinearWeights>;
}

/** The embedding or LM head: dense (f32/f16, row-sharded), or int8 under `quantizeHead` (frozen). */
export type VocabMatrix = ShardedMatrix | ShardedInt8;

export interface ModelWeights {
  embed: VocabMatrix;
  layers: LayerWeights[];
  norm: Tensor;
  /** The same object as `embed` when embeddings are tied. */
  lmHead: VocabMatrix;
  /** Linear weights left in f32 under an f16 load because they hold values beyond f16's range. */
  keptF32: string[];
}

/** Largest finite f16; anything larger in magnitude would become ±Inf. */
export const F16_MAX = 65504;

export interface UploadOptions {
  /**
   * Storage type of the frozen matrices: linear weights, the embedding and an untied LM head
   * (norms and biases stay f32; matmuls accumulate in f32 either way). A tied head is the
   * embedding, so serving's logits and training's logprobs read the same values. "auto" (the
   * default): f16 when the adapter has shader-f16 and the checkpoint stores the tensor in 16 bits
   * (BF16/F16), else f32.
   * "f16" forces it (needs shader-f16). A tensor with values beyond ±65504 stays f32 (warned).
   */
  dtype?: "f32" | "f16" | "auto";
  /**
   * "int8": the linear projections' weights are stored int8 with one f32 scale per output
   * channel (a quarter of f32's memory); "int4": int4 with one scale per 32 columns of a row (an
   * eighth, plus scales). Decode reads them packed (gemv_q.wgsl); GEMMs widen one matrix
   * to f32 right before use; for a frozen base (LoRA training, serving). Embeddings, norms and
   * the LM head keep `dtype` unless `quantizeHead`.
   */
  quantize?: "int8" | "int4";
  /**
   * Store the embedding and the LM head (one matrix when tied) int8 with one scale per vocabulary
   * row, frozen, whatever `quantize` is (as llama.cpp keeps its output matrix at 8 bits under
   * 4-bit linears): a tied Qwen head is a quarter of a 0.5B model's weights and a ninth of a
   * 4B's. Serving's logits read it packed (gemv_q.wgsl); training's logprobs widen it one
   * vocabulary block at a time, so both see the same values. Needs the subgroups feature and a
   * hidden size that is a multiple of 4; otherwise the head keeps `dtype`, with a warning.
   */
  quantizeHead?: boolean;
  /** Called after each tensor (for progress bars). */
  onTensor?: (name: string, index: number, total: number) => void;
  /** Where load warnings go (default: console.warn). */
  onWarning?: (message: string) => void;
}

/** Largest |value| (NaN-propagating values count as out of range). */
function maxAbs(data: Float32Array): number {
  let m = 0;
  for (let i = 0; i < data.length; i++) {
    const a = Math.abs(data[i]);
    if (!(a <= m)) m = a;
  }
  return m;
}

/** Uploads every tensor of `checkpoint` to the GPU. */
export async function uploadWeights(
  gpu: Gpu,
  checkpoint: Checkpoint,
  options: UploadOptions = {},
): Promise<ModelWeights> {
  const config = checkpoint.config;
  const requested = options.dtype ?? "auto";
  if (requested === "f16" && !gpu.features.shaderF16) {
    throw new Error("dtype f16 needs the shader-f16 feature, which this adapter lacks; load with dtype f32");
  }
  const warn = options.onWarning ?? ((m: string) => console.warn(m));
  const keptF32: string[] = [];
  /** The storage type of one frozen matrix under the requested policy. */
  const frozenType = (name: string): DType => {
    if (requested === "f32") return "f32";
    if (requested === "f16") return "f16";
    return gpu.features.shaderF16 && checkpoint.info(name).dtype !== "F32" ? "f16" : "f32";
  };
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
  const matrix = async (name: string, rows: number, cols: number, type: DType): Promise<ShardedMatrix> => {
    const data = await get(name);
    // bf16 reaches ±3.4e38 but f16 only ±65504: such a tensor keeps f32 rather than hold ±Inf.
    if (type === "f16" && !(maxAbs(data) <= F16_MAX)) {
      keptF32.push(name);
      warn(`${name} holds values beyond f16's ±${F16_MAX} (max |w| = ${maxAbs(data)}); keeping it in f32`);
      type = "f32";
    }
    return ShardedMatrix.upload(gpu, rows, cols, data, type);
  };

  const { vocabSize, hiddenSize } = config;
  const int8Head = options.quantizeHead === true && headQuantizable(gpu, hiddenSize, warn);
  const vocabMatrix = async (name: string): Promise<VocabMatrix> =>
    int8Head
      ? uploadInt8Sharded(gpu, await get(name), vocabSize, hiddenSize)
      : matrix(name, vocabSize, hiddenSize, frozenType(name));
  const embed = await vocabMatrix("model.embed_tokens.weight");
  const layers: LayerWeights[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const inputNorm = await vector(`model.layers.${i}.input_layernorm.weight`);
    const proj = {} as Record<ProjectionName, LinearWeights>;
    const weight = options.quantize ? quantized(gpu, options.quantize, get) : matrix;
    for (const p of ATTENTION_PROJECTIONS) proj[p] = await linear(config, i, p, weight, vector, frozenType);
    const qNorm = config.qkNorm ? await vector(`model.layers.${i}.self_attn.q_norm.weight`) : null;
    const kNorm = config.qkNorm ? await vector(`model.layers.${i}.self_attn.k_norm.weight`) : null;
    const postNorm = await vector(`model.layers.${i}.post_attention_layernorm.weight`);
    const preFfnNorm = config.gemma3 ? await vector(`model.layers.${i}.pre_feedforward_layernorm.weight`) : null;
    const postFfnNorm = config.gemma3 ? await vector(`model.layers.${i}.post_feedforward_layernorm.weight`) : null;
    for (const p of MLP_PROJECTIONS) proj[p] = await linear(config, i, p, weight, vector, frozenType);
    layers.push({ inputNorm, postNorm, qNorm, kNorm, preFfnNorm, postFfnNorm, proj });
  }
  const norm = await vector("model.norm.weight");
  const lmHead = config.tieWordEmbeddings ? embed : await vocabMatrix("lm_head.weight");
  return { embed, layers, norm, lmHead, keptF32 };
}

/** Whether an int8 [vocab, dim] head can be used here; says why not through `warn`. */
function headQuantizable(gpu: Gpu, dim: number, warn: (m: string) => void): boolean {
  const why = !gpu.features.subgroups
    ? "this adapter lacks the subgroups feature its packed GEMV needs"
    : dim % 4 !== 0
      ? `the hidden size ${dim} is not a multiple of 4`
      : 64 * dim > gpu.maxBindingSize
        ? `64 rows of ${dim} int8 bytes exceed one storage binding (${gpu.maxBindingSize})`
        : null;
  if (why) warn(`quantizeHead: ${why}; keeping the embedding and LM head dense`);
  return why === null;
}

/** A `matrix` loader that quantises instead. */
function quantized(gpu: Gpu, kind: QuantizedMatrix["kind"], get: (name: string) => Promise<Float32Array>) {
  return async (name: string, rows: number, cols: number): Promise<QuantizedMatrix> =>
    uploadQuantized(gpu, kind, await get(name), rows, cols);
}

/** The dense embedding or LM head; an int8 one is frozen, so full training refuses it. */
export function denseVocabMatrix(m: VocabMatrix, name: string, what: string): ShardedMatrix {
  if ("kind" in m) throw new Error(`${what}: ${name} is int8-quantised (frozen); load without quantizeHead`);
  return m;
}

/** Frees the embedding or LM head. */
function disposeVocabMatrix(m: VocabMatrix): void {
  if ("kind" in m) for (const s of m.shards) disposeQuantized(s.m);
  else m.dispose();
}

/** The dense matrix of a linear weight; int8 weights are frozen, so full training refuses them. */
export function denseWeight(lin: LinearWeights, what: string): ShardedMatrix {
  if ("kind" in lin.weight) {
    throw new Error(`${what}: ${lin.path} is ${lin.weight.kind}-quantised (frozen); load without quantize`);
  }
  return lin.weight;
}

async function linear(
  config: ModelConfig,
  layer: number,
  projection: ProjectionName,
  matrix: (name: string, rows: number, cols: number, type: DType) => Promise<ShardedMatrix | QuantizedMatrix>,
  vector: (name: string) => Promise<Tensor>,
  frozenType: (name: string) => DType,
): Promise<LinearWeights> {
  const path = projectionPath(layer, projection);
  const [outFeatures, inFeatures] = projectionShape(config, projection);
  const weight = await matrix(`${path}.weight`, outFeatures, inFeatures, frozenType(`${path}.weight`));
  const bias = projectionHasBias(config, projection) ? await vector(`${path}.bias`) : null;
  return { path, layer, projection, weight, bias, outFeatures, inFeatures };
}

/** Every linear layer, in checkpoint order. */
export function allLinears(weights: ModelWeights): LinearWeights[] {
  return weights.layers.flatMap((l) => PROJECTIONS.map((p) => l.proj[p]));
}

/** Frees every GPU buffer the weights hold. */
export function disposeWeights(weights: ModelWeights): void {
  disposeVocabMatrix(weights.embed);
  if (weights.lmHead !== weights.embed) disposeVocabMatrix(weights.lmHead);
  weights.norm.dispose();
  for (const layer of weights.layers) {
    layer.inputNorm.dispose();
    layer.postNorm.dispose();
    layer.qNorm?.dispose();
    layer.kNorm?.dispose();
    layer.preFfnNorm?.dispose();
    layer.postFfnNorm?.dispose();
    for (const p of PROJECTIONS) {
      const w = layer.proj[p].weight;
      if ("kind" in w) disposeQuantized(w);
      else w.dispose();
      layer.proj[p].bias?.dispose();
    }
  }
}
