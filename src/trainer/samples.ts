// LightningRL's unified data interface: finished rollouts → training samples. By default every
// LLM call (transition) of an episode is one sample — state = the prompt tokens the agent built
// for that call, action = the response tokens — carrying its call's advantage (credit
// assignment). Trajectory aggregation ("aggregate") instead merges consecutive calls whose prompt
// extends the previous call's prompt + response token for token into one sequence that trains
// only the generated tokens; where the prefix breaks, a new sequence starts. Per-rollout loss
// normalisation reweights tokens so each rollout counts equally (formulas in docs/trainer.md).

import type { Rollout, Store, Transition } from "../store/types.ts";
import { type AdvantageEstimator, computeAdvantages } from "./advantages.ts";
import { type CreditAssignment, creditReturns, type DenseEpisode, denseAdvantages } from "./credit.ts";
import type { PolicySample } from "./grads.ts";
import { attemptRewardEvents } from "./reward-events.ts";

export interface SampleBuildOptions {
  advantage: AdvantageEstimator;
  credit?: CreditAssignment;
  /**
   * Multi-agent rollouts: train only transitions whose metadata `agent` (or request `user`) is in
   * this list. Default: every transition.
   */
  agents?: string[];
  /** Sampling temperature to assume when a transition did not record one. */
  defaultTemperature?: number;
  /** "call": one sample per LLM call (default); "aggregate": merge prefix-extending calls. */
  trajectory?: "call" | "aggregate";
  /**
   * "token": every trained token weighs the same (default); "rollout": each rollout's tokens weigh
   * equally in total whatever its length (with token-mean aggregation; see docs/trainer.md).
   */
  lossNormalization?: "token" | "rollout";
}

export interface TrainingSample extends PolicySample {
  /** Temperature the response was sampled at (logprobs are recomputed at it); greedy → 1. */
  temperature: number;
  rolloutId: string;
  /** The adapter version that generated the response (Transition.adapterVersion); null = unknown/base. */
  adapterVersion?: number | null;
  /** Number of LLM calls whose responses this sample trains (absent: 1). */
  calls?: number;
}

export interface SampleBatch {
  samples: TrainingSample[];
  metrics: {
    rollouts: number;
    rewardMean: number;
    failedRollouts: number;
    droppedGroups: number;
    groups: number;
    transitions: number;
    skippedTransitions: number;
    /** Calls appended to the previous call's sequence by trajectory aggregation. */
    mergedCalls: number;
  };
}

