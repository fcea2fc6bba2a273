// Compiled compute pipelines, cached by (shader, entry point, defines, override constants).
// Shaders are WGSL files under src/gpu/shaders/, bundled into shaders.gen.ts so they load the
// same way under Node, Bun, Deno and browser bundlers. A shader may contain `{{NAME}}`
// placeholders that launchers fill in (vector widths, tile sizes, the storage scalar type);
// anything that WGSL `override` can express is passed as a constant instead.

import type { GpuFeatures } from "./device.ts";
import { SHADERS, type ShaderEntries, type ShaderName } from "./shaders.gen.ts";

export type { ShaderEntries, ShaderName, ShaderParams } from "./shaders.gen.ts";

export type Defines = Record<string, string | number | boolean>;
export type Constants = Record<string, number>;

export interface PipelineKey<S extends ShaderName = ShaderName> {
  shader: S;
  entry: ShaderEntries[S];
  defines?: Defines;
  constants?: Constants;
}

/** Fills `{{NAME}}` placeholders; unknown names are an error so typos cannot pass silently. */
export function renderShader(name: ShaderName, defines: Defines = {}): string {
  const source = (SHADERS as Record<string, string | undefined>)[name];
  if (source === undefined) throw new Error(`unknown shader '${name}' (is shaders.gen.ts up to date?)`);
  return source.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const value = defines[key];
    if (value === undefined) throw new Error(`shader '${name}' needs define '${key}'`);
    return String(value);
  });
}

export class PipelineCache {
  private readonly device: GPUDevice;
  private readonly features: GpuFeatures;
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  /** First compilation/validation error seen, surfaced by `takeError()`. */
  private error: Error | null = null;

  constructor(device: GPUDevice, features: GpuFeatures) {
    this.device = device;
    this.features = features;
  }

  get(key: PipelineKey): GPUComputePipeline {
    const id = `${key.shader}:${key.entry}:${stable(key.defines)}:${stable(key.constants)}`;
    let pipeline = this.pipelines.get(id);
    if (pipeline) return pipeline;
    const moduleId = `${key.shader}:${stable(key.defines)}`;
    let module = this.modules.get(moduleId);
    const device = this.device;
    // Everything that can throw on our side happens before the error scope opens: a scope pushed
    // and never popped would swallow every later validation error on this device.
    let code: string | undefined;
    if (!module) {
      code = renderShader(key.shader, key.defines);
      if (/\benable f16\b/.test(code) && !this.features.shaderF16) {
        throw new Error(`shader '${key.shader}' needs shader-f16, which this adapter lacks`);
      }
    }
    device.pushErrorScope("validation");
    try {
      if (!module) {
        module = device.createShaderModule({ code: code as string, label: key.shader });
        this.modules.set(moduleId, module);
      }
      pipeline = device.createComputePipeline({
        label: `${key.shader}.${key.entry}`,
        layout: "auto",
        compute: { module, entryPoint: key.entry, constants: key.constants },
      });
    } finally {
      device.popErrorScope().then((err) => {
        if (err && !this.error) this.error = new Error(`pipeline ${id}: ${err.message}`);
      });
    }
    this.pipelines.set(id, pipeline);
    return pipeline;
  }

  /** Returns and clears the first pipeline error recorded so far. */
  takeError(): Error | null {
    const e = this.error;
    this.error = null;
    return e;
  }

  get size(): number {
    return this.pipelines.size;
  }
}

function stable(obj: object | undefined): string {
  if (!obj) return "";
  return Object.keys(obj)
    .sort()
    .map((k) => `${k}=${(obj as Record<string, unknown>)[k]}`)
    .join(",");
}
