// Tensor lifetimes for a step of work: temporaries are tracked as they are made and returned to
// the pool together when the step's work is recorded. Safe without waiting for the GPU, because
// a recycled buffer's next user is always recorded (and so executed) after its last reader.

import type { Tensor } from "./tensor.ts";

export class Scope {
  private readonly tensors: Tensor[] = [];

  /** Tracks `t` for disposal at `dispose()`; returns it for chaining. */
  track<T extends Tensor>(t: T): T {
    this.tensors.push(t);
    return t;
  }

  /** Stops tracking `t` (it outlives the scope, e.g. a saved activation). */
  keep<T extends Tensor>(t: T): T {
    const i = this.tensors.lastIndexOf(t);
    if (i >= 0) this.tensors.splice(i, 1);
    return t;
  }

  dispose(): void {
    for (const t of this.tensors) t.dispose();
    this.tensors.length = 0;
  }
}
