// PEFT LoRA adapters on disk: adapter_config.json + adapter_model.safetensors exactly as Hugging
// Face PEFT saves and loads them, so adapters we train load in PEFT/vLLM and theirs load here.
// Keys look like base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight ([r, in]) and
// ...lora_B.weight ([out, r]); the update is y += scale · (x·Aᵀ)·Bᵀ, scale = alpha/r (alpha/√r with rsLoRA).
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  ATTENTION_PROJECTIONS,
  MLP_PROJECTIONS,
  type ModelConfig,
  type ProjectionName,
  projectionPath,
  projectionShape,
} from "./config.ts";
import { openSafetensors, type SafetensorsDType } from "./safetensors.ts";
import { type TensorToWrite, writeSafetensors } from "./safetensors-write.ts";

export const ALL_PROJECTIONS: readonly ProjectionName[] = [...ATTENTION_PROJECTIONS, ...MLP_PROJECTIONS];

export interface LoraConfig {
  r: number;
  loraAlpha: number;
  /** Short module names, e.g. ["q_proj", "v_proj"]. */
  targetModules: ProjectionName[];
  loraDropout: number;
  baseModelNameOrPath: string | null;
  useRslora: boolean;
  /** Layers the adapter touches; null means all. */
  layersToTransform: number[] | null;
}

export interface LoraTensor {
  shape: number[];
  data: Float32Array;
}

export interface PeftAdapter {
  config: LoraConfig;
  /** Keyed by full PEFT name (see peftKey). */
  tensors: Map<string, LoraTensor>;
}

/** The multiplier applied to B·A: alpha/r, or alpha/√r with rsLoRA. */
export function loraScale(config: LoraConfig): number {
  return config.useRslora ? config.loraAlpha / Math.sqrt(config.r) : config.loraAlpha / config.r;
}

/** PEFT's key for a layer's projection factor, e.g. peftKey(0, "q_proj", "A"). */
export function peftKey(layer: number, module: ProjectionName, which: "A" | "B"): string {
  if (!Number.isInteger(layer) || layer < 0) throw new Error(`layer must be a non-negative integer, got ${layer}`);
  if (!ALL_PROJECTIONS.includes(module)) {
    throw new Error(`unknown LoRA target "${module}"; expected one of ${ALL_PROJECTIONS.join(", ")}`);
  }
  return `base_model.model.${projectionPath(layer, module)}.lora_${which}.weight`;
}

const KEY_PATTERN =
  /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.lora_(A|B)(?:\.default)?\.weight$/;

/** Parses a PEFT key back into (layer, module, A|B); throws on anything else. */
export function parsePeftKey(key: string): { layer: number; module: ProjectionName; which: "A" | "B" } {
  const m = KEY_PATTERN.exec(key);
  const module = m?.[3] as ProjectionName | undefined;
  const blockOk = m && (m[2] === "self_attn") === (ATTENTION_PROJECTIONS as readonly string[]).includes(module!);
  if (!m || !blockOk) {
    throw new Error(
      `"${key}" is not a LoRA weight key of the form base_model.model.model.layers.<i>.<self_attn|mlp>.<proj>.lora_<A|B>.weight`,
    );
  }
  return { layer: Number(m[1]), module: module!, which: m[4] as "A" | "B" };
}

function parseTargets(v: unknown): ProjectionName[] {
  if (v === "all-linear") return [...ALL_PROJECTIONS];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.length === 0) {
    throw new Error(`adapter_config.json: target_modules must be a non-empty list, got ${JSON.stringify(v)}`);
  }
  return list.map((t) => {
    // PEFT allows full module paths as targets; only the projection's own name matters here.
    const short = typeof t === "string" ? t.split(".").pop()! : "";
    if (!ALL_PROJECTIONS.includes(short as ProjectionName)) {
      throw new Error(
        `adapter_config.json: target module ${JSON.stringify(t)} is not supported; expected ${ALL_PROJECTIONS.join(", ")}`,
      );
    }
    return short as ProjectionName;
  });
}

/** Parses and validates an adapter_config.json object (LoRA only, no DoRA, bias "none"). */
export function parseLoraConfig(raw: Record<string, unknown>): LoraConfig {
  if (raw.peft_type !== "LORA")
    throw new Error(`adapter_config.json: peft_type ${JSON.stringify(raw.peft_type)} is not "LORA"`);
  const r = raw.r;
  if (typeof r !== "number" || !Number.isInteger(r) || r < 1)
    throw new Error(`adapter_config.json: r must be a positive integer, got ${JSON.stringify(r)}`);
  const alpha = raw.lora_alpha ?? 8;
  if (typeof alpha !== "number")
    throw new Error(`adapter_config.json: lora_alpha must be a number, got ${JSON.stringify(alpha)}`);
  if (raw.fan_in_fan_out === true)
    throw new Error("adapter_config.json: fan_in_fan_out=true (Conv1D/GPT-2 layout) is not supported");
  if ((raw.bias ?? "none") !== "none")
    throw new Error(`adapter_config.json: bias ${JSON.stringify(raw.bias)} is not supported (only "none")`);
  if (raw.use_dora === true) throw new Error("adapter_config.json: DoRA (use_dora=true) is not supported");
  for (const key of ["rank_pattern", "alpha_pattern"]) {
    const v = raw[key];
    if (v && typeof v === "object" && Object.keys(v).length > 0) {
      throw new Error(`adapter_config.json: per-module ${key} is not supported`);
    }
  }
  if (raw.task_type !== undefined && raw.task_type !== null && raw.task_type !== "CAUSAL_LM") {
    throw new Error(`adapter_config.json: task_type ${JSON.stringify(raw.task_type)} is not CAUSAL_LM`);
  }
  const layers = raw.layers_to_transform;
  let layersToTransform: number[] | null = null;
  if (typeof layers === "number") layersToTransform = [layers];
  else if (Array.isArray(layers)) layersToTransform = layers as number[];
  return {
    r,
    loraAlpha: alpha,
    targetModules: parseTargets(raw.target_modules),
    loraDropout: typeof raw.lora_dropout === "number" ? raw.lora_dropout : 0,
    baseModelNameOrPath: typeof raw.base_model_name_or_path === "string" ? raw.base_model_name_or_path : null,
    useRslora: raw.use_rslora === true,
    layersToTransform,
  };
}

