// mulberry32: a tiny seeded uniform [0, 1) source that gives the same sequence on every platform.
// Everything seeded in Fulgur (task sets, LoRA init, tiny models, batch order) draws from it.

/** A function returning the next uniform number in [0, 1) of the sequence for `seed`. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
