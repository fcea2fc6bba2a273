// Advantages from episode rewards. GRPO: rollouts of the same task form a group; each reward is
// centred on its group's mean (optionally divided by the group's std). RLOO: centred on the mean
// of the *other* members (leave-one-out). REINFORCE: centred on a running baseline. Groups whose
// rewards are all equal carry no signal under GRPO/RLOO and are dropped (and counted).

export type AdvantageEstimator =
  | { kind: "grpo"; normalizeStd?: boolean; eps?: number }
  | { kind: "rloo" }
  | { kind: "reinforce"; baseline: RunningBaseline };

export interface Episode {
  /** GRPO/RLOO group (e.g. the task's group id). */
  group: string;
  reward: number;
}

export interface AdvantageResult {
  /** One per episode, in input order; null for episodes of dropped groups. */
  advantages: (number | null)[];
  droppedGroups: number;
  groups: number;
}

/** An exponential moving average of rewards, for REINFORCE. */
export class RunningBaseline {
  value: number | null = null;
  constructor(readonly decay = 0.9) {}
  update(rewards: number[]): void {
    if (rewards.length === 0) return;
    const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
    this.value = this.value === null ? mean : this.decay * this.value + (1 - this.decay) * mean;
  }
}

/** Computes advantages for a batch of finished episodes. */
export function computeAdvantages(episodes: Episode[], estimator: AdvantageEstimator): AdvantageResult {
  for (const e of episodes) if (!Number.isFinite(e.reward)) throw new Error(`reward must be finite, got ${e.reward}`);
  if (estimator.kind === "reinforce") {
    const b = estimator.baseline.value ?? 0;
    const advantages = episodes.map((e) => e.reward - b);
    estimator.baseline.update(episodes.map((e) => e.reward));
    return { advantages, droppedGroups: 0, groups: episodes.length };
  }
  const byGroup = new Map<string, number[]>();
  episodes.forEach((e, i) => {
    const list = byGroup.get(e.group);
    if (list) list.push(i);
    else byGroup.set(e.group, [i]);
  });
  const advantages: (number | null)[] = episodes.map(() => null);
  let dropped = 0;
  for (const members of byGroup.values()) {
    const rewards = members.map((i) => episodes[i].reward);
    const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
    const variance = rewards.reduce((a, r) => a + (r - mean) ** 2, 0) / rewards.length;
    if (members.length < 2 || variance === 0) {
      dropped++;
      continue;
    }
    if (estimator.kind === "rloo") {
      const sum = rewards.reduce((a, b) => a + b, 0);
      members.forEach((i, j) => {
        advantages[i] = rewards[j] - (sum - rewards[j]) / (members.length - 1);
      });
    } else {
      // Unbiased std like GRPO implementations (torch.std); eps guards tiny spreads.
      const std = Math.sqrt((variance * rewards.length) / (rewards.length - 1));
      const denom = estimator.normalizeStd === false ? 1 : std + (estimator.eps ?? 1e-6);
      members.forEach((i, j) => {
        advantages[i] = (rewards[j] - mean) / denom;
      });
    }
  }
  return { advantages, droppedGroups: dropped, groups: byGroup.size };
}
