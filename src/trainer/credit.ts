// LightningRL's credit assignment: an episode's reward becomes a return for each of its LLM
// calls (transitions). Default: every call gets the episode's reward. Variants: discounted from
// the last call backwards, only the last call, or dense: per-call advantages from the rewards the
// agent emitted along the way (each attributed to a call), weighted by reward dimension,
// normalised across the GRPO group and discounted backwards (formulas in docs/trainer.md).

export type CreditAssignment = "uniform" | "last" | { kind: "discounted"; gamma: number } | DenseCredit;

/** Dense credit: intermediate rewards (and their `dimensions`) give per-call advantages. */
export interface DenseCredit {
  kind: "dense";
  /**
   * Weights of reward dimensions: a reward's score is Σ_d w_d · dimensions[d] (a dimension it lacks
   * counts 0). A reward recorded without dimensions scores its value. Default: every reward's value.
   */
  dimensions?: Record<string, number>;
  /** Discount per call, in (0, 1]. Default 1. */
  gamma?: number;
}

/** The return credited to each of `calls` transitions (in call order) of one episode. */
export function creditReturns(
  reward: number,
  calls: number,
  scheme: Exclude<CreditAssignment, DenseCredit> = "uniform",
): number[] {
  if (calls <= 0) return [];
  if (scheme === "uniform") return Array(calls).fill(reward);
  if (scheme === "last") return Array.from({ length: calls }, (_, i) => (i === calls - 1 ? reward : 0));
  const { gamma } = scheme;
  checkGamma(gamma);
  return Array.from({ length: calls }, (_, i) => reward * gamma ** (calls - 1 - i));
}

function checkGamma(gamma: number): void {
  if (!(gamma > 0 && gamma <= 1)) throw new Error(`discount gamma must be in (0, 1], got ${gamma}`);
}

/** One reward of an episode, attributed to the call (index in call order) it rewards. */
export interface RewardEvent {
  call: number;
  value: number;
  dimensions: Record<string, number> | null;
}

export interface DenseEpisode {
  /** GRPO group. */
  group: string;
  /** Number of calls (transitions) of the episode. */
  calls: number;
  /** Its rewards: intermediate ones at their calls, the final one at the last call. */
  events: RewardEvent[];
}

export interface DenseResult {
  /** Per episode, one advantage per call; null for episodes of dropped groups. */
  advantages: (number[] | null)[];
  droppedGroups: number;
  groups: number;
}

/** A reward's scalar under the dimension weights (see DenseCredit.dimensions). */
export function rewardScore(event: Omit<RewardEvent, "call">, weights?: Record<string, number>): number {
  if (!weights || !event.dimensions) return event.value;
  let score = 0;
  for (const [name, w] of Object.entries(weights)) score += w * (event.dimensions[name] ?? 0);
  return score;
}

/**
 * Per-call advantages from rewards along the episode (process-supervised GRPO, as in
 * DeepSeekMath §4.1.3, with a discount): every reward event e of a group's episodes is scored
 * (s_e, `rewardScore`) and normalised over the group's events, ŝ_e = (s_e − mean) / (std + eps)
 * (unbiased std; std + eps replaced by 1 when normalizeStd is false); a call's reward is the sum
 * of its events' ŝ, a_k = Σ_{e at k} ŝ_e (0 for a call without one); its advantage is the
 * discounted return A_k = Σ_{j ≥ k} γ^{j−k} a_j. Groups with fewer than two episodes or all scores
 * equal carry no signal and are dropped. With only final rewards this is GRPO's advantage
 * discounted back from the last call (γ = 1: the same advantage on every call).
 */
export function denseAdvantages(
  episodes: DenseEpisode[],
  credit: DenseCredit,
  options: { normalizeStd?: boolean; eps?: number } = {},
): DenseResult {
  const gamma = credit.gamma ?? 1;
  checkGamma(gamma);
  for (const w of Object.values(credit.dimensions ?? {}))
    if (!Number.isFinite(w)) throw new Error(`dimension weights must be finite, got ${w}`);
  const byGroup = new Map<string, number[]>();
  episodes.forEach((e, i) => {
    for (const ev of e.events) {
      if (!(Number.isInteger(ev.call) && ev.call >= 0 && ev.call < e.calls))
        throw new Error(`reward event at call ${ev.call} outside the episode's ${e.calls} calls`);
      if (!Number.isFinite(ev.value)) throw new Error(`reward must be finite, got ${ev.value}`);
    }
    const list = byGroup.get(e.group);
    if (list) list.push(i);
    else byGroup.set(e.group, [i]);
  });
  const advantages: (number[] | null)[] = episodes.map(() => null);
  let dropped = 0;
  for (const members of byGroup.values()) {
    const scores = members.map((i) => episodes[i].events.map((ev) => rewardScore(ev, credit.dimensions)));
    const flat = scores.flat();
    const mean = flat.reduce((a, b) => a + b, 0) / Math.max(flat.length, 1);
    const variance = flat.reduce((a, s) => a + (s - mean) ** 2, 0) / Math.max(flat.length, 1);
    if (members.length < 2 || flat.length < 2 || variance === 0) {
      dropped++;
      continue;
    }
    const std = Math.sqrt((variance * flat.length) / (flat.length - 1));
    const denom = options.normalizeStd === false ? 1 : std + (options.eps ?? 1e-6);
    members.forEach((i, m) => {
      const e = episodes[i];
      const perCall = new Array<number>(e.calls).fill(0);
      e.events.forEach((ev, j) => {
        perCall[ev.call] += (scores[m][j] - mean) / denom;
      });
      const returns = new Array<number>(e.calls).fill(0);
      let running = 0;
      for (let k = e.calls - 1; k >= 0; k--) {
        running = perCall[k] + gamma * running;
        returns[k] = running;
      }
      advantages[i] = returns;
    });
  }
  return { advantages, droppedGroups: dropped, groups: byGroup.size };
}
