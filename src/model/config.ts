// Model configuration: parses a Hugging Face `config.json` (Qwen2, Qwen3, Llama, Mistral, Gemma 3
// text) into one typed ModelConfig, and lists the tensors (names and shapes) such a model needs.
// Everything downstream (loader, reference transformer, GPU engine) reads only ModelConfig and the
// per-layer helpers here (`layerAttention`, `ropeInverseFrequencies`, `normWeightOffset`,
// `embeddingScale`); `assertRunnable` is where a config the kernels cannot run faithfully is refused.

/** Architectures we can run; the HF `architectures[0]` string. */
export const SUPPORTED_ARCHITECTURES = [
  "Qwen2ForCausalLM",
  "Qwen3ForCausalLM",
  "LlamaForCausalLM",
  "MistralForCausalLM",
  "Gemma3ForCausalLM",
] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

/**
 * What Gemma 3 (text) adds to the Llama family, as transformers' modeling_gemma3.py computes it:
 * (1 + w) RMSNorms in f32, four per layer ("sandwich": post_attention_layernorm normalises the
 * attention output before the residual add, pre/post_feedforward_layernorm wrap the MLP),
 * embeddings × √hidden, a GELU-tanh gated MLP, q/k norms, attention scale
 * query_pre_attn_scalar^-½, and sliding-window local layers with their own RoPE base
 * interleaved with global layers (whose RoPE takes `rope_theta` and `rope_scaling`).
 */
export interface Gemma3Extras {
  hiddenActivation: string;
  /** Every n-th layer is global when `layer_types` is absent (transformers' default, 6). */
  slidingWindowPattern: number;
  /** Per layer: true for a local (sliding-window) layer, false for a global one. */
  slidingLayers: boolean[];
  /** RoPE base of the local (sliding-window) layers. */
  ropeLocalTheta: number;
  /** Attention scale is queryPreAttnScalar^-1/2 instead of headDim^-1/2. */
  queryPreAttnScalar: number;
  /** tanh soft cap of the final logits (null in Gemma 3 configs; refused when set). */
  finalLogitSoftcapping: number | null;
  /** tanh soft cap of attention scores (null in Gemma 3 configs; refused when set). */
  attnLogitSoftcapping: number | null;
  /** `use_bidirectional_attention` (EmbeddingGemma); refused when true. */
  bidirectional: boolean;
}

/** `rope_scaling.rope_type == "linear"`: every inverse frequency divided by `factor` (Gemma 3 4B+). */
export interface LinearRopeScaling {
  type: "linear";
  factor: number;
}

