// Random-init checkpoints at real model sizes: takes a real HF config.json (Qwen2.5-0.5B,
// Llama-3.2-1B, Qwen3, …), keeps every shape-bearing field, and writes a loadable HF directory
// (config.json, one safetensors file, a small trained byte-level BPE tokenizer padded to the
// config's vocab_size, tokenizer_config.json, generation_config.json). Used by bench/scale.ts so
// benchmarks run the real shapes without downloading weights.
//
// Tensors are generated and written one at a time (peak host memory ≈ the largest tensor, not
// the model), deterministic in (seed, tensor name): N(0, initializer_range) for matrices and
// embeddings as in HF's _init_weights, zero biases, unit norms. With that init the residual
// stream stays O(1) through dozens of layers, so logits are finite at every size.
import { mkdir, open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { f32ToF16 } from "../gpu/tensor.ts";
import { mulberry32 } from "../random.ts";
import { CHATML_ADDED_TOKENS, trainByteLevelBpe } from "./bpe.ts";
import { QWEN2_5_CHAT_TEMPLATE } from "./chat-template.ts";
import { expectedTensors, type ModelConfig, parseModelConfig } from "./config.ts";
import { f32ToBf16 } from "./safetensors-write.ts";
import { tokenizerConfigJson } from "./tiny.ts";
import { TINY_CORPUS } from "./tiny-corpus.ts";

export type RandomInitDType = "F32" | "F16" | "BF16";

export interface RandomModelOptions {
  /** Seed of every tensor's values (default 0). */
  seed?: number;
  /** Storage dtype of the written weights (default F16: half the disk and read time of F32). */
  dtype?: RandomInitDType;
  /** Std of matrices and embeddings; defaults to the config's initializer_range, else 0.02. */
  std?: number;
  /** A ready tokenizer.json to reuse (skips BPE training). */
  tokenizer?: Record<string, unknown>;
  /** Shrinks the model for tests: overrides num_hidden_layers. */
  layers?: number;
  /** Overrides vocab_size (tests); must cover the tokenizer. */
  vocabSize?: number;
}

export interface RandomModel {
  dir: string;
  config: ModelConfig;
  /** The config.json object as written. */
  configJson: Record<string, unknown>;
  /** The tokenizer.json written (pass it back as options.tokenizer to skip training). */
  tokenizer: Record<string, unknown>;
  parameters: number;
  /** Bytes of the safetensors payload. */
  weightBytes: number;
}

const DTYPE_BYTES: Record<RandomInitDType, number> = { F32: 4, F16: 2, BF16: 2 };
const TORCH_DTYPE: Record<RandomInitDType, string> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

/** FNV-1a of a tensor name, so each tensor depends only on (seed, name). */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** N(0, std) values, Box–Muller with both outputs used. */
export function gaussianFill(out: Float32Array, seed: number, std: number): Float32Array {
  const next = mulberry32(seed);
  for (let i = 0; i < out.length; i += 2) {
    const r = std * Math.sqrt(-2 * Math.log(Math.max(next(), 1e-12)));
    const a = 2 * Math.PI * next();
    out[i] = r * Math.cos(a);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

/**
 * The values of one tensor of a random-init model (exported for the test and for references).
 * `normValue` is what a norm weight holds: 1, or 0 for Gemma, whose norms scale by (1 + w).
 */
export function randomTensor(name: string, shape: number[], seed: number, std: number, normValue = 1): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  if (name.endsWith("norm.weight")) return out.fill(normValue);
  if (name.endsWith(".bias")) return out;
  return gaussianFill(out, Math.imul(seed, 0x9e3779b1) ^ nameHash(name), std);
}

function encode(data: Float32Array, dtype: RandomInitDType): Uint8Array {
  if (dtype === "F32") return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const halves = new Uint16Array(data.length);
  const narrow = dtype === "F16" ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < data.length; i++) halves[i] = narrow(data[i]);
  return new Uint8Array(halves.buffer);
}

function tokenizerSize(tokenizer: Record<string, unknown>): number {
  const model = tokenizer.model as { vocab: Record<string, number> };
  let max = -1;
  for (const id of Object.values(model.vocab)) max = Math.max(max, id);
  for (const t of (tokenizer.added_tokens ?? []) as { id: number }[]) max = Math.max(max, t.id);
  return max + 1;
}

/**
 * Writes a random-init model with the shapes of `hfConfig` (a real config.json object) to `dir`.
 * The written config.json is the real one except: bos/eos ids point at the small tokenizer's
 * ChatML tokens (the real ids would name tokens it does not have), torch_dtype says what was
 * written, and `layers`/`vocabSize` overrides when given.
 */
export async function writeRandomModel(
  dir: string,
  hfConfig: Record<string, unknown>,
  options: RandomModelOptions = {},
): Promise<RandomModel> {
  const dtype = options.dtype ?? "F16";
  const seed = options.seed ?? 0;
  const tokenizer =
    options.tokenizer ?? trainByteLevelBpe(TINY_CORPUS, { vocabSize: 512, specialTokens: CHATML_ADDED_TOKENS });
  const ids: Record<string, number> = {};
  for (const t of (tokenizer.added_tokens ?? []) as { id: number; content: string }[]) ids[t.content] = t.id;
  const configJson: Record<string, unknown> = {
    ...hfConfig,
    bos_token_id: ids["<|endoftext|>"],
    eos_token_id: ids["<|im_end|>"],
    torch_dtype: TORCH_DTYPE[dtype],
  };
  if (options.layers !== undefined) {
    configJson.num_hidden_layers = options.layers;
    if (configJson.max_window_layers !== undefined) configJson.max_window_layers = options.layers;
  }
  if (options.vocabSize !== undefined) configJson.vocab_size = options.vocabSize;
  const config = parseModelConfig(configJson);
  if (config.vocabSize < tokenizerSize(tokenizer)) {
    throw new Error(`vocab_size ${config.vocabSize} is smaller than the tokenizer's ${tokenizerSize(tokenizer)} ids`);
  }
  const rawStd = hfConfig.initializer_range;
  const std = options.std ?? (typeof rawStd === "number" && rawStd > 0 ? rawStd : 0.02);

  // HF's writer orders by dtype then name; every tensor here has one dtype, so by name.
  const specs = expectedTensors(config).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  let parameters = 0;
  for (const { name, shape } of specs) {
    const n = shape.reduce((a, b) => a * b, 1);
    parameters += n;
    header[name] = { dtype, shape, data_offsets: [offset, offset + n * DTYPE_BYTES[dtype]] };
    offset += n * DTYPE_BYTES[dtype];
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));

  await mkdir(dir, { recursive: true });
  const fh = await open(join(dir, "model.safetensors"), "w");
  try {
    await fh.write(prefix);
    await fh.write(json);
    for (const { name, shape } of specs) {
      const data = randomTensor(name, shape, seed, std, config.gemma3 ? 0 : 1);
      // Chunked so a 545 MB embedding is not narrowed into one more full-size copy.
      const chunk = 1 << 22;
      for (let i = 0; i < data.length; i += chunk) await fh.write(encode(data.subarray(i, i + chunk), dtype));
    }
  } finally {
    await fh.close();
  }

  const text = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  await writeFile(join(dir, "config.json"), text(configJson));
  await writeFile(join(dir, "tokenizer.json"), text(tokenizer));
  await writeFile(
    join(dir, "tokenizer_config.json"),
    text(tokenizerConfigJson(tokenizer, config.maxPositionEmbeddings, QWEN2_5_CHAT_TEMPLATE)),
  );
  await writeFile(
    join(dir, "generation_config.json"),
    text({ bos_token_id: ids["<|endoftext|>"], eos_token_id: [ids["<|im_end|>"], ids["<|endoftext|>"]] }),
  );
  return { dir, config, configJson, tokenizer, parameters, weightBytes: offset };
}
