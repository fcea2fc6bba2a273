// From finished rollouts in a real store to training samples: one sample per LLM call of the
// final attempt, the episode advantage on each, failed rollouts skipped, agents filtered.
import { describe, expect, it } from "vitest";
import { openStore } from "../../src/store/libsql.ts";
import { buildSamples } from "../../src/trainer/samples.ts";

describe("buildSamples", () => {
  it("turns each call into a single-turn sample and filters agents", async () => {
    const store = await openStore(":memory:");
    const rollouts = await store.enqueueRollouts([
      { input: { q: 1 }, groupId: "g" },
      { input: { q: 1 }, groupId: "g" },
      { input: { q: 1 }, groupId: "g" },
    ]);
    const rewards = [1, 0, null];
    for (let i = 0; i < 3; i++) {
      const claim = (await store.claimRollout({ workerId: "w" }))!;
      const attemptId = claim.attempt.id;
      await store.addTransitions(
        ["planner", "coder"].map((agent, k) => ({
          attemptId,
          promptIds: [1, 2, 3 + k],
          responseIds: [7, 8],
          responseLogprobs: [-0.5, -0.25],
          metadata: { agent, sampling: { temperature: 0.7 } },
        })),
      );
      if (rewards[i] === null) await store.finishAttempt(attemptId, { status: "failed", error: "boom" });
      else await store.finishAttempt(attemptId, { status: "succeeded", reward: rewards[i] });
    }
    const finished = await store.waitForRollouts(
      rollouts.map((r) => r.id),
      { timeoutMs: 1000 },
    );
    const all = await buildSamples(store, finished, { advantage: { kind: "grpo", normalizeStd: false } });
    expect(all.metrics.rewardMean).toBe(0.5);
    expect(all.samples.length).toBe(4); // 2 succeeded rollouts × 2 calls (the failed one is skipped)
    const s = all.samples[0];
    expect(s.tokens).toEqual([1, 2, 3, 7, 8]);
    expect(s.lossMask).toEqual([0, 0, 0, 1, 1]);
    expect(s.oldLogprobs).toEqual([0, 0, 0, -0.5, -0.25]);
    expect(s.temperature).toBe(0.7);
    expect(all.samples.map((x) => x.advantage).sort()).toEqual([-0.5, -0.5, 0.5, 0.5]);
    const coder = await buildSamples(store, finished, { advantage: { kind: "grpo" }, agents: ["coder"] });
    expect(coder.samples.length).toBe(2);
    expect(coder.samples.every((x) => x.tokens[2] === 4)).toBe(true);
    await store.close();
  });
});