/** Llama 3.x frequency-dependent RoPE rescaling (`rope_scaling.rope_type == "llama3"`). */
export interface Llama3RopeScaling {
  type: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export type RopeScaling = Llama3RopeScaling | LinearRopeScaling;

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
  /** null: plain RoPE with `ropeTheta` (for Gemma 3: of its global layers). */
  ropeScaling: RopeScaling | null;
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
   * Attention window (Mistral `sliding_window`, Gemma 3's local layers, Qwen2 with
   * `use_sliding_window`): null for full causal attention. Which layers it applies to is
   * `layerAttention`'s business.
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

function parseRopeScaling(raw: Json): RopeScaling | null {
  const rs = field(raw, "rope_scaling");
  if (rs === undefined || rs === null) return null;
  if (typeof rs !== "object") throw new Error(`config.json: "rope_scaling" must be an object or null`);
  const r = rs as Json;
  const kind = r.rope_type ?? r.type;
  if (kind === "default") return null;
  if (kind === "linear") {
    const factor = optionalNumber(r, "factor", 1);
    if (!(factor > 0)) throw new Error(`config.json: rope_scaling factor must be > 0, got ${factor}`);
    return { type: "linear", factor };
  }
  if (kind !== "llama3") {
    throw new Error(
      `config.json: rope_scaling type ${JSON.stringify(kind)} is not supported (supported: none, "default", "linear", "llama3")`,
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
 * Parses a HF `config.json` object for a Qwen2, Qwen3, Llama, Mistral or Gemma 3 (text) causal LM.
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
  const known = SUPPORTED_ARCHITECTURES as readonly string[];
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
    gemma3: isGemma3 ? parseGemma3(cfg, requireInt(cfg, "num_hidden_layers")) : null,
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

function parseGemma3(cfg: Json, numLayers: number): Gemma3Extras {
  const act = cfg.hidden_activation ?? cfg.hidden_act ?? "gelu_pytorch_tanh";
  const pattern = cfg.sliding_window_pattern == null ? 6 : requireInt(cfg, "sliding_window_pattern");
  // Gemma3TextConfig: `layer_types` when given, else layer i is global iff (i + 1) % pattern == 0.
  let slidingLayers: boolean[];
  const types = cfg.layer_types;
  if (types != null) {
    if (!Array.isArray(types) || types.length !== numLayers) {
      throw new Error(`config.json: "layer_types" must list one type per layer (${numLayers})`);
    }
    slidingLayers = types.map((t, i) => {
      if (t !== "sliding_attention" && t !== "full_attention") {
        throw new Error(
          `config.json: layer_types[${i}] is ${JSON.stringify(t)}; expected "sliding_attention" or "full_attention"`,
        );
      }
      return t === "sliding_attention";
    });
  } else {
    slidingLayers = Array.from({ length: numLayers }, (_, i) => (i + 1) % pattern !== 0);
  }
  const cap = (key: string): number | null => (cfg[key] == null ? null : optionalNumber(cfg, key, 0));
  return {
    hiddenActivation: String(act),
    slidingWindowPattern: pattern,
    slidingLayers,
    ropeLocalTheta: optionalNumber(cfg, "rope_local_base_freq", 10000),
    queryPreAttnScalar: optionalNumber(cfg, "query_pre_attn_scalar", 256),
    finalLogitSoftcapping: cap("final_logit_softcapping"),
    attnLogitSoftcapping: cap("attn_logit_softcapping"),
    bidirectional: cfg.use_bidirectional_attention === true,
  };
}

/** How one layer attends: its window (null: the whole causal prefix), RoPE and score scale. */
export interface LayerAttention {
  window: number | null;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** Multiplies q·k before the softmax. */
  scale: number;
}

/**
 * Layer `layer`'s attention. Mistral's window applies to every layer; Gemma 3's only to its local
 * layers, which also take `rope_local_base_freq` without scaling (transformers' rotary_emb_local),
 * while its global layers take `rope_theta` and `rope_scaling`. Qwen2/Qwen3's `use_sliding_window`
 * (applied from layer `max_window_layers` on) is not modelled: `assertRunnable` keeps such
 * sequences within the window, where the window changes nothing.
 */
export function layerAttention(config: ModelConfig, layer: number): LayerAttention {
  const g = config.gemma3;
  if (g) {
    const local = g.slidingLayers[layer];
    return {
      window: local ? config.slidingWindow : null,
      ropeTheta: local ? g.ropeLocalTheta : config.ropeTheta,
      ropeScaling: local ? null : config.ropeScaling,
      scale: g.queryPreAttnScalar ** -0.5,
    };
  }
  return {
    window: config.architecture === "MistralForCausalLM" ? config.slidingWindow : null,
    ropeTheta: config.ropeTheta,
    ropeScaling: config.ropeScaling,
    scale: 1 / Math.sqrt(config.headDim),
  };
}

/** Added to every RMSNorm weight before it scales: 1 for Gemma's (1 + w) norms, else 0. */
export function normWeightOffset(config: ModelConfig): number {
  return config.gemma3 ? 1 : 0;
}

/** bfloat16 rounding (round to nearest even) of an f64 value. */
function toBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) & 0xffff0000;
  return f[0];
}

/** float16 rounding of an f64 value (normal range; enough for √hidden). */
function toF16(x: number): number {
  const e = Math.floor(Math.log2(Math.abs(x)));
  const step = 2 ** (e - 10);
  return Math.round(x / step) * step;
}

/**
 * What the embedding rows are multiplied by: √hidden for Gemma (1 elsewhere), as the tensor
 * transformers multiplies by, `embed_scale.to(weight.dtype)`: rounded to the checkpoint's dtype
 * (`torch_dtype`), so a bfloat16 Gemma 3 1B scales by 34, not 33.94.
 */
export function embeddingScale(config: ModelConfig): number {
  if (!config.gemma3) return 1;
  const s = Math.sqrt(config.hiddenSize);
  if (config.torchDtype === "bfloat16") return toBf16(s);
  if (config.torchDtype === "float16") return toF16(s);
  return Math.fround(s);
}

/**
 * Throws a clear error when the engine cannot run this config faithfully: Gemma 3 variants with
 * pieces the kernels lack (logit soft-capping, bidirectional attention, another activation), or
 * Qwen2/Qwen3's `use_sliding_window` with a context longer than the window. `context` is the
 * longest sequence that will be run (prompt + completion, or a training sequence).
 */
export function assertRunnable(config: ModelConfig, context?: number): void {
  const g = config.gemma3;
  if (g) {
    const missing: string[] = [];
    if (g.hiddenActivation !== "gelu_pytorch_tanh") {
      missing.push(`hidden_activation "${g.hiddenActivation}" (only "gelu_pytorch_tanh")`);
    }
    if (g.finalLogitSoftcapping !== null) missing.push(`final_logit_softcapping ${g.finalLogitSoftcapping}`);
    if (g.attnLogitSoftcapping !== null) missing.push(`attn_logit_softcapping ${g.attnLogitSoftcapping}`);
    if (g.bidirectional) missing.push("use_bidirectional_attention");
    if (missing.length > 0) {
      throw new Error(
        `${config.architecture}: this Gemma 3 config needs what the kernels do not implement: ${missing.join(", ")}`,
      );
    }
    if (g.slidingLayers.some((s) => s) && config.slidingWindow === null) {
      throw new Error(`${config.architecture}: sliding-window layers need "sliding_window" in config.json`);
    }
  }
  const windowed = slidingWindowMasked(config);
  if (!windowed && config.slidingWindow !== null && context !== undefined && context > config.slidingWindow) {
    throw new Error(
      `${config.architecture} with use_sliding_window (window ${config.slidingWindow}) applies the window ` +
        `from layer max_window_layers on, which the engine does not model, so sequences are limited to ` +
        `${config.slidingWindow} tokens; ${context} asked for (lower the context length)`,
    );
  }
}

/**
 * Whether the kernels mask this config's sliding window as transformers applies it (Mistral,
 * Gemma 3); otherwise a window caps the context (`assertRunnable`).
 */
export function slidingWindowMasked(config: ModelConfig): boolean {
  return config.architecture === "MistralForCausalLM" || config.architecture === "Gemma3ForCausalLM";
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
 * RoPE inverse frequencies of layer `layer` (default 0; they differ per layer only for Gemma 3),
 * one per rotated pair (headDim/2 values): theta^(-2i/headDim), divided by the factor for linear
 * scaling, or with Llama 3 rescaling applied (same formula as transformers'
 * `_compute_llama3_parameters`) when the config asks for it.
 */
export function ropeInverseFrequencies(config: ModelConfig, layer = 0): Float64Array {
  const { ropeTheta, ropeScaling: s } = layerAttention(config, layer);
  const half = config.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / ropeTheta ** ((2 * i) / config.headDim);
  if (s === null) return inv;
  if (s.type === "linear") {
    for (let i = 0; i < half; i++) inv[i] /= s.factor;
    return inv;
  }
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
