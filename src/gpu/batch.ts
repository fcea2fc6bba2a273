// Records many dispatches into one command encoder and one compute pass, and submits them
// together: on lavapipe a submit+wait costs ~0.1 ms while a dispatch inside a pass costs ~15 µs,
// so batching is what makes a transformer step fast.
//
// Kernel parameters go into a uniform arena: each dispatch takes a 256-byte-aligned slot in a
// shared uniform buffer, written once at submit time.

import type { Gpu } from "./device.ts";
import type { PipelineKey } from "./pipeline.ts";
import { SHADER_PARAMS, type ShaderName, type ShaderParams } from "./shaders.gen.ts";
import type { Tensor } from "./tensor.ts";

export interface Dispatch<S extends ShaderName = ShaderName> extends PipelineKey<S> {
  /** Storage bindings @group(0) @binding(0..n-1), in order. */
  bindings: readonly Tensor[];
  /**
   * The shader's uniform `struct Params` at @group(1) @binding(0), by field name (the names and
   * the u32/i32/f32 types come from the WGSL via shaders.gen.ts). Every field must be given;
   * entry points that read no params may omit the whole object.
   */
  params?: ShaderParams[S];
  /** Workgroup counts; each dimension must be ≤ maxComputeWorkgroupsPerDimension. */
  workgroups: readonly [number, number?, number?];
}

const SLOT = 256;
const ARENA_BYTES = 64 * 1024;

interface Arena {
  buffer: GPUBuffer;
  data: ArrayBuffer;
  used: number;
}

export class CommandBatch {
  private readonly gpu: Gpu;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private arenas: Arena[] = [];
  private freeArenas: GPUBuffer[] = [];
  private pending = 0;
  /** Dispatches recorded since creation (for tests and benchmarks). */
  dispatchCount = 0;

  constructor(gpu: Gpu) {
    this.gpu = gpu;
  }

  /** Records one compute dispatch. */
  dispatch<S extends ShaderName>(d: Dispatch<S>): void {
    const [x, y = 1, z = 1] = d.workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.gpu.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) {
      throw new Error(`${d.shader}.${d.entry}: workgroups [${x}, ${y}, ${z}] exceed ${max} per dimension`);
    }
    for (const t of d.bindings) {
      if (t.byteLength > this.gpu.maxBindingSize) {
        throw new Error(
          `${d.shader}.${d.entry}: a ${t.byteLength}-byte binding exceeds this adapter's ` +
            `maxStorageBufferBindingSize (${this.gpu.maxBindingSize}); shard it (ShardedMatrix)`,
        );
      }
    }
    const device = this.gpu.device;
    const pipeline = this.gpu.pipelines.get(d);
    const storage = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: d.bindings.map((t, binding) => ({
        binding,
        resource: { buffer: t.buffer, offset: t.byteOffset, size: t.byteLength },
      })),
    });
    let uniform: GPUBindGroup | null = null;
    const fields = SHADER_PARAMS[d.shader];
    if (d.params && fields.length > 0) {
      const { buffer, offset, bytes } = this.writeParams(`${d.shader}.${d.entry}`, fields, d.params);
      uniform = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(1),
        entries: [{ binding: 0, resource: { buffer, offset, size: bytes } }],
      });
    }
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, storage);
    if (uniform) pass.setBindGroup(1, uniform);
    pass.dispatchWorkgroups(x, y, z);
    this.pending++;
    this.dispatchCount++;
  }

  copyBufferToBuffer(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
    this.pending++;
  }

  clear(buffer: GPUBuffer, offset: number, size: number): void {
    this.endPass();
    this.commandEncoder().clearBuffer(buffer, offset, size);
    this.pending++;
  }

  /** Writes a GPU timestamp between passes (timestamp-query feature only). */
  writeTimestamp(querySet: GPUQuerySet, index: number): void {
    this.endPass();
    // Begin an empty pass that records the timestamp at its start: the portable way since
    // encoder-level writeTimestamp is not in core WebGPU.
    const pass = this.commandEncoder().beginComputePass({
      timestampWrites: { querySet, beginningOfPassWriteIndex: index },
    });
    pass.end();
    this.pending++;
  }

  resolveQuery(querySet: GPUQuerySet, count: number, dst: GPUBuffer): void {
    this.endPass();
    this.commandEncoder().resolveQuerySet(querySet, 0, count, dst, 0);
    this.pending++;
  }

  /** Submits if anything is recorded (used before queue writes to keep program order). */
  submitIfPending(): void {
    if (this.pending > 0) this.submit();
  }

  /** Ends the pass, writes the uniform arenas and submits everything recorded. */
  submit(): void {
    if (!this.encoder) return;
    this.endPass();
    const queue = this.gpu.device.queue;
    for (const a of this.arenas) queue.writeBuffer(a.buffer, 0, a.data, 0, a.used);
    queue.submit([this.encoder.finish()]);
    // Arenas may be reused right away: queue writes for the next batch are ordered after
    // this submit, so the GPU never sees a later batch's parameters in this one.
    for (const a of this.arenas) this.freeArenas.push(a.buffer);
    this.arenas = [];
    this.encoder = null;
    this.pending = 0;
    const err = this.gpu.pipelines.takeError();
    if (err) throw err;
  }

  /** Packs named params in the struct's field order (4 bytes each), checking names and ranges. */
  private writeParams(
    where: string,
    fields: readonly (readonly [string, "u32" | "i32" | "f32"])[],
    params: object,
  ): { buffer: GPUBuffer; offset: number; bytes: number } {
    const values = params as Record<string, unknown>;
    for (const key of Object.keys(values)) {
      if (!fields.some(([name]) => name === key)) {
        throw new Error(`${where}: unknown param '${key}' (struct Params has ${fields.map(([n]) => n).join(", ")})`);
      }
    }
    const bytes = Math.max(16, Math.ceil((fields.length * 4) / 16) * 16);
    let arena = this.arenas[this.arenas.length - 1];
    if (!arena || arena.used + bytes > ARENA_BYTES) {
      const buffer =
        this.freeArenas.pop() ??
        this.gpu.device.createBuffer({ size: ARENA_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      arena = { buffer, data: new ArrayBuffer(ARENA_BYTES), used: 0 };
      this.arenas.push(arena);
    }
    const offset = arena.used;
    const view = new DataView(arena.data, offset, bytes);
    fields.forEach(([name, type], i) => {
      const v = values[name];
      if (typeof v !== "number") throw new Error(`${where}: param '${name}' (${type}) is missing or not a number`);
      if (type === "f32") view.setFloat32(i * 4, v, true);
      else if (type === "u32") {
        if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
          throw new Error(`${where}: u32 param '${name}' out of range: ${v}`);
        view.setUint32(i * 4, v, true);
      } else {
        if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) {
          throw new Error(`${where}: i32 param '${name}' out of range: ${v}`);
        }
        view.setInt32(i * 4, v, true);
      }
    });
    arena.used += Math.ceil(bytes / SLOT) * SLOT;
    return { buffer: arena.buffer, offset, bytes };
  }

  private commandEncoder(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.gpu.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) this.pass = this.commandEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }
}
