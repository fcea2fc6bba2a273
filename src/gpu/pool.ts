// A pool of GPU storage buffers: freed buffers are kept by size class and handed out again,
// so the engine's per-step temporaries cost no allocation after warm-up.
//
// Reuse is safe without waiting for the GPU: WebGPU executes dispatches and queue writes in
// submission order, so a later user of a recycled buffer always runs after the earlier one.
// Destroying is not: a freed buffer may still be bound in the batch not yet submitted, so
// trim() first submits it (a destroyed buffer in a submit is a validation error, and the
// recorded work would be lost).

export interface PooledBuffer {
  readonly buffer: GPUBuffer;
  /** The size class (bytes) the buffer was allocated with. */
  readonly capacity: number;
}

/** Rounds a request up to a size class: 256-byte steps below 64 KiB, then 1/8 of a power of two. */
export function sizeClass(bytes: number): number {
  if (bytes <= 65536) return Math.max(256, Math.ceil(bytes / 256) * 256);
  const pow = 2 ** Math.floor(Math.log2(bytes));
  const step = pow / 8;
  return Math.ceil(bytes / step) * step;
}

export class BufferPool {
  private readonly device: GPUDevice;
  private readonly submitPending: () => void;
  private readonly free = new Map<number, GPUBuffer[]>();
  private live = 0;
  private liveBytes = 0;
  private freeBytes = 0;
  /** Highest bytes held at once (live + free): the pool's share of peak GPU memory. */
  peakBytes = 0;

  /** `submitPending` submits recorded-but-unsubmitted work; trim() calls it before destroying. */
  constructor(device: GPUDevice, submitPending: () => void) {
    this.device = device;
    this.submitPending = submitPending;
  }

  acquire(bytes: number): PooledBuffer {
    const capacity = sizeClass(bytes);
    const list = this.free.get(capacity);
    let buffer = list?.pop();
    if (buffer) {
      this.freeBytes -= capacity;
    } else {
      buffer = this.device.createBuffer({
        size: capacity,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
    }
    this.live++;
    this.liveBytes += capacity;
    this.peakBytes = Math.max(this.peakBytes, this.liveBytes + this.freeBytes);
    return { buffer, capacity };
  }

  release(pooled: PooledBuffer): void {
    const list = this.free.get(pooled.capacity);
    if (list) list.push(pooled.buffer);
    else this.free.set(pooled.capacity, [pooled.buffer]);
    this.live--;
    this.liveBytes -= pooled.capacity;
    this.freeBytes += pooled.capacity;
  }

  /** Destroys every free buffer (live ones stay with their tensors). */
  trim(): void {
    if (this.freeBytes > 0) this.submitPending();
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.freeBytes = 0;
  }

  stats(): { liveBuffers: number; liveBytes: number; freeBytes: number; peakBytes: number } {
    return { liveBuffers: this.live, liveBytes: this.liveBytes, freeBytes: this.freeBytes, peakBytes: this.peakBytes };
  }
}
