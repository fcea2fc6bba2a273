// LightningRL's credit assignment: an episode's reward becomes a return for each of its LLM
// calls (transitions). Default: every call gets the episode's reward. Variants: discounted from
// the last call backwards, or only the last call. Each transition then trains as an independent
// single-turn sample with its own prompt (the context the agent actually built for that call).

export type CreditAssignment = "uniform" | "last" | { kind: "discounted"; gamma: number };

/** The return credited to each of `calls` transitions (in call order) of one episode. */
export function creditReturns(reward: number, calls: number, scheme: CreditAssignment = "uniform"): number[] {
  if (calls <= 0) return [];
  if (scheme === "uniform") return Array(calls).fill(reward);
  if (scheme === "last") return Array.from({ length: calls }, (_, i) => (i === calls - 1 ? reward : 0));
  const { gamma } = scheme;
  if (!(gamma > 0 && gamma <= 1)) throw new Error(`discount gamma must be in (0, 1], got ${gamma}`);
  return Array.from({ length: calls }, (_, i) => reward * gamma ** (calls - 1 - i));
}
