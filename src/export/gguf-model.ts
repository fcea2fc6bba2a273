// Hugging Face Qwen2/Qwen3/Llama/Mistral checkpoint → GGUF, following llama.cpp's
// convert_hf_to_gguf.py: the architecture's hyperparameter keys, llama.cpp tensor names, Llama's
// (and Mistral's) q/k row permutation (its rotary embedding pairs adjacent dims, HF's rotates
// halves; Qwen2/Qwen3 use NEOX RoPE and are not permuted), Llama 3 rope_freqs, and the byte-level BPE tokenizer ("gpt2" model, "qwen2" or
// "llama-bpe" pre-tokenizer) with token types, merges, special ids and the chat template. Matrices
// are written F32, F16 or Q8_0, with the converter's rules for which tensors stay F32/F16.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ModelConfig } from "../model/config.ts";
import type { Checkpoint } from "../model/loader.ts";
import type { PeftAdapter } from "../model/peft.ts";
import { type GgmlTypeName, type GgufTensorSpec, type GgufValue, Q8_0_BLOCK, writeGguf } from "./gguf.ts";
import { mergedTensors } from "./merge.ts";

/** llama.cpp token types (llama_token_type / gguf-py TokenType). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** gguf-py LlamaFileType: what `general.file_type` says about the bulk of the weights. */
const FILE_TYPE = { f32: 0, f16: 1, q8_0: 7 } as const;

/** Storage of the matrices: f32, f16, or llama.cpp's Q8_0 (int8 per 32 values with an f16 scale). */
export type GgufDtype = keyof typeof FILE_TYPE;
export const GGUF_DTYPES = Object.keys(FILE_TYPE) as GgufDtype[];

const LAYER_RENAMES: [RegExp, string][] = [
  [/^model\.layers\.(\d+)\.input_layernorm\.weight$/, "blk.$1.attn_norm.weight"],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, "blk.$1.ffn_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)$/, "blk.$1.attn_q.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)$/, "blk.$1.attn_k.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)$/, "blk.$1.attn_v.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)$/, "blk.$1.attn_output.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.q_norm\.weight$/, "blk.$1.attn_q_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.k_norm\.weight$/, "blk.$1.attn_k_norm.weight"],
  [/^model\.layers\.(\d+)\.mlp\.gate_proj\.(weight|bias)$/, "blk.$1.ffn_gate.$2"],
  [/^model\.layers\.(\d+)\.mlp\.up_proj\.(weight|bias)$/, "blk.$1.ffn_up.$2"],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.(weight|bias)$/, "blk.$1.ffn_down.$2"],
];

/** llama.cpp's name for a HF tensor name; throws for a tensor llama.cpp has no slot for. */
export function ggufTensorName(hfName: string): string {
  if (hfName === "model.embed_tokens.weight") return "token_embd.weight";
  if (hfName === "model.norm.weight") return "output_norm.weight";
  if (hfName === "lm_head.weight") return "output.weight";
  for (const [pattern, replacement] of LAYER_RENAMES) {
    if (pattern.test(hfName)) return hfName.replace(pattern, replacement);
  }
  throw new Error(`no llama.cpp tensor name for "${hfName}"`);
}

/**
 * convert_hf_to_gguf.py's LlamaModel.permute: within each of `heads` row blocks, rows
 * [first half | second half] become interleaved pairs, so llama.cpp's adjacent-pair RoPE rotates
 * the same dims HF's rotate-half did. Works on a weight [heads·headDim, cols] or a bias (cols = 1).
 */
