// Tiny random models in the exact on-disk format of a HF checkpoint (config.json, safetensors,
// tokenizer.json, tokenizer_config.json with Qwen2.5's ChatML tool template, generation_config.json),
// so tests, benchmarks and demos exercise the same loading path as real Qwen2/Qwen3/Llama/Mistral/
// Gemma 3 checkpoints.
// Weights are deterministic in the seed: N(0, 0.02) like HF init, norms 1 (Gemma's (1 + w) norms:
// 0), small random biases.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { mulberry32 } from "../random.ts";
import { CHATML_ADDED_TOKENS, trainByteLevelBpe } from "./bpe.ts";
import { QWEN2_5_CHAT_TEMPLATE, QWEN3_CHAT_TEMPLATE } from "./chat-template.ts";
import { type Architecture, expectedTensors, type ModelConfig, parseModelConfig } from "./config.ts";
import type { SafetensorsDType } from "./safetensors.ts";
import { type TensorToWrite, writeSafetensors, writeShardedSafetensors } from "./safetensors-write.ts";
import { TINY_CORPUS } from "./tiny-corpus.ts";

export interface TinyModelSpec {
  architecture?: Architecture;
  hidden?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  /** Defaults to hidden / heads. */
  headDim?: number;
  intermediate?: number;
  ropeTheta?: number;
  rmsNormEps?: number;
  /**
   * Std of an untied lm_head's init (default 0.02). Larger values give a random model peaked
   * output distributions, which RL tests need: with 0.02 every logit is ≈ 0 and no adapter can
   * move probability mass much.
   */
  lmHeadStd?: number;
  /** Tie lm_head to the embedding (default true, like small Qwen2.5 models). */
  tie?: boolean;
  seed?: number;
  /** Storage dtype of the weights (default F32). */
  dtype?: SafetensorsDType;
  /** Write `shards` files plus model.safetensors.index.json when > 1. */
  shards?: number;
  /** A ready tokenizer.json to reuse (skips BPE training). */
  tokenizer?: Record<string, unknown>;
  /** Corpus to train the byte-level BPE on (default: a small built-in one). */
  corpus?: string[];
  /** Target tokenizer vocabulary, bytes and added tokens included (default 512). */
  tokenizerVocabSize?: number;
  /** Whole-number tokens 0 … n−1 in the trained tokenizer (see BpeTrainOptions.wholeNumbers). */
  tokenizerWholeNumbers?: number;
  /** The chat template for tokenizer_config.json (default: Qwen3's for Qwen3, else Qwen2.5's). */
  chatTemplate?: string;
  /** Model vocab_size; defaults to the tokenizer's, may be larger (padded) but not smaller. */
  vocabSize?: number;
  maxPositionEmbeddings?: number;
  /** Llama, Qwen3, Mistral: bias on q/k/v/o (`attention_bias`). */
  attentionBias?: boolean;
  /** Llama only: bias on gate/up/down (`mlp_bias`). */
  mlpBias?: boolean;
  /**
   * Llama 3 `rope_scaling` (the HF object, e.g. { rope_type: "llama3", factor: 8, ... }), or for
   * Gemma 3 its global layers' (e.g. { rope_type: "linear", factor: 8 }).
   */
  ropeScaling?: Record<string, unknown>;
  /** Mistral / Gemma 3 `sliding_window` (default null: full attention; Gemma 3: 512). */
  slidingWindow?: number | null;
  /** Gemma 3: every n-th layer global (`sliding_window_pattern`, default 6). */
  slidingWindowPattern?: number;
  /** Gemma 3: RoPE base of the local layers (`rope_local_base_freq`, default 10000). */
  ropeLocalTheta?: number;
  /** Gemma 3: attention scale query_pre_attn_scalar^-½ (default 256). */
  queryPreAttnScalar?: number;
  /** Norm weights 1 + N(0, 0.1) instead of exactly 1, so a kernel that ignores them is caught. */
  perturbNorms?: boolean;
}

export interface TinyModel {
  dir: string;
  config: ModelConfig;
  /** The tokenizer.json that was written (reuse it via spec.tokenizer to skip training). */
  tokenizer: Record<string, unknown>;
  files: string[];
}

/** FNV-1a of a tensor name, so each tensor's values depend only on (seed, name). */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function gaussian(n: number, seed: number, mean: number, std: number): Float32Array {
  const next = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(next(), 1e-12);
    out[i] = mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  }
  return out;
}

const TORCH_DTYPE: Record<SafetensorsDType, string> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

