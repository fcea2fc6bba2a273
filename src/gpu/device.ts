// The GPU runtime: finds a WebGPU adapter on any runtime, opens a device with the adapter's real
// limits and the optional features our kernels use, and owns everything tied to that device's
// life (the buffer pool, the pipeline cache, the current command batch).
//
// Runtimes: `navigator.gpu` where it exists (Deno, browsers); otherwise Dawn's node bindings from
// the npm `webgpu` package (Node, Bun). Dawn's `create()` result must outlive every device made
// from it, or the process crashes (see shared platform notes), so `Gpu` holds it until destroy().

import { CommandBatch } from "./batch.ts";
import { PipelineCache } from "./pipeline.ts";
import { BufferPool } from "./pool.ts";
import { bytesFor, type DType, Tensor } from "./tensor.ts";

/** Optional WebGPU features a kernel may take advantage of; each has an f32/plain fallback. */
export interface GpuFeatures {
  shaderF16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
}

export interface AcquireOptions {
  /** Ask for a low-power or high-performance adapter where the platform has several. */
  powerPreference?: GPUPowerPreference;
  /** Do not request optional features even if the adapter has them (to test fallbacks). */
  disableFeatures?: (keyof GpuFeatures)[];
  /** Extra Dawn toggles for `create()` (node/bun only), e.g. "backend=opengles". */
  dawnOptions?: string[];
  /** Lower `maxStorageBufferBindingSize` (bytes) below the adapter's, to exercise sharding. */
  maxBindingSize?: number;
}

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  runtime: "dawn-node" | "navigator";
}

/** Thrown when no WebGPU adapter exists; the message says how to get one. */
export class NoAdapterError extends Error {
  constructor(detail: string) {
    super(
      `No WebGPU adapter found (${detail}). Fulgur needs a GPU driver with Vulkan, Metal or D3D12, ` +
        "or a software one: on Debian/Ubuntu run `bash scripts/setup-gpu.sh` (installs Mesa's lavapipe).",
    );
    this.name = "NoAdapterError";
  }
}

interface GpuEntry {
  /** Dawn's instance (held by `dawnInstances`), or the runtime's navigator.gpu. */
  gpu: GPU;
  runtime: AdapterDescription["runtime"];
}

/**
 * Dawn instances by option set, held for the life of the process. An instance collected while
 * anything made from it is still reachable (a device, or the buffers and pipelines a caller
 * holds after destroy()) can crash the process from a GC finalizer (platform-notes), and a
 * test worker that acquires many devices gives the collector every chance. Instances whose
 * devices are destroyed do not keep the process from exiting, so holding them costs nothing.
 */
const dawnInstances = new Map<string, Promise<GpuEntry>>();

function findGpuEntry(dawnOptions: string[]): Promise<GpuEntry> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  // Dawn's `globals` install a navigator-less set of constructors; a real navigator.gpu means
  // a runtime with WebGPU built in (Deno, a browser).
  if (nav?.gpu) return Promise.resolve({ gpu: nav.gpu, runtime: "navigator" });
  const key = JSON.stringify(dawnOptions);
  let entry = dawnInstances.get(key);
  if (!entry) {
    entry = createDawnInstance(dawnOptions);
    dawnInstances.set(key, entry);
    entry.catch(() => dawnInstances.delete(key)); // a failed load may be retried
  }
  return entry;
}

async function createDawnInstance(dawnOptions: string[]): Promise<GpuEntry> {
  const mod = (await import("webgpu")) as { create: (o: string[]) => GPU; globals: object };
  Object.assign(globalThis, mod.globals);
  const gpu = mod.create(dawnOptions);
  return { gpu, runtime: "dawn-node" };
}

/**
 * Opens a WebGPU device on whatever adapter this machine has (a real GPU, or lavapipe).
 * Call `gpu.destroy()` when done so the process can exit.
 */
