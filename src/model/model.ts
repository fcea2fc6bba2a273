// `loadModel(dir)`: a Hugging Face model directory on the GPU, with its tokenizer, an optional
// LoRA adapter, logits for any token sequence, and generation through the continuous-batching
// engine. This is the object the proxy serves from and the trainer differentiates.

import { acquireGpu, type Gpu } from "../gpu/device.ts";
import { Scope } from "../gpu/scope.ts";
import { packSequences, uploadBatch } from "./batch.ts";
import { assertRunnable, type ModelConfig } from "./config.ts";
import { Engine, type EngineOptions } from "./engine.ts";
import { headChunkRows, headLogits, sliceRows } from "./head.ts";
import { loadCheckpoint } from "./loader.ts";
import { LoraAdapter, type LoraSpec } from "./lora.ts";
import { readPeftAdapter, writePeftAdapter } from "./peft.ts";
import type { Generation, SamplingParams, SubmitOptions } from "./scheduler.ts";
import { ModelTokenizer } from "./tokenizer.ts";
import { Transformer } from "./transformer.ts";
import { disposeWeights, uploadWeights } from "./weights.ts";

export interface LoadModelOptions extends EngineOptions {
  /** Device to load onto; a new one is acquired (and owned by the model) when absent. */
  gpu?: Gpu;
  /**
   * Storage type of the frozen linear weights: "auto" (default) is f16 for a BF16/F16 checkpoint
   * on an adapter with shader-f16, f32 otherwise; "f16" needs shader-f16. Full-weight training
   * needs "f32". See docs/model-formats.md for the accuracy of bf16 → f16.
   */
  dtype?: "f32" | "f16" | "auto";
  /** Where load warnings go (default: console.warn). */
  onWarning?: (message: string) => void;
  /** Frozen linear weights stored int8 per output channel or int4 per 32 columns (docs/memory.md). */
  quantize?: "int8" | "int4";
  /** The embedding and LM head stored int8 per vocabulary row, frozen (docs/memory.md). */
  quantizeHead?: boolean;
  /** Progress while uploading tensors. */
  onProgress?: (done: number, total: number, name: string) => void;
}

export interface LogitsOptions {
  /** Apply the LoRA adapter; defaults to true when one is attached. */
  adapter?: boolean;
  /** Apply this named adapter instead of the default one. */
  adapterName?: string;
}