/** Builds the HF config.json object for a tiny spec and vocabulary. */
function buildConfigJson(spec: TinyModelSpec, vocabSize: number, ids: Record<string, number>): Record<string, unknown> {
  const architecture = spec.architecture ?? "Qwen2ForCausalLM";
  const hidden = spec.hidden ?? 64;
  const heads = spec.heads ?? 4;
  const common = {
    architectures: [architecture],
    attention_dropout: 0.0,
    bos_token_id: ids["<|endoftext|>"],
    eos_token_id: ids["<|im_end|>"],
    hidden_act: "silu",
    hidden_size: hidden,
    initializer_range: 0.02,
    intermediate_size: spec.intermediate ?? hidden * 3,
    max_position_embeddings: spec.maxPositionEmbeddings ?? 2048,
    num_attention_heads: heads,
    num_hidden_layers: spec.layers ?? 2,
    num_key_value_heads: spec.kvHeads ?? (heads % 2 === 0 ? heads / 2 : heads),
    rope_scaling: spec.ropeScaling ?? null,
    rope_theta: spec.ropeTheta ?? 10000,
    tie_word_embeddings: spec.tie ?? true,
    torch_dtype: TORCH_DTYPE[spec.dtype ?? "F32"],
    transformers_version: "4.46.0",
    use_cache: true,
    vocab_size: vocabSize,
  };
  const isGemma3 = architecture === "Gemma3ForCausalLM";
  if (spec.ropeScaling && architecture !== "LlamaForCausalLM" && !isGemma3) {
    throw new Error("ropeScaling applies to LlamaForCausalLM and Gemma3ForCausalLM only");
  }
  if (spec.slidingWindow != null && architecture !== "MistralForCausalLM" && !isGemma3) {
    throw new Error("slidingWindow applies to MistralForCausalLM and Gemma3ForCausalLM only");
  }
  if (
    !isGemma3 &&
    (spec.slidingWindowPattern !== undefined ||
      spec.ropeLocalTheta !== undefined ||
      spec.queryPreAttnScalar !== undefined)
  ) {
    throw new Error("slidingWindowPattern, ropeLocalTheta and queryPreAttnScalar apply to Gemma3ForCausalLM only");
  }
  if (spec.mlpBias !== undefined && architecture !== "LlamaForCausalLM") {
    throw new Error("mlpBias applies to LlamaForCausalLM only");
  }
  if (architecture === "Qwen3ForCausalLM") {
    return {
      ...common,
      model_type: "qwen3",
      attention_bias: spec.attentionBias ?? false,
      head_dim: spec.headDim ?? hidden / heads,
      max_window_layers: spec.layers ?? 2,
      rms_norm_eps: spec.rmsNormEps ?? 1e-6,
      sliding_window: null,
      use_sliding_window: false,
    };
  }
  if (architecture === "MistralForCausalLM") {
    return {
      ...common,
      model_type: "mistral",
      attention_bias: spec.attentionBias ?? false,
      head_dim: spec.headDim ?? hidden / heads,
      rms_norm_eps: spec.rmsNormEps ?? 1e-5,
      sliding_window: spec.slidingWindow ?? null,
    };
  }
  if (isGemma3) {
    // Gemma3TextConfig's fields, as gemma-3-1b-it's config.json writes them.
    const { hidden_act: _, ...rest } = common;
    return {
      ...rest,
      model_type: "gemma3_text",
      attention_bias: spec.attentionBias ?? false,
      attn_logit_softcapping: null,
      final_logit_softcapping: null,
      head_dim: spec.headDim ?? hidden / heads,
      hidden_activation: "gelu_pytorch_tanh",
      query_pre_attn_scalar: spec.queryPreAttnScalar ?? 256,
      rms_norm_eps: spec.rmsNormEps ?? 1e-6,
      rope_local_base_freq: spec.ropeLocalTheta ?? 10000,
      sliding_window: spec.slidingWindow ?? 512,
      sliding_window_pattern: spec.slidingWindowPattern ?? 6,
    };
  }
  if (architecture === "LlamaForCausalLM") {
    return {
      ...common,
      model_type: "llama",
      attention_bias: spec.attentionBias ?? false,
      mlp_bias: spec.mlpBias ?? false,
      head_dim: spec.headDim ?? hidden / heads,
      pretraining_tp: 1,
      rms_norm_eps: spec.rmsNormEps ?? 1e-5,
    };
  }
  if (architecture !== "Qwen2ForCausalLM") throw new Error(`tiny models cannot be ${architecture}`);
  if (spec.attentionBias !== undefined) {
    throw new Error("attentionBias does not apply to Qwen2ForCausalLM (its biases are fixed by the architecture)");
  }
  return {
    ...common,
    model_type: "qwen2",
    ...(spec.headDim !== undefined ? { head_dim: spec.headDim } : {}),
    max_window_layers: spec.layers ?? 2,
    rms_norm_eps: spec.rmsNormEps ?? 1e-6,
    sliding_window: null,
    use_sliding_window: false,
  };
}

