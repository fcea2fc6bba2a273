// Model configuration: parses a Hugging Face `config.json` (Qwen2, Qwen3, Llama, Mistral; Gemma 3
// for its tensor list only) into one typed ModelConfig, and lists the tensors (names and shapes)
// such a model needs. Everything downstream (loader, reference transformer, GPU engine) reads only
// ModelConfig; `assertRunnable` is where an architecture we parse but cannot run is refused.

/** Architectures we can run; the HF `architectures[0]` string. */
export const SUPPORTED_ARCHITECTURES = [
  "Qwen2ForCausalLM",
  "Qwen3ForCausalLM",
  "LlamaForCausalLM",
  "MistralForCausalLM",
] as const;
/** Architectures whose config and tensor list we read, but whose forward the kernels lack. */
export const PARSED_ONLY_ARCHITECTURES = ["Gemma3ForCausalLM"] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number] | (typeof PARSED_ONLY_ARCHITECTURES)[number];

/** What Gemma 3 needs beyond the Llama family; kept so the refusal can say exactly what is missing. */
export interface Gemma3Extras {
  hiddenActivation: string;
  /** Every n-th layer is global; the others attend within `slidingWindow`. */
  slidingWindowPattern: number;
  /** RoPE base of the local (sliding-window) layers. */
  ropeLocalTheta: number;
  /** Attention scale is queryPreAttnScalar^-1/2 instead of headDim^-1/2. */
  queryPreAttnScalar: number;
}

/** Llama 3.x frequency-dependent RoPE rescaling (`rope_scaling.rope_type == "llama3"`). */
export interface Llama3RopeScaling {
  type: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface ModelConfig {
  architecture: Architecture;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  ropeTheta: number;
  /** null: plain RoPE with `ropeTheta`. */
  ropeScaling: Llama3RopeScaling | null;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  /** Whether q/k/v projections carry a bias (Qwen2: always; Llama: `attention_bias`). */
  attentionBias: boolean;
  /** Whether o_proj carries a bias (Qwen2: never; Llama: `attention_bias`). */
  outputBias: boolean;
  /** Whether gate/up/down projections carry a bias (Llama `mlp_bias`; Qwen2: never). */
  mlpBias: boolean;
  maxPositionEmbeddings: number;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** `torch_dtype` (or newer `dtype`) as written, e.g. "bfloat16"; null when absent. */
  torchDtype: string | null;
  /** Per-head RMSNorm of q and k (weights [headDim]) before RoPE: Qwen3, Gemma 3. */
  qkNorm: boolean;
  /**
   * Attention window (Mistral `sliding_window`, Qwen2 with `use_sliding_window`): null for full
   * causal attention. The kernels attend fully, so sequences may not exceed it (checked where
   * sequence lengths are known: the engine's context and each packed training batch).
   */
  slidingWindow: number | null;
  /** Gemma 3 specifics; null for every other architecture. */
  gemma3: Gemma3Extras | null;
}

/** A tensor the model needs: HF name and expected shape (row-major, torch layout). */
export interface TensorSpec {
  name: string;
  shape: number[];
}

type Json = Record<string, unknown>;

function field(raw: Json, key: string): unknown {
  return raw[key];
}

function requireInt(raw: Json, key: string, min = 1): number {
  const v = field(raw, key);
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new Error(`config.json: "${key}" must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function optionalNumber(raw: Json, key: string, fallback: number): number {
  const v = field(raw, key);
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new Error(`config.json: "${key}" must be a number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function optionalBool(raw: Json, key: string, fallback: boolean): boolean {
  const v = field(raw, key);
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") throw new Error(`config.json: "${key}" must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

function tokenIds(v: unknown, key: string): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const id of list) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new Error(`config.json: "${key}" must be a token id or a list of them, got ${JSON.stringify(v)}`);
    }
  }
  return list as number[];
}

