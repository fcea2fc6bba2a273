// What keeps the demo's result robust across seeds, apart from the Trainer: the per-operation
// balanced order of training tasks (every step sees every operation, so an operation that is
// already right keeps its share of the updates and of the KL anchor), the selection split (tasks
// from their own seed, disjoint from both training and the reported held-out split) and the
// choice of the adapter to keep from the validations of that split alone.

import type { Tensor } from "../gpu/tensor.ts";
import { readAll } from "../gpu/tensor.ts";
import type { LoraAdapter } from "../model/lora.ts";
import { type ArithmeticTask, makeTasks, OPERATIONS, type Operation, seededRandom } from "./tasks.ts";

/** Seed of the selection split (train uses 1001, the held-out split 2002, the SFT corpus another). */
export const SELECT_SEED = 3003;

/** `n` selection tasks, operations in rotation (ids `select-i`). */
export function selectionTasks(n: number): ArithmeticTask[] {
  return makeTasks(SELECT_SEED, n, "select");
}

/**
 * The training tasks in a seeded order where each run of `OPERATIONS.length` consecutive tasks
 * holds one task of every operation (each operation's tasks shuffled on their own, and the order of
 * operations within each run shuffled too), so a step of 8 tasks has two of each operation.
 */
export function balancedOrder(tasks: ArithmeticTask[], seed: number): ArithmeticTask[] {
  const next = seededRandom(seed * 7919 + 17);
  const shuffle = <T>(items: T[]): T[] => {
    const out = items.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  };
  const byOp = OPERATIONS.map((op) => shuffle(tasks.filter((t) => t.op === op)));
  const rounds = Math.max(...byOp.map((l) => l.length));
  const out: ArithmeticTask[] = [];
  for (let r = 0; r < rounds; r++) for (const list of shuffle(byOp)) if (r < list.length) out.push(list[r]);
  return out;
}

/** Accuracy overall and per operation of some validation results (a failed rollout is wrong). */
export interface SplitAccuracy {
  accuracy: number;
  tasks: number;
  byOperation: Record<Operation, number>;
}

export function splitAccuracy(results: { task: ArithmeticTask; reward: number | null }[]): SplitAccuracy {
  const byOperation = {} as Record<Operation, number>;
  for (const op of OPERATIONS) {
    const ofOp = results.filter((r) => r.task.op === op);
    byOperation[op] = ofOp.length ? ofOp.filter((r) => r.reward === 1).length / ofOp.length : 0;
  }
  const correct = results.filter((r) => r.reward === 1).length;
  return { accuracy: results.length ? correct / results.length : 0, tasks: results.length, byOperation };
}

/** One validation of the selection split and the adapter then. */
export interface Candidate {
  step: number;
  selection: SplitAccuracy | null;
  /** The adapter's tensors at this validation (null when nothing is kept). */
  snapshot: Promise<(Float32Array | Uint32Array | Int32Array)[]> | null;
}

/**
 * Copies the adapter's tensors now. The copy is recorded and submitted before this returns (only
 * the download is awaited), so updates queued later cannot leak into it.
 */
export function snapshotAdapter(adapter: LoraAdapter): Candidate["snapshot"] {
  return readAll(adapter.parameters().map((p) => p.tensor));
}

/** Writes a snapshot back into the adapter's tensors (the serving adapter changes in place). */
export async function restoreAdapter(adapter: LoraAdapter, snapshot: NonNullable<Candidate["snapshot"]>) {
  const data = await snapshot;
  const tensors: Tensor[] = adapter.parameters().map((p) => p.tensor);
  if (data.length !== tensors.length) throw new Error("snapshot does not match the adapter");
  for (const [i, t] of tensors.entries()) t.write(data[i]);
}

/**
 * The validation to keep, judged on the selection split only (never on the held-out split that is
 * reported): among the validations where no operation is below its accuracy before training, the
 * one with the highest selection accuracy, the later one on ties. Without a selection split: the
 * last validation, as plain training would.
 */
export function chooseCandidate(candidates: Candidate[]): Candidate {
  if (candidates.length === 0) throw new Error("no validation to choose from");
  const first = candidates[0].selection;
  if (!first) return candidates[candidates.length - 1];
  let best = candidates[0];
  for (const c of candidates.slice(1)) {
    const s = c.selection!;
    const keepsEvery = OPERATIONS.every((op) => s.byOperation[op] >= first.byOperation[op]);
    if (keepsEvery && s.accuracy >= best.selection!.accuracy) best = c;
  }
  return best;
}