/** Reads each succeeded rollout's final-attempt transitions and turns them into samples. */
export async function buildSamples(
  store: Store,
  rollouts: Rollout[],
  options: SampleBuildOptions,
): Promise<SampleBatch> {
  // Options come from JSON configs too: a misspelt choice must not silently mean the default.
  if (options.trajectory !== undefined && options.trajectory !== "call" && options.trajectory !== "aggregate")
    throw new Error(`trajectory must be "call" or "aggregate", got ${JSON.stringify(options.trajectory)}`);
  if (
    options.lossNormalization !== undefined &&
    options.lossNormalization !== "token" &&
    options.lossNormalization !== "rollout"
  )
    throw new Error(`lossNormalization must be "token" or "rollout", got ${JSON.stringify(options.lossNormalization)}`);
  const finished = rollouts.filter((r) => r.status === "succeeded" && r.finalReward !== null);
  const failedRollouts = rollouts.length - finished.length;
  const episodes = finished.map((r) => ({ group: r.groupId ?? r.id, reward: r.finalReward! }));
  const credit = options.credit ?? "uniform";
  const attempts = await Promise.all(
    finished.map((r) => (r.currentAttemptId ? store.getTransitions({ attemptId: r.currentAttemptId }) : [])),
  );
  // Per rollout: one advantage per call of the attempt (all calls), or null (dropped / no signal).
  let perCall: (number[] | null)[];
  let droppedGroups: number;
  let groups: number;
  if (typeof credit === "object" && credit.kind === "dense") {
    if (options.advantage.kind !== "grpo")
      throw new Error(
        `dense credit normalises over GRPO groups; advantage must be "grpo", got ${options.advantage.kind}`,
      );
    const dense: DenseEpisode[] = await Promise.all(
      finished.map(async (r, i) => ({
        group: r.groupId ?? r.id,
        calls: attempts[i].length,
        events: r.currentAttemptId ? await attemptRewardEvents(store, r.currentAttemptId, attempts[i]) : [],
      })),
    );
    const result = denseAdvantages(dense, credit, options.advantage);
    ({ advantages: perCall, droppedGroups, groups } = result);
  } else {
    const adv = computeAdvantages(episodes, options.advantage);
    ({ droppedGroups, groups } = adv);
    // The scheme spreads the episode advantage over the calls that are trained (as before aggregation).
    perCall = finished.map((_, i) => {
      const a = adv.advantages[i];
      if (a === null) return null;
      const chosen = attempts[i].map((t) => selected(t, options.agents));
      const returns = creditReturns(1, chosen.filter(Boolean).length, credit);
      let k = 0;
      return chosen.map((c) => (c ? a * returns[k++] : 0));
    });
  }
  const samples: TrainingSample[] = [];
  let transitions = 0;
  let skipped = 0;
  let mergedCalls = 0;
  const defaultTemperature = options.defaultTemperature ?? 1;
  for (let i = 0; i < finished.length; i++) {
    const advantages = perCall[i];
    if (advantages === null || !finished[i].currentAttemptId) continue;
    const calls = attempts[i]
      .map((t, k) => ({ t, advantage: advantages[k] }))
      .filter(({ t }) => selected(t, options.agents));
    transitions += calls.length;
    const built: TrainingSample[] = [];
    for (const { t, advantage } of calls) {
      const sample = toSample(t, advantage, finished[i].id, defaultTemperature);
      if (!sample) skipped++;
      else if (options.trajectory === "aggregate" && built.length > 0 && extend(built[built.length - 1], sample))
        mergedCalls++;
      else built.push(sample);
    }
    samples.push(...built);
  }
  if (options.lossNormalization === "rollout") normalizePerRollout(samples);
  const rewardMean = episodes.length ? episodes.reduce((a, e) => a + e.reward, 0) / episodes.length : 0;
  return {
    samples,
    metrics: {
      rollouts: rollouts.length,
      rewardMean,
      failedRollouts,
      droppedGroups,
      groups,
      transitions,
      skippedTransitions: skipped,
      mergedCalls,
    },
  };
}

/**
 * Appends `next` (one call) to `seq` when `next`'s prompt starts with all of `seq`'s tokens (the
 * previous prompt + response) and both were sampled at one temperature: the prompt tokens beyond
 * them (tool results, user turns, template tokens such as `<|im_end|>\n`) are masked, the response
 * is trained with its own old logprobs and advantage. Returns false (nothing changed) otherwise.
 */
export function extend(seq: TrainingSample, next: TrainingSample): boolean {
  if (seq.temperature !== next.temperature || next.tokens.length <= seq.tokens.length) return false;
  const promptLength = next.lossMask.indexOf(1);
  if (promptLength < seq.tokens.length) return false;
  for (let p = 0; p < seq.tokens.length; p++) if (seq.tokens[p] !== next.tokens[p]) return false;
  const at = seq.tokens.length;
  if (!seq.tokenAdvantages && seq.advantage !== next.advantage)
    seq.tokenAdvantages = seq.lossMask.map((m) => (m > 0 ? seq.advantage : 0));
  seq.tokens.push(...next.tokens.slice(at));
  seq.lossMask.push(...next.lossMask.slice(at));
  seq.oldLogprobs.push(...next.oldLogprobs.slice(at));
  if (seq.tokenAdvantages)
    seq.tokenAdvantages.push(...next.lossMask.slice(at).map((m) => (m > 0 ? next.advantage : 0)));
  seq.calls = (seq.calls ?? 1) + 1;
  // A merged sequence is as stale as its oldest call (async training drops by staleness).
  const version = next.adapterVersion;
  if (version !== null && version !== undefined && (seq.adapterVersion ?? Number.POSITIVE_INFINITY) > version)
    seq.adapterVersion = version;
  return true;
}

/**
 * Per-rollout normalisation through the loss weights: rollout r with N_r trained tokens gets
 * weight c_r = M / (R · N_r) on each of them (M = Σ_r N_r, R = rollouts with trained tokens), so
 * the token-mean loss (1/Σ w) Σ w_t ℓ_t becomes (1/R) Σ_r (1/N_r) Σ_{t∈r} ℓ_t and the weights
 * still sum to M (micro-batch accumulation by token share stays exact).
 */