function parseRopeScaling(raw: Json): Llama3RopeScaling | null {
  const rs = field(raw, "rope_scaling");
  if (rs === undefined || rs === null) return null;
  if (typeof rs !== "object") throw new Error(`config.json: "rope_scaling" must be an object or null`);
  const r = rs as Json;
  const kind = r.rope_type ?? r.type;
  if (kind === "default") return null;
  if (kind !== "llama3") {
    throw new Error(
      `config.json: rope_scaling type ${JSON.stringify(kind)} is not supported (supported: none, "default", "llama3")`,
    );
  }
  return {
    type: "llama3",
    factor: optionalNumber(r, "factor", 8),
    lowFreqFactor: optionalNumber(r, "low_freq_factor", 1),
    highFreqFactor: optionalNumber(r, "high_freq_factor", 4),
    originalMaxPositionEmbeddings: optionalNumber(r, "original_max_position_embeddings", 8192),
  };
}

/**
 * Parses a HF `config.json` object for a Qwen2 or Llama causal LM.
 * Throws naming the architecture when it is not one we support, and naming the field when a
 * required field is missing or malformed.
 */
export function parseModelConfig(raw: unknown): ModelConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new Error("config.json must be a JSON object");
  }
  const cfg = raw as Json;
  const archs = cfg.architectures;
  const arch = Array.isArray(archs) ? archs[0] : undefined;
  if (typeof arch !== "string") {
    throw new Error(`config.json has no "architectures" list; expected one of ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  const known = [...SUPPORTED_ARCHITECTURES, ...PARSED_ONLY_ARCHITECTURES] as readonly string[];
  if (!known.includes(arch)) {
    throw new Error(
      `unsupported architecture "${arch}" (model_type ${JSON.stringify(cfg.model_type)}); ` +
        `supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`,
    );
  }
  const architecture = arch as Architecture;
  const isGemma3 = architecture === "Gemma3ForCausalLM";
  if (!isGemma3) {
    const act = cfg.hidden_act ?? "silu";
    if (act !== "silu") throw new Error(`config.json: hidden_act "${act}" is not supported (only "silu")`);
  }

  const hiddenSize = requireInt(cfg, "hidden_size");
  const numHeads = requireInt(cfg, "num_attention_heads");
  const numKvHeads = cfg.num_key_value_heads == null ? numHeads : requireInt(cfg, "num_key_value_heads");
  if (numHeads % numKvHeads !== 0) {
    throw new Error(
      `config.json: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  }
  let headDim: number;
  if (cfg.head_dim != null) {
    headDim = requireInt(cfg, "head_dim");
  } else {
    if (hiddenSize % numHeads !== 0) {
      throw new Error(
        `config.json: hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads}) and no head_dim is given`,
      );
    }
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) throw new Error(`config.json: head_dim must be even for RoPE, got ${headDim}`);

  // Qwen2 hard-codes q/k/v biases; the others read `attention_bias` for q/k/v and o alike.
  const isQwen2 = architecture === "Qwen2ForCausalLM";
  const attentionBias = optionalBool(cfg, "attention_bias", false);
  const dtype = cfg.torch_dtype ?? cfg.dtype;
  const bos = cfg.bos_token_id;
  return {
    architecture,
    vocabSize: requireInt(cfg, "vocab_size"),
    hiddenSize,
    intermediateSize: requireInt(cfg, "intermediate_size"),
    numLayers: requireInt(cfg, "num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    ropeTheta: optionalNumber(cfg, "rope_theta", 10000),
    ropeScaling: parseRopeScaling(cfg),
    rmsNormEps: optionalNumber(cfg, "rms_norm_eps", 1e-6),
    // Gemma ties its head by default (Gemma3TextConfig), the others do not.
    tieWordEmbeddings: optionalBool(cfg, "tie_word_embeddings", isGemma3),
    attentionBias: isQwen2 ? true : attentionBias,
    outputBias: isQwen2 ? false : attentionBias,
    mlpBias: architecture === "LlamaForCausalLM" ? optionalBool(cfg, "mlp_bias", false) : false,
    maxPositionEmbeddings: optionalNumber(cfg, "max_position_embeddings", 32768),
    bosTokenId: typeof bos === "number" ? bos : null,
    eosTokenIds: tokenIds(cfg.eos_token_id, "eos_token_id"),
    torchDtype: typeof dtype === "string" ? dtype : null,
    qkNorm: architecture === "Qwen3ForCausalLM" || isGemma3,
    slidingWindow: parseSlidingWindow(cfg, architecture),
    gemma3: isGemma3 ? parseGemma3(cfg) : null,
  };
}

/**
 * The attention window that applies, or null. Qwen2/Qwen3 write `sliding_window` but only use it
 * with `use_sliding_window: true`; Mistral uses it whenever it is set (null in v0.2 and later).
 */
function parseSlidingWindow(cfg: Json, architecture: Architecture): number | null {
  const active =
    architecture === "MistralForCausalLM" || architecture === "Gemma3ForCausalLM" || cfg.use_sliding_window === true;
  if (!active || cfg.sliding_window == null) return null;
  return requireInt(cfg, "sliding_window");
}

function parseGemma3(cfg: Json): Gemma3Extras {
  const act = cfg.hidden_activation ?? cfg.hidden_act ?? "gelu_pytorch_tanh";
  return {
    hiddenActivation: String(act),
    slidingWindowPattern: cfg.sliding_window_pattern == null ? 6 : requireInt(cfg, "sliding_window_pattern"),
    ropeLocalTheta: optionalNumber(cfg, "rope_local_base_freq", 10000),
    queryPreAttnScalar: optionalNumber(cfg, "query_pre_attn_scalar", 256),
  };
}

/**
 * Throws a clear error when the engine cannot run this config faithfully: Gemma 3 (its pieces the
 * kernels lack are listed), or a sliding window shorter than the context asked for.
 * `context` is the longest sequence that will be run (prompt + completion, or a training sequence).
 */
export function assertRunnable(config: ModelConfig, context?: number): void {
  if (config.gemma3) {
    throw new Error(
      `${config.architecture} (Gemma 3) is not supported yet: the engine lacks its GELU-tanh MLP ` +
        `("${config.gemma3.hiddenActivation}"), (1 + w) RMSNorm with pre/post "sandwich" norms around ` +
        "attention and MLP, the sqrt(hidden) embedding scale, the query_pre_attn_scalar attention scale, " +
        `and interleaved sliding-window layers (window ${config.slidingWindow}, every ` +
        `${config.gemma3.slidingWindowPattern}th layer global) with a separate local RoPE theta ` +
        `(${config.gemma3.ropeLocalTheta}). Supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`,
    );
  }
  if (config.slidingWindow !== null && context !== undefined && context > config.slidingWindow) {
    throw new Error(
      `${config.architecture} uses sliding-window attention (window ${config.slidingWindow}) and the ` +
        `kernels attend over the full causal prefix, so sequences are limited to ${config.slidingWindow} ` +
        `tokens; ${context} asked for (lower the context length)`,
    );
  }
}

/** The projections a decoder layer has, in HF module names. */
export const ATTENTION_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj"] as const;
export const MLP_PROJECTIONS = ["gate_proj", "up_proj", "down_proj"] as const;
export type ProjectionName = (typeof ATTENTION_PROJECTIONS)[number] | (typeof MLP_PROJECTIONS)[number];

/** [outFeatures, inFeatures] of a projection's weight (torch nn.Linear layout). */
export function projectionShape(config: ModelConfig, proj: ProjectionName): [number, number] {
  const { hiddenSize: h, intermediateSize: m, numHeads, numKvHeads, headDim } = config;
  switch (proj) {
    case "q_proj":
      return [numHeads * headDim, h];
    case "k_proj":
    case "v_proj":
      return [numKvHeads * headDim, h];
    case "o_proj":
      return [h, numHeads * headDim];
    case "gate_proj":
    case "up_proj":
      return [m, h];
    case "down_proj":
      return [h, m];
  }
}

/** Whether a projection carries a bias under this config. */
export function projectionHasBias(config: ModelConfig, proj: ProjectionName): boolean {
  if (proj === "o_proj") return config.outputBias;
  if (proj === "q_proj" || proj === "k_proj" || proj === "v_proj") return config.attentionBias;
  return config.mlpBias;
}

/** HF module path of a projection in layer `layer`, e.g. "model.layers.3.self_attn.q_proj". */
export function projectionPath(layer: number, proj: ProjectionName): string {
  const block = (ATTENTION_PROJECTIONS as readonly string[]).includes(proj) ? "self_attn" : "mlp";
  return `model.layers.${layer}.${block}.${proj}`;
}

/** Every tensor the model needs, with its expected shape, in HF naming and a stable order. */
export function expectedTensors(config: ModelConfig): TensorSpec[] {
  const { hiddenSize: h, vocabSize: v } = config;
  const specs: TensorSpec[] = [{ name: "model.embed_tokens.weight", shape: [v, h] }];
  for (let i = 0; i < config.numLayers; i++) {
    specs.push({ name: `model.layers.${i}.input_layernorm.weight`, shape: [h] });
    for (const proj of ATTENTION_PROJECTIONS) pushProjection(specs, config, i, proj);
    if (config.qkNorm) {
      specs.push({ name: `model.layers.${i}.self_attn.q_norm.weight`, shape: [config.headDim] });
      specs.push({ name: `model.layers.${i}.self_attn.k_norm.weight`, shape: [config.headDim] });
    }
    specs.push({ name: `model.layers.${i}.post_attention_layernorm.weight`, shape: [h] });
    if (config.gemma3) {
      specs.push({ name: `model.layers.${i}.pre_feedforward_layernorm.weight`, shape: [h] });
      specs.push({ name: `model.layers.${i}.post_feedforward_layernorm.weight`, shape: [h] });
    }
    for (const proj of MLP_PROJECTIONS) pushProjection(specs, config, i, proj);
  }
  specs.push({ name: "model.norm.weight", shape: [h] });
  if (!config.tieWordEmbeddings) specs.push({ name: "lm_head.weight", shape: [v, h] });
  return specs;
}

function pushProjection(specs: TensorSpec[], config: ModelConfig, layer: number, proj: ProjectionName): void {
  const path = projectionPath(layer, proj);
  const shape = projectionShape(config, proj);
  specs.push({ name: `${path}.weight`, shape });
  if (projectionHasBias(config, proj)) specs.push({ name: `${path}.bias`, shape: [shape[0]] });
}

/** Number of parameters the config implies (sum over expectedTensors; a tied head counts once). */
export function parameterCount(config: ModelConfig): number {
  return expectedTensors(config).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
}

/** The HF tensor names the model needs (see expectedTensors for shapes). */
export function tensorNames(config: ModelConfig): string[] {
  return expectedTensors(config).map((s) => s.name);
}

/**
 * RoPE inverse frequencies, one per rotated pair (headDim/2 values): theta^(-2i/headDim), with
 * Llama 3 rescaling applied when the config asks for it (same formula as transformers'
 * `_compute_llama3_parameters`).
 */
export function ropeInverseFrequencies(config: ModelConfig): Float64Array {
  const half = config.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / config.ropeTheta ** ((2 * i) / config.headDim);
  const s = config.ropeScaling;
  if (s === null) return inv;
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen > lowFreqWavelen) {
      inv[i] = inv[i] / s.factor;
    } else if (wavelen >= highFreqWavelen) {
      const smooth =
        (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      inv[i] = (1 - smooth) * (inv[i] / s.factor) + smooth * inv[i];
    }
  }
  return inv;
}
