// Trajectory aggregation and per-rollout loss normalisation, checked exactly on hand-built
// multi-turn transitions in a real store: calls whose prompt extends the previous prompt +
// response merge into one sequence (only generated tokens trained, with their own old logprobs
// and advantages); a broken prefix or another temperature starts a new sequence; constrained
// calls keep their unmasked old logprobs; rollout weights are M / (R · N_r).
import { describe, expect, it } from "vitest";
import { openStore } from "../../src/store/libsql.ts";
import type { Store, TransitionInput } from "../../src/store/types.ts";
import { ppoLoss } from "../../src/trainer/ppo.ts";
import { buildSamples, microBatches, type TrainingSample } from "../../src/trainer/samples.ts";

type Call = Omit<TransitionInput, "attemptId">;

/** A finished GRPO group in a real store: one rollout per entry, its calls then its reward. */
async function group(store: Store, episodes: { calls: Call[]; reward: number }[]) {
  const rollouts = await store.enqueueRollouts(episodes.map(() => ({ input: { q: 1 }, groupId: "g" })));
  for (const e of episodes) {
    const claim = (await store.claimRollout({ workerId: "w" }))!;
    await store.addTransitions(e.calls.map((c) => ({ ...c, attemptId: claim.attempt.id })));
    await store.finishAttempt(claim.attempt.id, { status: "succeeded", reward: e.reward });
  }
  return store.waitForRollouts(
    rollouts.map((r) => r.id),
    { timeoutMs: 1000 },
  );
}

// A 3-turn tool agent: turn 2's prompt = turn 1's prompt + response + template/tool tokens;
// turn 3's prompt re-renders the history (token 30 instead of 3), so it does not extend turn 2.
const turn1: Call = { promptIds: [1, 2, 3], responseIds: [10, 11], responseLogprobs: [-0.1, -0.2] };
const turn2: Call = {
  promptIds: [1, 2, 3, 10, 11, 90, 91, 5, 6],
  responseIds: [12, 13, 14],
  responseLogprobs: [-0.3, -0.4, -0.5],
};
const turn3: Call = {
  promptIds: [1, 2, 30, 10, 11, 90, 91, 5, 6, 12, 13, 14, 90, 7],
  responseIds: [15],
  responseLogprobs: [-0.6],
};

describe("trajectory aggregation", () => {
  it("merges prefix-extending calls into one sequence and splits where the prefix breaks", async () => {
    const store = await openStore(":memory:");
    const finished = await group(store, [
      { calls: [turn1, turn2, turn3], reward: 1 },
      { calls: [turn1, turn2, turn3], reward: 0 },
    ]);
    const options = { advantage: { kind: "grpo" as const, normalizeStd: false } };
    const perCall = await buildSamples(store, finished, options);
    expect(perCall.samples.length).toBe(6);
    expect(perCall.metrics.mergedCalls).toBe(0);
    const agg = await buildSamples(store, finished, { ...options, trajectory: "aggregate" });
    expect(agg.samples.length).toBe(4); // per rollout: [turn1+turn2], [turn3]
    expect(agg.metrics.mergedCalls).toBe(2);
    const [merged, split] = agg.samples;
    expect(merged.tokens).toEqual([1, 2, 3, 10, 11, 90, 91, 5, 6, 12, 13, 14]);
    expect(merged.lossMask).toEqual([0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1]);
    expect(merged.oldLogprobs.map((x) => Math.round(x * 1e6) / 1e6)).toEqual([
      0, 0, 0, -0.1, -0.2, 0, 0, 0, 0, -0.3, -0.4, -0.5,
    ]);
    expect(merged.advantage).toBe(0.5);
    expect(merged.tokenAdvantages).toBeUndefined(); // uniform credit: one advantage
    expect(merged.calls).toBe(2);
    expect(split.tokens).toEqual([...Array.from(turn3.promptIds), 15]);
    expect(split.lossMask).toEqual([...Array.from(turn3.promptIds, () => 0), 1]);
    // Masked tokens are never trained: the trained tokens of both layouts are the same responses.
    const trained = (ss: TrainingSample[]) =>
      ss.flatMap((s) =>
        s.tokens.flatMap((tok, p) => (s.lossMask[p] > 0 ? [[tok, s.oldLogprobs[p], s.advantage]] : [])),
      );
    expect(trained(agg.samples)).toEqual(trained(perCall.samples));
    await expect(buildSamples(store, finished, { ...options, trajectory: "merged" as "call" })).rejects.toThrow(
      /trajectory must be/,
    );
    await expect(
      buildSamples(store, finished, { ...options, lossNormalization: "sequence" as "token" }),
    ).rejects.toThrow(/lossNormalization must be/);
    await store.close();
  });

  it("gives each call its own advantage under non-uniform credit, masks in between with 0", async () => {
    const store = await openStore(":memory:");
    const finished = await group(store, [
      { calls: [turn1, turn2], reward: 1 },
      { calls: [turn1, turn2], reward: 0 },
    ]);
    const { samples } = await buildSamples(store, finished, {
      advantage: { kind: "grpo", normalizeStd: false },
      credit: { kind: "discounted", gamma: 0.5 },
      trajectory: "aggregate",
    });
    expect(samples.length).toBe(2);
    // Rollout 1: advantage 0.5, returns [0.5, 1] → 0.25 on turn 1's tokens, 0.5 on turn 2's.
    expect(samples[0].tokenAdvantages).toEqual([0, 0, 0, 0.25, 0.25, 0, 0, 0, 0, 0.5, 0.5, 0.5]);
    expect(samples[1].tokenAdvantages).toEqual([0, 0, 0, -0.25, -0.25, 0, 0, 0, 0, -0.5, -0.5, -0.5]);
    await store.close();
  });

  it("starts a new sequence at another temperature and keeps constrained calls' unmasked logprobs", async () => {
    const store = await openStore(":memory:");
    const constrained: Call = {
      ...turn2,
      metadata: { constrained: "json_schema", logprobs: "masked", unmaskedLogprobs: [-1.3, -1.4, -1.5] },
    };
    const hot: Call = { ...turn2, metadata: { sampling: { temperature: 0.7 } } };
    const finished = await group(store, [
      { calls: [turn1, constrained], reward: 1 },
      { calls: [turn1, hot], reward: 0 },
    ]);
    const { samples } = await buildSamples(store, finished, {
      advantage: { kind: "grpo" },
      trajectory: "aggregate",
    });
    expect(samples.length).toBe(3);
    expect(samples[0].oldLogprobs.slice(9).map((x) => Math.round(x * 1e6) / 1e6)).toEqual([-1.3, -1.4, -1.5]);
    expect(samples[0].calls).toBe(2);
    expect(samples.slice(1).map((s) => s.temperature)).toEqual([1, 0.7]);
    expect(microBatches(samples, 4096).length).toBe(2); // one temperature per micro-batch
    await store.close();
  });

  it("a template token after the response (Qwen's <|im_end|>\\n) is masked, not a break", async () => {
    const store = await openStore(":memory:");
    const IM_END = 99;
    const NL = 98;
    // The response ends before the stop token; the next prompt's history has it plus a newline.
    const a: Call = { promptIds: [4, 5], responseIds: [20], responseLogprobs: [-0.5] };
    const b: Call = { promptIds: [4, 5, 20, IM_END, NL, 6, 7], responseIds: [21, 22], responseLogprobs: [-1, -2] };
    const finished = await group(store, [
      { calls: [a, b], reward: 2 },
      { calls: [a, b], reward: 0 },
    ]);
    const { samples } = await buildSamples(store, finished, { advantage: { kind: "grpo" }, trajectory: "aggregate" });
    expect(samples.length).toBe(2);
    expect(samples[0].tokens).toEqual([4, 5, 20, IM_END, NL, 6, 7, 21, 22]);
    expect(samples[0].lossMask).toEqual([0, 0, 1, 0, 0, 0, 0, 1, 1]);
    await store.close();
  });
});

