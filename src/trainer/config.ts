// LightningRL's options in one place: `AlgorithmConfig` is the `"algorithm"` block of a train
// config (and of `new LightningRL({ algorithm })`), and `resolveAlgorithmConfig` fills in the
// defaults. A new option is one field here plus, where it has a default, one line below.

import type { CreditAssignment } from "./credit.ts";

export interface AsyncConfig {
  /**
   * Most adapter versions a sample may lag behind the adapter being updated; older samples are
   * dropped (and counted). The next steps' rollouts are enqueued before each update starts, so
   * they run while it runs. Must be ≥ 1.
   */
  maxStaleness: number;
  /** Truncated importance sampling: per-token weight min(π_old / π_behaviour, C). Default 2. */
  isTruncation?: number;
  /** Steps whose rollouts are kept in flight ahead of the update. Default maxStaleness. */
  lookahead?: number;
}

export interface AlgorithmConfig {
  /** "lightningrl" (the default) — other names pick other algorithms (see registry.ts). */
  name?: "lightningrl";
  advantage?: "grpo" | "rloo" | "reinforce";
  /** GRPO: divide by the group's reward std (default true). */
  normalizeStd?: boolean;
  /** Rollouts per task (the GRPO group size). Default 4. */
  samplesPerTask?: number;
  /** Tasks per training step. Default 8. */
  tasksPerStep?: number;
  clipLow?: number;
  clipHigh?: number;
  /** k3 KL to the adapter-off policy (0 = off). */
  klCoef?: number;
  /** Entropy bonus coefficient (0 = off); the entropy is logged either way. */
  entropyCoef?: number;
  aggregation?: "token" | "sequence";
  credit?: CreditAssignment;
  /** "aggregate": merge multi-turn calls into one sequence (samples.ts). Default "call". */
  trajectory?: "call" | "aggregate";
  /** "rollout": each rollout's tokens weigh equally in total (samples.ts). Default "token". */
  lossNormalization?: "token" | "rollout";
  /** Temperature assumed for calls that recorded none. Default 1. */
  temperature?: number;
  /** Most tokens per micro-batch (gradient accumulation beyond). Default 4096. */
  tokenBudget?: number;
  /** Recompute activations in backward to save memory. */
  recompute?: boolean;
  /** Multi-agent: train only these agents' calls (metadata.agent / OpenAI `user`). */
  agents?: string[];
  /** Asynchronous (off-policy) training; absent = synchronous, each step's rollouts on its own adapter. */
  async?: AsyncConfig;
}

export type ResolvedAlgorithmConfig = Required<Omit<AlgorithmConfig, "agents" | "credit" | "async" | "name">> &
  Pick<AlgorithmConfig, "agents" | "credit"> & { async: Required<AsyncConfig> | null };

export function resolveAlgorithmConfig(a: AlgorithmConfig = {}): ResolvedAlgorithmConfig {
  return {
    advantage: a.advantage ?? "grpo",
    normalizeStd: a.normalizeStd ?? true,
    samplesPerTask: a.samplesPerTask ?? 4,
    tasksPerStep: a.tasksPerStep ?? 8,
    clipLow: a.clipLow ?? 0.2,
    clipHigh: a.clipHigh ?? 0.28,
    klCoef: a.klCoef ?? 0,
    entropyCoef: a.entropyCoef ?? 0,
    aggregation: a.aggregation ?? "token",
    temperature: a.temperature ?? 1,
    tokenBudget: a.tokenBudget ?? 4096,
    recompute: a.recompute ?? false,
    trajectory: a.trajectory ?? "call",
    lossNormalization: a.lossNormalization ?? "token",
    agents: a.agents,
    credit: a.credit,
    async: a.async ? resolveAsync(a.async) : null,
  };
}

function resolveAsync(a: AsyncConfig): Required<AsyncConfig> {
  const { maxStaleness } = a;
  if (!Number.isInteger(maxStaleness) || maxStaleness < 1)
    throw new Error(`algorithm.async.maxStaleness must be an integer ≥ 1, got ${maxStaleness}`);
  const isTruncation = a.isTruncation ?? 2;
  if (!(isTruncation >= 1)) throw new Error(`algorithm.async.isTruncation must be ≥ 1, got ${isTruncation}`);
  const lookahead = a.lookahead ?? maxStaleness;
  if (!Number.isInteger(lookahead) || lookahead < 1)
    throw new Error(`algorithm.async.lookahead must be an integer ≥ 1, got ${lookahead}`);
  return { maxStaleness, isTruncation, lookahead };
}