export function permuteForLlamaRope(data: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  if (rows % (2 * heads) !== 0 || data.length !== rows * cols) {
    throw new Error(`cannot permute [${rows}, ${cols}] (${data.length} values) into ${heads} heads of even size`);
  }
  const headDim = rows / heads;
  const half = headDim / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let s = 0; s < 2; s++) {
      for (let j = 0; j < half; j++) {
        const src = (h * headDim + s * half + j) * cols;
        const dst = (h * headDim + j * 2 + s) * cols;
        out.set(data.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

/** Llama 3 rope_freqs.weight: per-pair divisors of the base frequencies, as the converter computes. */
export function llama3RopeFactors(config: ModelConfig): Float32Array {
  const s = config.ropeScaling;
  if (s?.type !== "llama3") throw new Error("llama3RopeFactors needs a config with llama3 rope_scaling");
  const half = config.headDim / 2;
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  const factors = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const freq = 1 / config.ropeTheta ** ((2 * i) / config.headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highFreqWavelen) factors[i] = 1;
    else if (wavelen > lowFreqWavelen) factors[i] = s.factor;
    else {
      const smooth =
        (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      factors[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return factors;
}

const u32 = (value: number): GgufValue => ({ type: "u32", value });
const f32 = (value: number): GgufValue => ({ type: "f32", value });
const str = (value: string): GgufValue => ({ type: "string", value });

/**
 * The architecture name llama.cpp uses, which also prefixes its hyperparameter keys. Mistral is
 * "llama" there (convert_hf_to_gguf.py registers MistralForCausalLM under LlamaModel).
 */
export function ggufArchitecture(config: ModelConfig): "qwen2" | "qwen3" | "llama" {
  switch (config.architecture) {
    case "Qwen2ForCausalLM":
      return "qwen2";
    case "Qwen3ForCausalLM":
      return "qwen3";
    case "LlamaForCausalLM":
    case "MistralForCausalLM":
      return "llama";
    default:
      throw new Error(`GGUF export does not support ${config.architecture}`);
  }
}

/** Hyperparameter metadata (general.* and <arch>.*) in the converter's order. */
export function modelMetadata(config: ModelConfig, name: string, dtype: GgufDtype): Map<string, GgufValue> {
  const arch = ggufArchitecture(config);
  if (config.ropeScaling?.type === "linear") throw new Error("GGUF export does not support linear rope_scaling");
  const kv = new Map<string, GgufValue>();
  kv.set("general.architecture", str(arch));
  kv.set("general.type", str("model"));
  kv.set("general.name", str(name));
  kv.set("general.alignment", u32(32));
  kv.set(`${arch}.block_count`, u32(config.numLayers));
  kv.set(`${arch}.context_length`, u32(config.maxPositionEmbeddings));
  kv.set(`${arch}.embedding_length`, u32(config.hiddenSize));
  kv.set(`${arch}.feed_forward_length`, u32(config.intermediateSize));
  kv.set(`${arch}.attention.head_count`, u32(config.numHeads));
  kv.set(`${arch}.attention.head_count_kv`, u32(config.numKvHeads));
  // Explicit so head_dim ≠ hidden/heads (e.g. Qwen3-style configs) loads with the right sizes.
  kv.set(`${arch}.attention.key_length`, u32(config.headDim));
  kv.set(`${arch}.attention.value_length`, u32(config.headDim));
  kv.set(`${arch}.rope.dimension_count`, u32(config.headDim));
  kv.set(`${arch}.rope.freq_base`, f32(config.ropeTheta));
  kv.set(`${arch}.attention.layer_norm_rms_epsilon`, f32(config.rmsNormEps));
  kv.set(`${arch}.vocab_size`, u32(config.vocabSize));
  kv.set("general.file_type", u32(FILE_TYPE[dtype]));
  return kv;
}

type Json = Record<string, unknown>;

/** A token that convert_hf_to_gguf.py's does_token_look_special would mark CONTROL. */
function looksSpecial(token: string): boolean {
  const named = ["<pad>", "<mask>", "<cls>", "<sep>", "<bos>", "<eos>", "<unk>", "<s>", "</s>"];
  return (
    named.includes(token) ||
    (token.startsWith("<|") && token.endsWith("|>")) ||
    (token.startsWith("<｜") && token.endsWith("｜>")) ||
    token.startsWith("<start_of_") ||
    token.startsWith("<end_of_")
  );
}

function specialTokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") return (v as Json).content as string;
  return null;
}

async function readJson(path: string): Promise<Json | null> {
  if (!existsSync(path)) return null;
  return JSON.parse(await readFile(path, "utf8")) as Json;
}

/** Every `Regex` string of a tokenizer.json's pre_tokenizer (Sequence and Split, nested). */
function splitPatterns(node: unknown): string[] {
  if (!node || typeof node !== "object") return [];
  const n = node as Json;
  const own = n.pattern && typeof (n.pattern as Json).Regex === "string" ? [(n.pattern as Json).Regex as string] : [];
  const children = Array.isArray(n.pretokenizers) ? n.pretokenizers.flatMap(splitPatterns) : [];
  return [...own, ...children];
}

/**
 * llama.cpp's pre-tokenizer for a tokenizer.json: "llama-bpe" (Llama 3's split, digits in runs of
 * up to three, whole words looked up before merging: `ignore_merges`) when the tokenizer does
 * that, as our whole-number tokenizers do; "qwen2" (single digits) otherwise.
 */
export function ggufPreTokenizer(tokenizer: Json): "llama-bpe" | "qwen2" {
  const model = (tokenizer.model ?? {}) as Json;
  const digitRuns = splitPatterns(tokenizer.pre_tokenizer).some((p) => p.includes("\\p{N}{1,3}"));
  if (digitRuns !== (model.ignore_merges === true)) {
    throw new Error(
      "tokenizer.json splits digits in runs of three without ignore_merges (or the reverse): llama.cpp has no pre-tokenizer for that",
    );
  }
  return digitRuns ? "llama-bpe" : "qwen2";
}

/**
 * Tokenizer metadata for a byte-level BPE tokenizer.json (GPT-2/Qwen2 style): tokens in id order
 * (ids the tokenizer lacks up to the model's vocab_size become "[PAD<id>]", UNUSED), added tokens
 * CONTROL when special (or special-looking) else USER_DEFINED, merges as "a b", special ids from
 * tokenizer_config.json with config.json ids as fallback, and the chat template.
 */
export async function tokenizerMetadata(dir: string, config: ModelConfig): Promise<Map<string, GgufValue>> {
  const tokenizer = await readJson(join(dir, "tokenizer.json"));
  if (!tokenizer) throw new Error(`no tokenizer.json in ${dir}: GGUF export needs a HF fast tokenizer`);
  const model = tokenizer.model as Json | undefined;
  if (model?.type !== "BPE" || typeof model.vocab !== "object" || !Array.isArray(model.merges)) {
    throw new Error(`${dir}/tokenizer.json: expected a byte-level BPE model (model.type "BPE" with vocab and merges)`);
  }
  const tokenizerConfig = (await readJson(join(dir, "tokenizer_config.json"))) ?? {};
  const rawConfig = (await readJson(join(dir, "config.json"))) ?? {};

  const tokens: string[] = new Array(config.vocabSize);
  const types = new Int32Array(config.vocabSize);
  for (const [text, id] of Object.entries(model.vocab as Record<string, number>)) {
    if (id >= config.vocabSize) throw new Error(`tokenizer id ${id} ("${text}") is >= vocab_size ${config.vocabSize}`);
    tokens[id] = text;
    types[id] = TokenType.NORMAL;
  }
  const decoder = (tokenizerConfig.added_tokens_decoder ?? {}) as Record<string, { special?: boolean }>;
  const byContent = new Map<string, number>();
  for (const t of (tokenizer.added_tokens ?? []) as { id: number; content: string; special?: boolean }[]) {
    if (t.id >= config.vocabSize) {
      throw new Error(`added token id ${t.id} ("${t.content}") is >= vocab_size ${config.vocabSize}`);
    }
    tokens[t.id] = t.content;
    const special = decoder[String(t.id)]?.special ?? t.special ?? false;
    types[t.id] = special || looksSpecial(t.content) ? TokenType.CONTROL : TokenType.USER_DEFINED;
    byContent.set(t.content, t.id);
  }
  for (let id = 0; id < config.vocabSize; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TokenType.UNUSED;
    }
  }
  const merges = (model.merges as unknown[]).map((m) => (Array.isArray(m) ? m.join(" ") : String(m)));

  const kv = new Map<string, GgufValue>();
  kv.set("tokenizer.ggml.model", str("gpt2"));
  kv.set("tokenizer.ggml.pre", str(ggufPreTokenizer(tokenizer)));
  kv.set("tokenizer.ggml.tokens", { type: "array", of: "string", value: tokens });
  kv.set("tokenizer.ggml.token_type", { type: "array", of: "i32", value: types });
  kv.set("tokenizer.ggml.merges", { type: "array", of: "string", value: merges });
  const specialId = (kind: "bos" | "eos" | "unk" | "pad"): number | null => {
    const content = specialTokenContent(tokenizerConfig[`${kind}_token`]);
    if (content !== null) {
      const id = byContent.get(content) ?? (model.vocab as Record<string, number>)[content];
      if (id !== undefined) return id;
    }
    const fromConfig = rawConfig[`${kind}_token_id`];
    const first = Array.isArray(fromConfig) ? fromConfig[0] : fromConfig;
    return typeof first === "number" ? first : null;
  };
  for (const [kind, key] of [
    ["bos", "bos_token_id"],
    ["eos", "eos_token_id"],
    ["unk", "unknown_token_id"],
    ["pad", "padding_token_id"],
  ] as const) {
    const id = specialId(kind);
    if (id !== null) kv.set(`tokenizer.ggml.${key}`, u32(id));
  }
  if (typeof tokenizerConfig.add_bos_token === "boolean") {
    kv.set("tokenizer.ggml.add_bos_token", { type: "bool", value: tokenizerConfig.add_bos_token });
  }
  if (typeof tokenizerConfig.add_eos_token === "boolean") {
    kv.set("tokenizer.ggml.add_eos_token", { type: "bool", value: tokenizerConfig.add_eos_token });
  }
  const template = await chatTemplate(dir, tokenizerConfig);
  if (template !== null) kv.set("tokenizer.chat_template", str(template));
  return kv;
}

async function chatTemplate(dir: string, tokenizerConfig: Json): Promise<string | null> {
  const t = tokenizerConfig.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t as { name?: string; template?: string }[];
    return (named.find((x) => x.name === "default") ?? named[0])?.template ?? null;
  }
  const jinja = join(dir, "chat_template.jinja");
  return existsSync(jinja) ? readFile(jinja, "utf8") : null;
}

/**
 * Which storage type a tensor (by its llama.cpp name) gets, as convert_hf_to_gguf.py's
 * prepare_tensors decides: 1-D tensors (norms, biases, rope_freqs), any `*_norm.weight` and
 * anything not named `.weight` stay F32; the other matrices take the file's dtype, except that a
 * Q8_0 matrix whose rows (last torch dim, GGML's ne[0]) are not a multiple of 32 falls back to
 * F16, as the converter does when gguf-py's quantize raises QuantError.
 */
export function tensorType(name: string, shape: number[], dtype: GgufDtype): GgmlTypeName {
  if (dtype === "f32" || shape.length <= 1 || name.endsWith("_norm.weight") || !name.endsWith(".weight")) return "F32";
  if (dtype === "f16") return "F16";
  return shape[shape.length - 1] % Q8_0_BLOCK === 0 ? "Q8_0" : "F16";
}

export interface GgufExportOptions {
  /** Storage type of the matrices (default f32); norms and biases stay f32 (see tensorType). */
  dtype?: GgufDtype;
  /** general.name (default: the checkpoint directory's name). */
  name?: string;
}

/**
 * Writes `checkpoint` (with `adapter` merged in, when given) as one GGUF file llama.cpp loads.
 * Tensors are streamed from disk one at a time. Returns the tensor names written and the size.
 */
export async function writeGgufModel(
  checkpoint: Checkpoint,
  adapter: PeftAdapter | null,
  outPath: string,
  options: GgufExportOptions = {},
): Promise<{ tensors: string[]; bytes: number }> {
  const config = checkpoint.config;
  const dtype = options.dtype ?? "f32";
  if (!GGUF_DTYPES.includes(dtype)) {
    throw new Error(`GGUF dtype must be one of ${GGUF_DTYPES.map((d) => `"${d}"`).join(", ")}, got "${dtype}"`);
  }
  const name = options.name ?? (checkpoint.dir.split(/[\\/]/).filter(Boolean).pop() || "model");
  const metadata = modelMetadata(config, name, dtype);
  for (const [k, v] of await tokenizerMetadata(checkpoint.dir, config)) metadata.set(k, v);

  const isLlama = ggufArchitecture(config) === "llama";
  const source = mergedTensors(checkpoint, adapter)[Symbol.asyncIterator]();
  const specs: GgufTensorSpec[] = [];
  if (isLlama && config.ropeScaling) {
    const factors = llama3RopeFactors(config);
    specs.push({ name: "rope_freqs.weight", shape: [factors.length], type: "F32", data: () => factors });
  }
  for (const spec of checkpoint.specs) {
    const permuteHeads = !isLlama
      ? 0
      : /\.q_proj\.(weight|bias)$/.test(spec.name)
        ? config.numHeads
        : /\.k_proj\.(weight|bias)$/.test(spec.name)
          ? config.numKvHeads
          : 0;
    const ggufName = ggufTensorName(spec.name);
    specs.push({
      name: ggufName,
      shape: spec.shape,
      type: tensorType(ggufName, spec.shape, dtype),
      data: async () => {
        const next = await source.next();
        if (next.done || next.value[0] !== spec.name) {
          throw new Error(
            `tensor stream out of order: expected ${spec.name}, got ${next.done ? "end" : next.value[0]}`,
          );
        }
        const data = next.value[2];
        if (!permuteHeads) return data;
        const cols = spec.shape.length === 2 ? spec.shape[1] : 1;
        return permuteForLlamaRope(data, spec.shape[0], cols, permuteHeads);
      },
    });
  }
  const { bytes } = await writeGguf(outPath, metadata, specs);
  // Drain the merge stream so its check that every adapter factor was used runs.
  if (!(await source.next()).done) throw new Error("tensor stream has tensors the GGUF layout did not consume");
  return { tensors: specs.map((s) => s.name), bytes };
}