describe("per-rollout loss normalisation", () => {
  it("weights rollout r's tokens by M / (R · N_r), so each rollout's tokens sum to the same share", async () => {
    const store = await openStore(":memory:");
    // Rollout 1 trains 2 + 3 = 5 tokens, rollout 2 trains 2 tokens: M = 7, R = 2.
    const finished = await group(store, [
      { calls: [turn1, turn2], reward: 1 },
      { calls: [turn1], reward: 0 },
    ]);
    const { samples } = await buildSamples(store, finished, {
      advantage: { kind: "grpo", normalizeStd: false },
      lossNormalization: "rollout",
    });
    const weight = (s: TrainingSample) => s.lossMask.reduce((a, b) => a + b, 0);
    const byRollout = new Map<string, number>();
    for (const s of samples) byRollout.set(s.rolloutId, (byRollout.get(s.rolloutId) ?? 0) + weight(s));
    expect([...byRollout.values()].map((w) => Math.round(w * 1e9) / 1e9)).toEqual([3.5, 3.5]);
    expect(samples[0].lossMask.slice(3)).toEqual([7 / 10, 7 / 10]);
    expect(samples[2].lossMask.slice(3)).toEqual([7 / 4, 7 / 4]);
    // The token-mean PPO loss over these weights is the mean over rollouts of each rollout's
    // token mean (distinct per-token ratios so that the weighting shows).
    const lp = samples.flatMap((s) => s.oldLogprobs.slice(1).map((o, p) => o + (s.lossMask[p + 1] > 0 ? 0.01 * p : 0)));
    const mask = samples.flatMap((s) => s.lossMask.slice(1));
    const old = samples.flatMap((s) => s.oldLogprobs.slice(1));
    const adv = samples.flatMap((s) => s.tokens.slice(1).map(() => s.advantage));
    const r = ppoLoss(
      {
        logprobs: Float32Array.from(lp),
        oldLogprobs: Float32Array.from(old),
        mask: Float32Array.from(mask),
        advantages: Float32Array.from(adv),
      },
      { clipLow: 10, clipHigh: 10 },
    );
    // Written out: per rollout, the mean over its tokens of −ratio·A, then the mean over rollouts.
    let expected = 0;
    for (const id of byRollout.keys()) {
      const terms: number[] = [];
      let offset = 0;
      for (const s of samples) {
        for (let p = 1; p < s.tokens.length; p++) {
          if (s.rolloutId === id && s.lossMask[p] > 0)
            terms.push(-Math.exp(Math.fround(lp[offset + p - 1]) - Math.fround(old[offset + p - 1])) * s.advantage);
        }
        offset += s.tokens.length - 1;
      }
      expected += terms.reduce((a, b) => a + b, 0) / terms.length / byRollout.size;
    }
    expect(r.loss).toBeCloseTo(expected, 6);
    await store.close();
  });
});
