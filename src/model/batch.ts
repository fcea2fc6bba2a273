// Packing variable-length sequences into one batch: tokens back to back, positions restarting at
// 0 for each sequence, and each token's sequence start (the causal mask's left edge). No padding
// tokens are computed; the attention kernel never looks across a sequence boundary.

import type { Gpu } from "../gpu/device.ts";
import type { Scope } from "../gpu/scope.ts";
import type { PackedBatch } from "./transformer.ts";

export interface PackedHost {
  tokenIds: Uint32Array;
  positions: Uint32Array;
  seqStart: Uint32Array;
  /** Offset of each sequence's first token in the packed batch. */
  offsets: number[];
}

/** Packs sequences on the CPU; token ids are checked against the vocabulary. */
export function packSequences(sequences: readonly (readonly number[])[], vocabSize: number): PackedHost {
  if (sequences.length === 0) throw new Error("cannot pack an empty batch");
  const total = sequences.reduce((n, s) => n + s.length, 0);
  const tokenIds = new Uint32Array(total);
  const positions = new Uint32Array(total);
  const seqStart = new Uint32Array(total);
  const offsets: number[] = [];
  let at = 0;
  sequences.forEach((seq, s) => {
    if (seq.length === 0) throw new Error(`sequence ${s} is empty`);
    offsets.push(at);
    for (let i = 0; i < seq.length; i++) {
      const id = seq[i];
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new RangeError(`sequence ${s}, token ${i}: id ${id} is outside the vocabulary [0, ${vocabSize})`);
      }
      tokenIds[at + i] = id;
      positions[at + i] = i;
      seqStart[at + i] = at;
    }
    at += seq.length;
  });
  return { tokenIds, positions, seqStart, offsets };
}

/** Uploads a packed batch; the tensors are tracked by `scope`. */
export function uploadBatch(gpu: Gpu, host: PackedHost, scope: Scope): PackedBatch {
  const n = host.tokenIds.length;
  const ends = [...host.offsets.slice(1), n];
  const longest = Math.max(...host.offsets.map((o, i) => ends[i] - o));
  return {
    longest,
    tokens: scope.track(gpu.tensor([n], "u32", host.tokenIds)),
    tokenIds: host.tokenIds,
    positions: scope.track(gpu.tensor([n], "u32", host.positions)),
    seqStart: scope.track(gpu.tensor([n], "u32", host.seqStart)),
  };
}