/** adapter_config.json content for a LoraConfig, with PEFT's full field set. */
export function loraConfigJson(config: LoraConfig): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: config.baseModelNameOrPath,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: config.layersToTransform,
    lora_alpha: config.loraAlpha,
    lora_dropout: config.loraDropout,
    modules_to_save: null,
    peft_type: "LORA",
    r: config.r,
    rank_pattern: {},
    revision: null,
    target_modules: [...config.targetModules].sort(),
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: config.useRslora,
  };
}

/** The layers an adapter applies to under a model config. */
export function adaptedLayers(config: LoraConfig, model: ModelConfig): number[] {
  return config.layersToTransform ?? Array.from({ length: model.numLayers }, (_, i) => i);
}

/**
 * Checks an adapter against a model: every (layer, target) has A [r, in] and B [out, r], and no
 * other keys exist. Returns every problem at once (empty when valid).
 */
export function checkPeftAdapter(adapter: PeftAdapter, model: ModelConfig): string[] {
  const problems: string[] = [];
  const { r, targetModules } = adapter.config;
  const layers = adaptedLayers(adapter.config, model);
  for (const l of layers) {
    if (!Number.isInteger(l) || l < 0 || l >= model.numLayers) {
      problems.push(`layers_to_transform has ${l}, but the model has ${model.numLayers} layers`);
    }
  }
  const expected = new Map<string, number[]>();
  for (const l of layers) {
    for (const module of targetModules) {
      const [out, inp] = projectionShape(model, module);
      expected.set(peftKey(l, module, "A"), [r, inp]);
      expected.set(peftKey(l, module, "B"), [out, r]);
    }
  }
  for (const [key, shape] of expected) {
    const t = adapter.tensors.get(key);
    if (!t) problems.push(`missing ${key} (expected shape [${shape}])`);
    else if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
      problems.push(`${key} has shape [${t.shape}], expected [${shape}]`);
    }
  }
  for (const key of adapter.tensors.keys()) {
    if (!expected.has(key)) problems.push(`unexpected tensor ${key} (not a target of this adapter config)`);
  }
  return problems;
}

/** Throws one error listing every mismatch between an adapter and a model config. */
export function validatePeftAdapter(adapter: PeftAdapter, model: ModelConfig): void {
  const problems = checkPeftAdapter(adapter, model);
  if (problems.length) throw new Error(`LoRA adapter does not fit the model:\n  ${problems.join("\n  ")}`);
}

/**
 * Reads a PEFT LoRA adapter directory. When `model` is given the adapter is validated against it.
 * Keys saved with an adapter name (".lora_A.default.weight") are normalised to PEFT's saved form.
 */
export async function readPeftAdapter(dir: string, model?: ModelConfig): Promise<PeftAdapter> {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8"));
  } catch (e) {
    throw new Error(`cannot read adapter_config.json in ${dir}: ${(e as Error).message}`);
  }
  const config = parseLoraConfig(raw);
  const reader = await openSafetensors(join(dir, "adapter_model.safetensors"));
  const tensors = new Map<string, LoraTensor>();
  try {
    for (const name of reader.names()) {
      const { layer, module, which } = parsePeftKey(name);
      tensors.set(peftKey(layer, module, which), { shape: reader.info(name).shape, data: await reader.read(name) });
    }
  } finally {
    await reader.close();
  }
  const adapter = { config, tensors };
  if (model) validatePeftAdapter(adapter, model);
  return adapter;
}

/**
 * Writes adapter_config.json and adapter_model.safetensors. Every key must parse as a PEFT LoRA
 * key and match shape [r, *] (A) or [*, r] (B); pass `model` to check full shapes too.
 */
export async function writePeftAdapter(
  dir: string,
  config: LoraConfig,
  tensors: Map<string, LoraTensor>,
  options: { dtype?: SafetensorsDType; model?: ModelConfig } = {},
): Promise<void> {
  const adapter = { config, tensors };
  if (options.model) validatePeftAdapter(adapter, options.model);
  const out: Record<string, TensorToWrite> = {};
  for (const [key, t] of tensors) {
    const { module, which } = parsePeftKey(key);
    if (!config.targetModules.includes(module)) throw new Error(`${key}: ${module} is not in target_modules`);
    const rankDim = which === "A" ? t.shape[0] : t.shape[1];
    if (t.shape.length !== 2 || rankDim !== config.r) {
      throw new Error(
        `${key} has shape [${t.shape}]; lora_${which} needs rank ${config.r} in dim ${which === "A" ? 0 : 1}`,
      );
    }
    out[key] = { dtype: options.dtype ?? "F32", shape: t.shape, data: t.data };
  }
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "adapter_config.json"), `${JSON.stringify(loraConfigJson(config), null, 2)}\n`);
  await writeSafetensors(join(dir, "adapter_model.safetensors"), out, { format: "pt" });
}