/** Names a named adapter may have: it is the suffix of a model id ("base:name") and a resource name. */
const ADAPTER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Throws unless `name` can name an adapter (letters, digits, '.', '_', '-'; at most 64). */
export function checkAdapterName(name: string): void {
  if (!ADAPTER_NAME.test(name)) {
    throw new Error(
      `adapter name '${name}' is not valid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

/** Loads a Qwen2/Qwen3/Llama/Mistral/Gemma 3 checkpoint directory onto the GPU. */
export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<Model> {
  const ownsGpu = !options.gpu;
  const gpu = options.gpu ?? (await acquireGpu());
  try {
    const checkpoint = await loadCheckpoint(dir);
    try {
      // A context the engine cannot run faithfully (a Qwen sliding window shorter than it) is
      // refused now, not at the first request.
      assertRunnable(checkpoint.config, options.maxSeqLen);
      const tokenizer = await ModelTokenizer.load(dir);
      const weights = await uploadWeights(gpu, checkpoint, {
        dtype: options.dtype,
        quantize: options.quantize,
        quantizeHead: options.quantizeHead,
        onWarning: options.onWarning,
        onTensor: (name, i, total) => options.onProgress?.(i + 1, total, name),
      });
      return new Model(dir, gpu, ownsGpu, new Transformer(gpu, checkpoint.config, weights), tokenizer, options);
    } finally {
      await checkpoint.close();
    }
  } catch (err) {
    if (ownsGpu) gpu.destroy();
    throw err;
  }
}

export class Model {
  readonly dir: string;
  readonly gpu: Gpu;
  readonly transformer: Transformer;
  readonly tokenizer: ModelTokenizer;
  private readonly ownsGpu: boolean;
  private readonly engineOptions: EngineOptions;
  private engineInstance: Engine | null = null;
  private disposed = false;

  constructor(
    dir: string,
    gpu: Gpu,
    ownsGpu: boolean,
    transformer: Transformer,
    tokenizer: ModelTokenizer,
    options: EngineOptions,
  ) {
    this.dir = dir;
    this.gpu = gpu;
    this.ownsGpu = ownsGpu;
    this.transformer = transformer;
    this.tokenizer = tokenizer;
    this.engineOptions = options;
  }

  get config(): ModelConfig {
    return this.transformer.config;
  }

  /** The default (unnamed) LoRA adapter, if any. */
  get adapter(): LoraAdapter | null {
    return this.transformer.lora;
  }

  /** Version of the default adapter serving now, or null for the base model. */
  get adapterVersion(): number | null {
    return this.transformer.lora?.version ?? null;
  }

  /**
   * The named adapters on this base (multi-agent): a request for model "base:name" is served
   * with adapter `name`, in the same batches as every other adapter's requests.
   */
  get adapters(): ReadonlyMap<string, LoraAdapter> {
    return this.transformer.adapters;
  }

  /** The adapter `name` (the default one when absent); null when there is none. */
  adapterNamed(name?: string): LoraAdapter | null {
    return name === undefined ? this.transformer.lora : (this.transformer.adapters.get(name) ?? null);
  }

  /**
   * Attaches a fresh adapter (B = 0, so outputs are unchanged until it is trained): the default
   * one, or the named adapter `name` (replacing one of that name).
   */
  createAdapter(spec: LoraSpec, name?: string): LoraAdapter {
    if (name !== undefined) checkAdapterName(name);
    return this.setAdapter(LoraAdapter.create(this.gpu, this.transformer.weights, spec), name);
  }

  /** Loads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors). */
  async loadAdapter(dir: string, version = 0, name?: string): Promise<LoraAdapter> {
    if (name !== undefined) checkAdapterName(name);
    const peft = await readPeftAdapter(dir, this.config);
    return this.setAdapter(LoraAdapter.fromPeft(this.gpu, this.transformer.weights, peft, version), name);
  }

  /** Saves the default adapter (or the named one) in PEFT format. */
  async saveAdapter(dir: string, name?: string): Promise<void> {
    const lora = this.adapterNamed(name);
    if (!lora) throw new Error(name === undefined ? "no adapter is attached: nothing to save" : `no adapter '${name}'`);
    const peft = await lora.toPeft();
    await writePeftAdapter(dir, { ...peft.config, baseModelNameOrPath: this.dir }, peft.tensors, {
      model: this.config,
    });
  }

  /**
   * Detaches (and frees) the default adapter, or the named one. A named adapter that requests are
   * still generating with is refused (its rows would have no adapter in the next step).
   */
  removeAdapter(name?: string): void {
    const busy = name === undefined ? 0 : (this.engineInstance?.scheduler.usingAdapter(name) ?? 0);
    if (busy > 0) throw new Error(`adapter '${name}' is generating for ${busy} sequence(s); remove it when idle`);
    this.setAdapter(null, name);
  }

  private setAdapter<T extends LoraAdapter | null>(lora: T, name?: string): T {
    if (name === undefined) {
      this.transformer.lora?.dispose();
      this.transformer.lora = lora;
      return lora;
    }
    this.transformer.adapters.get(name)?.dispose();
    if (lora) this.transformer.adapters.set(name, lora);
    else this.transformer.adapters.delete(name);
    return lora;
  }

  /** Logits for every position of `tokens`: row-major [tokens.length × vocabSize]. */
  async logits(tokens: number[], options: LogitsOptions = {}): Promise<Float32Array> {
    this.assertAlive();
    const vocab = this.config.vocabSize;
    const scope = new Scope();
    try {
      const batch = uploadBatch(this.gpu, packSequences([tokens], vocab), scope);
      let lora: LoraAdapter | null | undefined;
      if (options.adapterName !== undefined) {
        lora = this.transformer.adapters.get(options.adapterName);
        if (!lora) throw new Error(`no adapter '${options.adapterName}'`);
      }
      const fwd = this.transformer.forward(batch, { adapter: options.adapter ?? true, lora });
      const out = new Float32Array(tokens.length * vocab);
      try {
        const chunk = headChunkRows(this.transformer, tokens.length);
        for (let start = 0; start < tokens.length; start += chunk) {
          const n = Math.min(chunk, tokens.length - start);
          const logits = headLogits(this.transformer, sliceRows(fwd.normed, start, n, scope), scope);
          out.set(await logits.read(), start * vocab);
        }
      } finally {
        fwd.scope.dispose();
      }
      return out;
    } finally {
      scope.dispose();
    }
  }

  /** The continuous-batching engine (created on first use). */
  get engine(): Engine {
    this.assertAlive();
    if (!this.engineInstance) {
      this.engineInstance = new Engine(this.transformer, this.tokenizer, this.engineOptions);
    }
    return this.engineInstance;
  }

  /** Generates continuations of each prompt (all batched together); results in prompt order. */
  generate(prompts: number[][], sampling: SamplingParams = {}): Promise<Generation[]> {
    return Promise.all(prompts.map((p) => this.engine.submit(p, sampling)));
  }

  /** Generates one continuation, streaming tokens through `onToken`. */
  generateOne(prompt: number[], options: SubmitOptions = {}): Promise<Generation> {
    return this.engine.submit(prompt, options);
  }

  /** Frees the weights, caches and (if the model acquired it) the device. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.engineInstance?.dispose();
    this.transformer.lora?.dispose();
    for (const lora of this.transformer.adapters.values()) lora.dispose();
    this.transformer.adapters.clear();
    disposeWeights(this.transformer.weights);
    if (this.ownsGpu) this.gpu.destroy();
  }

  private assertAlive(): void {
    if (this.disposed) throw new Error("model used after dispose()");
  }
}