export function normalizePerRollout(samples: TrainingSample[]): void {
  const perRollout = new Map<string, number>();
  for (const s of samples) {
    const n = s.lossMask.reduce((a, b) => a + b, 0);
    perRollout.set(s.rolloutId, (perRollout.get(s.rolloutId) ?? 0) + n);
  }
  const counts = [...perRollout.values()].filter((n) => n > 0);
  const total = counts.reduce((a, b) => a + b, 0);
  for (const s of samples) {
    const n = perRollout.get(s.rolloutId)!;
    if (n === 0) continue;
    const c = total / (counts.length * n);
    s.lossMask = s.lossMask.map((m) => m * c);
  }
}

function selected(t: Transition, agents: string[] | undefined): boolean {
  if (!agents) return true;
  const meta = t.metadata ?? {};
  const name = (meta.agent ?? (meta.request as { user?: string } | undefined)?.user ?? null) as string | null;
  return name !== null && agents.includes(name);
}

/** One transition as a sample; null when it lacks the token data RL needs (e.g. an upstream without ids). */
function toSample(
  t: Transition,
  advantage: number,
  rolloutId: string,
  defaultTemperature: number,
): TrainingSample | null {
  if (t.promptIds.length === 0 || t.responseIds.length === 0 || !t.responseLogprobs) return null;
  const sampling = (t.metadata?.sampling ?? null) as { temperature?: number } | null;
  const recorded = sampling?.temperature ?? defaultTemperature;
  const temperature = recorded > 0 ? recorded : 1;
  const prompt = Array.from(t.promptIds);
  const response = Array.from(t.responseIds);
  return {
    tokens: [...prompt, ...response],
    lossMask: [...prompt.map(() => 0), ...response.map(() => 1)],
    oldLogprobs: [...prompt.map(() => 0), ...samplingLogprobs(t)],
    advantage,
    temperature,
    rolloutId,
    adapterVersion:
      t.adapterVersion === null || Number.isNaN(Number(t.adapterVersion)) ? null : Number(t.adapterVersion),
    calls: 1,
  };
}

/**
 * Splits samples into micro-batches of at most `tokenBudget` tokens, one temperature each (the
 * logprob recomputation runs at one temperature per pass). A sample longer than the budget gets a
 * micro-batch of its own.
 */
export function microBatches(samples: TrainingSample[], tokenBudget: number): TrainingSample[][] {
  const byTemperature = new Map<number, TrainingSample[]>();
  for (const s of samples) {
    const list = byTemperature.get(s.temperature);
    if (list) list.push(s);
    else byTemperature.set(s.temperature, [s]);
  }
  return [...byTemperature.values()].flatMap((list) => packByTokens(list, tokenBudget));
}

/** Consecutive runs of at most `tokenBudget` tokens, in order (a longer sequence goes alone). */
export function packByTokens<T extends { tokens: number[] }>(items: T[], tokenBudget: number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let tokens = 0;
  for (const s of items) {
    if (current.length > 0 && tokens + s.tokens.length > tokenBudget) {
      out.push(current);
      current = [];
      tokens = 0;
    }
    current.push(s);
    tokens += s.tokens.length;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/**
 * The sampling-time logprobs the PPO ratio divides by. Constrained decoding (structured output)
 * records logprobs under the masked distribution, while the trainer recomputes them unmasked;
 * such transitions also carry the unmasked ones (metadata.unmaskedLogprobs), which are used so the
 * ratio compares like with like and starts at 1 (see docs/trainer.md).
 */
export function samplingLogprobs(t: Transition): number[] {
  const recorded = Array.from(t.responseLogprobs ?? []);
  const unmasked = t.metadata?.unmaskedLogprobs;
  if (
    t.metadata?.logprobs === "masked" &&
    Array.isArray(unmasked) &&
    unmasked.length === recorded.length &&
    unmasked.every((x) => typeof x === "number")
  ) {
    // Rounded to f32 like responseLogprobs, so both paths see the same precision.
    return (unmasked as number[]).map((x) => Math.fround(x));
  }
  return recorded;
}