/** tokenizer_config.json for a ChatML byte-level tokenizer of ours (tiny and random-init models). */
export function tokenizerConfigJson(
  tokenizer: Record<string, unknown>,
  maxLength: number,
  chatTemplate: string,
): Record<string, unknown> {
  const added = tokenizer.added_tokens as { id: number; content: string; special: boolean }[];
  const decoder: Record<string, unknown> = {};
  for (const t of added) {
    decoder[String(t.id)] = {
      content: t.content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: t.special,
    };
  }
  return {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: decoder,
    additional_special_tokens: added.filter((t) => t.special && t.content !== "<|endoftext|>").map((t) => t.content),
    bos_token: null,
    chat_template: chatTemplate,
    clean_up_tokenization_spaces: false,
    eos_token: "<|im_end|>",
    errors: "replace",
    model_max_length: maxLength,
    pad_token: "<|endoftext|>",
    split_special_tokens: false,
    tokenizer_class: "Qwen2Tokenizer",
    unk_token: null,
  };
}

function addedTokenIds(tokenizer: Record<string, unknown>): Record<string, number> {
  const ids: Record<string, number> = {};
  for (const t of (tokenizer.added_tokens ?? []) as { id: number; content: string }[]) ids[t.content] = t.id;
  for (const needed of ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) {
    if (ids[needed] === undefined) throw new Error(`tiny model tokenizer must define the added token ${needed}`);
  }
  return ids;
}

function tokenizerSize(tokenizer: Record<string, unknown>): number {
  const model = tokenizer.model as { vocab?: Record<string, number> } | undefined;
  if (!model?.vocab) throw new Error("tokenizer.json has no model.vocab");
  let max = -1;
  for (const id of Object.values(model.vocab)) max = Math.max(max, id);
  for (const t of (tokenizer.added_tokens ?? []) as { id: number }[]) max = Math.max(max, t.id);
  return max + 1;
}

/**
 * Writes a random-init model directory in HF format and returns its parsed config. The same spec
 * (seed included) always produces byte-identical files.
 */
export async function writeTinyModel(dir: string, spec: TinyModelSpec = {}): Promise<TinyModel> {
  const tokenizer =
    spec.tokenizer ??
    trainByteLevelBpe(spec.corpus ?? TINY_CORPUS, {
      vocabSize: spec.tokenizerVocabSize ?? 512,
      specialTokens: CHATML_ADDED_TOKENS,
      wholeNumbers: spec.tokenizerWholeNumbers,
    });
  const ids = addedTokenIds(tokenizer);
  const tokVocab = tokenizerSize(tokenizer);
  const vocabSize = spec.vocabSize ?? tokVocab;
  if (vocabSize < tokVocab) {
    throw new Error(`vocabSize ${vocabSize} is smaller than the tokenizer's ${tokVocab} ids`);
  }
  const configJson = buildConfigJson(spec, vocabSize, ids);
  const config = parseModelConfig(configJson);
  const dtype = spec.dtype ?? "F32";
  const seed = spec.seed ?? 0;

  const tensors: Record<string, TensorToWrite> = {};
  for (const { name, shape } of expectedTensors(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const s = Math.imul(seed, 0x9e3779b1) ^ nameHash(name);
    let data: Float32Array;
    // Gemma's norms scale by (1 + w), so its neutral weight is 0 (HF initialises them to zeros).
    const neutral = config.gemma3 ? 0 : 1;
    if (name.endsWith("norm.weight"))
      data = spec.perturbNorms ? gaussian(n, s, neutral, 0.1) : new Float32Array(n).fill(neutral);
    else data = gaussian(n, s, 0, name === "lm_head.weight" ? (spec.lmHeadStd ?? 0.02) : 0.02);
    tensors[name] = { dtype, shape, data };
  }

  await mkdir(dir, { recursive: true });
  const shards = spec.shards ?? 1;
  const files: string[] = [];
  if (shards > 1) {
    files.push(...(await writeShardedSafetensors(dir, tensors, shards)), "model.safetensors.index.json");
  } else {
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    files.push("model.safetensors");
  }
  const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  await writeFile(join(dir, "config.json"), json(configJson));
  await writeFile(join(dir, "tokenizer.json"), json(tokenizer));
  await writeFile(
    join(dir, "tokenizer_config.json"),
    json(
      tokenizerConfigJson(
        tokenizer,
        config.maxPositionEmbeddings,
        spec.chatTemplate ?? (config.architecture === "Qwen3ForCausalLM" ? QWEN3_CHAT_TEMPLATE : QWEN2_5_CHAT_TEMPLATE),
      ),
    ),
  );
  await writeFile(
    join(dir, "generation_config.json"),
    json({
      bos_token_id: ids["<|endoftext|>"],
      eos_token_id: [ids["<|im_end|>"], ids["<|endoftext|>"]],
      pad_token_id: ids["<|endoftext|>"],
      transformers_version: "4.46.0",
    }),
  );
  files.push("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json");
  return { dir, config, tokenizer, files };
}
