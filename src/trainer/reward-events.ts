// Which LLM call each reward of an attempt rewards, read back from the store for dense credit.
// An agent's ctx.emitReward writes a "reward" span and a reward row pointing at it; the proxy
// writes an "llm" span (attributes.callId) per call before answering it. A reward names its call
// explicitly (span attribute `reward.call` = the completion id the agent got back), or else it
// rewards the latest call answered before it in the attempt's trace order (span seq).

import type { Reward, Span, Store, Transition } from "../store/types.ts";
import type { RewardEvent } from "./credit.ts";

/** The reward span attribute naming the call (its completion id, transition metadata.callId). */
export const REWARD_CALL_ATTRIBUTE = "reward.call";

/**
 * The attempt's rewards as events over `calls` (its transitions, in recording order): the final
 * reward at the last call, every earlier on-time reward at its call. The runner's copy of the
 * last emitted reward (a finish row without span, same value, written when the agent returns
 * nothing) is not a second reward: that emitted reward is the final one. Empty when there are
 * no calls or no rewards.
 */
export async function attemptRewardEvents(
  store: Store,
  attemptId: string,
  calls: Transition[],
): Promise<RewardEvent[]> {
  if (calls.length === 0) return [];
  const rewards = (await store.getRewards({ attemptId })).filter((r) => !r.late);
  if (rewards.length === 0) return [];
  const spans = rewards.some((r) => r.spanId !== null) ? await store.getSpans({ attemptId }) : [];
  return rewardEvents(rewards, spans, calls);
}

/** The pure part of attemptRewardEvents (rewards on time, in insertion order). */
export function rewardEvents(rewards: Reward[], spans: Span[], calls: Transition[]): RewardEvent[] {
  if (calls.length === 0 || rewards.length === 0) return [];
  const rows = [...rewards];
  const last = rows[rows.length - 1];
  const prev = rows[rows.length - 2];
  if (last.spanId === null && prev && prev.spanId !== null && prev.value === last.value) rows.pop();
  const byCallId = new Map<string, number>();
  calls.forEach((t, i) => {
    const id = t.metadata?.callId;
    if (typeof id === "string" && !byCallId.has(id)) byCallId.set(id, i);
  });
  const bySpanId = new Map(spans.map((s) => [s.spanId, s]));
  // The llm spans in trace order, with the call index each belongs to.
  const llm = spans
    .filter((s) => s.kind === "llm" && typeof s.attributes.callId === "string")
    .map((s) => ({ seq: s.seq, call: byCallId.get(s.attributes.callId as string) }))
    .filter((x): x is { seq: number; call: number } => x.call !== undefined)
    .sort((a, b) => a.seq - b.seq);
  const finalCall = calls.length - 1;
  return rows.map((r, i) => {
    const event = { value: r.value, dimensions: r.dimensions };
    if (i === rows.length - 1) return { ...event, call: finalCall };
    const span = r.spanId === null ? undefined : bySpanId.get(r.spanId);
    if (!span) return { ...event, call: finalCall };
    const named = span.attributes[REWARD_CALL_ATTRIBUTE];
    if (typeof named === "string" && byCallId.has(named)) return { ...event, call: byCallId.get(named)! };
    let call = 0;
    for (const x of llm) if (x.seq < span.seq) call = x.call;
    return { ...event, call };
  });
}
