// LoRA adapters on the GPU: per targeted projection, A [r, in] and B [out, r], applied as
// y = x·Wᵀ + scale·(x·Aᵀ)·Bᵀ (scale = alpha/r, or alpha/√r with rsLoRA). The trainer updates A and
// B in place, so serving picks up a new adapter with no copy: the "hot swap" is the optimizer step
// plus a version bump. Host copies use PEFT's format (src/model/peft.ts), so adapters move to and
// from PEFT, vLLM and transformers.

import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { mulberry32 } from "../random.ts";
import type { ProjectionName } from "./config.ts";
import { ALL_PROJECTIONS, type LoraConfig, type LoraTensor, loraScale, type PeftAdapter, peftKey } from "./peft.ts";
import { allLinears, type LinearWeights, type ModelWeights } from "./weights.ts";

export interface LoraSpec {
  rank: number;
  alpha: number;
  /** Projections to adapt, e.g. ["q_proj", "v_proj"]; default: all seven. */
  targets?: ProjectionName[];
  /** Seed for A's initialisation (B starts at zero, so a new adapter changes nothing). */
  seed?: number;
  useRslora?: boolean;
}

export interface LoraModule {
  path: string;
  layer: number;
  projection: ProjectionName;
  /** [rank, in] */
  a: Tensor;
  /** [out, rank] */
  b: Tensor;
}

export class LoraAdapter {
  readonly config: LoraConfig;
  /** Keyed by HF module path (e.g. "model.layers.0.self_attn.q_proj"). */
  readonly modules: Map<string, LoraModule>;
  /**
   * Which weights these are: the resource version the trainer published them as (0 for a fresh
   * or loaded adapter). Recorded with every generation, so each transition names its policy.
   */
  version: number;

  private constructor(config: LoraConfig, modules: Map<string, LoraModule>, version: number) {
    this.config = config;
    this.modules = modules;
    this.version = version;
  }

  get rank(): number {
    return this.config.r;
  }

  get scale(): number {
    return loraScale(this.config);
  }

  /** A fresh adapter: A ~ U(−1/√in, 1/√in) (PEFT's kaiming-uniform with a=√5), B = 0. */
  static create(gpu: Gpu, weights: ModelWeights, spec: LoraSpec): LoraAdapter {
    if (!Number.isInteger(spec.rank) || spec.rank < 1)
      throw new Error(`LoRA rank must be a positive integer, got ${spec.rank}`);
    if (!(spec.alpha > 0)) throw new Error(`LoRA alpha must be positive, got ${spec.alpha}`);
    const targets = spec.targets ?? [...ALL_PROJECTIONS];
    for (const t of targets) {
      if (!ALL_PROJECTIONS.includes(t))
        throw new Error(`unknown LoRA target '${t}' (known: ${ALL_PROJECTIONS.join(", ")})`);
    }
    if (targets.length === 0) throw new Error("LoRA needs at least one target module");
    const config: LoraConfig = {
      r: spec.rank,
      loraAlpha: spec.alpha,
      targetModules: targets,
      loraDropout: 0,
      baseModelNameOrPath: null,
      useRslora: spec.useRslora ?? false,
      layersToTransform: null,
    };
    const random = mulberry32(spec.seed ?? 0x1234567);
    const modules = new Map<string, LoraModule>();
    for (const lin of targetLinears(weights, config)) {
      const bound = 1 / Math.sqrt(lin.inFeatures);
      const a = new Float32Array(spec.rank * lin.inFeatures);
      for (let i = 0; i < a.length; i++) a[i] = (2 * random() - 1) * bound;
      modules.set(
        lin.path,
        module(lin, gpu.tensor([spec.rank, lin.inFeatures], "f32", a), gpu.zeros([lin.outFeatures, spec.rank])),
      );
    }
    return new LoraAdapter(config, modules, 0);
  }

  /** Uploads a PEFT adapter (validated against the model by readPeftAdapter). */
  static fromPeft(gpu: Gpu, weights: ModelWeights, adapter: PeftAdapter, version = 0): LoraAdapter {
    const modules = new Map<string, LoraModule>();
    const missing: string[] = [];
    for (const lin of targetLinears(weights, adapter.config)) {
      const a = adapter.tensors.get(peftKey(lin.layer, lin.projection, "A"));
      const b = adapter.tensors.get(peftKey(lin.layer, lin.projection, "B"));
      if (!a || !b) {
        missing.push(lin.path);
        continue;
      }
      modules.set(lin.path, module(lin, gpu.tensor(a.shape, "f32", a.data), gpu.tensor(b.shape, "f32", b.data)));
    }
    if (missing.length > 0) {
      for (const m of modules.values()) disposeModule(m);
      throw new Error(`adapter lacks LoRA tensors for ${missing.join(", ")}`);
    }
    return new LoraAdapter(adapter.config, modules, version);
  }

  /** Every trainable tensor with its PEFT key (A then B per module, in layer order). */
  parameters(): { name: string; tensor: Tensor }[] {
    const out: { name: string; tensor: Tensor }[] = [];
    for (const m of this.modules.values()) {
      out.push({ name: peftKey(m.layer, m.projection, "A"), tensor: m.a });
      out.push({ name: peftKey(m.layer, m.projection, "B"), tensor: m.b });
    }
    return out;
  }

  /** Downloads the adapter in PEFT form. */
  async toPeft(): Promise<PeftAdapter> {
    const tensors = new Map<string, LoraTensor>();
    for (const { name, tensor } of this.parameters())
      tensors.set(name, { shape: [...tensor.shape], data: await tensor.read() });
    return { config: this.config, tensors };
  }

  dispose(): void {
    for (const m of this.modules.values()) disposeModule(m);
    this.modules.clear();
  }
}

function module(lin: LinearWeights, a: Tensor, b: Tensor): LoraModule {
  return { path: lin.path, layer: lin.layer, projection: lin.projection, a, b };
}

function disposeModule(m: LoraModule): void {
  m.a.dispose();
  m.b.dispose();
}

function targetLinears(weights: ModelWeights, config: LoraConfig): LinearWeights[] {
  const layers = config.layersToTransform ? new Set(config.layersToTransform) : null;
  return allLinears(weights).filter(
    (l) => config.targetModules.includes(l.projection) && (!layers || layers.has(l.layer)),
  );
}
