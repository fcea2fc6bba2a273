// LightningRL's unified data interface: finished rollouts → single-turn training samples. Every
// LLM call (transition) of an episode is one sample — state = the prompt tokens the agent built
// for that call, action = the response tokens — carrying its episode's advantage, shaped by the
// credit assignment. Turns are never concatenated: each call keeps the context the agent gave it.

import type { Rollout, Store, Transition } from "../store/types.ts";
import { type AdvantageEstimator, computeAdvantages } from "./advantages.ts";
import { type CreditAssignment, creditReturns } from "./credit.ts";
import type { PolicySample } from "./grads.ts";

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
}

export interface TrainingSample extends PolicySample {
  /** Temperature the response was sampled at (logprobs are recomputed at it); greedy → 1. */
  temperature: number;
  rolloutId: string;
  /** The adapter version that generated the response (Transition.adapterVersion); null = unknown/base. */
  adapterVersion?: number | null;
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
  };
}

/** Reads each succeeded rollout's final-attempt transitions and turns them into samples. */
export async function buildSamples(
  store: Store,
  rollouts: Rollout[],
  options: SampleBuildOptions,
): Promise<SampleBatch> {
  const finished = rollouts.filter((r) => r.status === "succeeded" && r.finalReward !== null);
  const failedRollouts = rollouts.length - finished.length;
  const episodes = finished.map((r) => ({ group: r.groupId ?? r.id, reward: r.finalReward! }));
  const adv = computeAdvantages(episodes, options.advantage);
  const samples: TrainingSample[] = [];
  let transitions = 0;
  let skipped = 0;
  for (let i = 0; i < finished.length; i++) {
    const advantage = adv.advantages[i];
    const rollout = finished[i];
    if (advantage === null || !rollout.currentAttemptId) continue;
    const calls = (await store.getTransitions({ attemptId: rollout.currentAttemptId })).filter((t) =>
      selected(t, options.agents),
    );
    transitions += calls.length;
    const returns = creditReturns(1, calls.length, options.credit ?? "uniform");
    calls.forEach((t, k) => {
      const sample = toSample(t, advantage * returns[k], rollout.id, options.defaultTemperature ?? 1);
      if (sample) samples.push(sample);
      else skipped++;
    });
  }
  const rewardMean = episodes.length ? episodes.reduce((a, e) => a + e.reward, 0) / episodes.length : 0;
  return {
    samples,
    metrics: {
      rollouts: rollouts.length,
      rewardMean,
      failedRollouts,
      droppedGroups: adv.droppedGroups,
      groups: adv.groups,
      transitions,
      skippedTransitions: skipped,
    },
  };
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