export async function acquireGpu(options: AcquireOptions = {}): Promise<Gpu> {
  const entry = await findGpuEntry(options.dawnOptions ?? []);
  let adapter: GPUAdapter | null;
  try {
    adapter = await entry.gpu.requestAdapter({ powerPreference: options.powerPreference });
  } catch (err) {
    throw new NoAdapterError(String(err));
  }
  if (!adapter) throw new NoAdapterError("requestAdapter() returned null");

  const disabled = new Set(options.disableFeatures ?? []);
  const want: [keyof GpuFeatures, GPUFeatureName][] = [
    ["shaderF16", "shader-f16"],
    ["subgroups", "subgroups" as GPUFeatureName],
    ["timestampQuery", "timestamp-query"],
  ];
  const features: GpuFeatures = { shaderF16: false, subgroups: false, timestampQuery: false };
  const requiredFeatures: GPUFeatureName[] = [];
  for (const [key, name] of want) {
    if (adapter.features.has(name) && !disabled.has(key)) {
      features[key] = true;
      requiredFeatures.push(name);
    }
  }

  // Ask for every limit the adapter offers: the defaults (128 MiB bindings, 16 KiB workgroup
  // memory) are far below what real GPUs and even lavapipe allow.
  const requiredLimits: Record<string, number> = {};
  for (const key in adapter.limits) {
    const value = (adapter.limits as unknown as Record<string, number>)[key];
    if (typeof value === "number") requiredLimits[key] = value;
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  const description: AdapterDescription = {
    vendor: info.vendor ?? "",
    architecture: info.architecture ?? "",
    device: info.device ?? "",
    description: info.description ?? "",
    runtime: entry.runtime,
  };
  return new Gpu(adapter, device, features, description, options.maxBindingSize);
}

/** One open WebGPU device and everything that lives as long as it. */
export class Gpu {
  readonly device: GPUDevice;
  readonly adapter: GPUAdapter;
  readonly features: GpuFeatures;
  readonly info: AdapterDescription;
  /** Largest byte size one storage binding may have; larger tensors are sharded. */
  readonly maxBindingSize: number;
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  private batch: CommandBatch;
  private lost: string | null = null;
  private uncaptured: string | null = null;
  private destroyed = false;

  constructor(
    adapter: GPUAdapter,
    device: GPUDevice,
    features: GpuFeatures,
    info: AdapterDescription,
    maxBindingSize?: number,
  ) {
    this.adapter = adapter;
    this.device = device;
    this.features = features;
    this.info = info;
    const limit = device.limits.maxStorageBufferBindingSize;
    this.maxBindingSize = Math.min(limit, maxBindingSize ?? limit);
    this.pool = new BufferPool(device, () => this.batch.submitIfPending());
    this.pipelines = new PipelineCache(device, features);
    this.batch = new CommandBatch(this);
    // Validation errors outside an error scope (a bad binding, an out-of-range copy) would
    // otherwise only be printed by Dawn; keep the first so sync() can throw it.
    device.addEventListener("uncapturederror", (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      if (!this.uncaptured) this.uncaptured = e.message;
    });
    device.lost.then((info) => {
      if (!this.destroyed) this.lost = `${info.reason}: ${info.message}`;
    });
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** A new tensor, uploaded from `data` when given, else uninitialised (pooled memory). */
  tensor(shape: readonly number[], dtype: DType = "f32", data?: ArrayLike<number>): Tensor {
    this.assertAlive();
    const t = new Tensor(this, this.pool.acquire(bytesFor(shape, dtype)), shape, dtype);
    if (data) t.write(data);
    return t;
  }

  /** A tensor filled with zeros. */
  zeros(shape: readonly number[], dtype: DType = "f32"): Tensor {
    const t = this.tensor(shape, dtype);
    this.batch.clear(t.buffer, t.byteOffset, t.byteLength);
    return t;
  }

  /** The command batch dispatches are recorded into; flushed on read or `flush()`. */
  get commands(): CommandBatch {
    this.assertAlive();
    return this.batch;
  }

  /** Submits every recorded dispatch. */
  flush(): void {
    this.batch.submit();
  }

  /** Submits and waits until the GPU has finished all work. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.checkErrors();
  }

  /** Throws the first WebGPU validation error seen since the last check, if any. */
  checkErrors(): void {
    this.assertAlive();
    const err = this.uncaptured ?? this.pipelines.takeError()?.message;
    this.uncaptured = null;
    if (err) throw new Error(`WebGPU error: ${err}`);
  }

  /** Throws if the device was lost (driver reset, out of memory) or destroyed. */
  assertAlive(): void {
    if (this.destroyed) throw new Error("GPU device used after destroy()");
    if (this.lost) throw new Error(`GPU device lost: ${this.lost}`);
  }

  /** Destroys the device so the process can exit (Dawn's instance stays cached). Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      this.pool.trim(); // submits recorded work first: the device still runs it before going
    } finally {
      this.device.destroy();
    }
  }

  /** True once destroy() ran. */
  get isDestroyed(): boolean {
    return this.destroyed;
  }
}
