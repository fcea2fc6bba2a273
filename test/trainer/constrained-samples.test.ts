// Constrained transitions (structured output) in training samples: their recorded logprobs are
// under the masked distribution, so the sample's old logprobs come from the unmasked ones stored
// with them (what the trainer's recomputation matches); other transitions are unchanged.
import { describe, expect, it } from "vitest";
import { openStore } from "../../src/store/libsql.ts";
import { buildSamples } from "../../src/trainer/samples.ts";

describe("constrained transitions", () => {
  it("use the unmasked logprobs as old logprobs, and only when they are complete", async () => {
    const store = await openStore(":memory:");
    const rollouts = await store.enqueueRollouts([
      { input: { q: 1 }, groupId: "g" },
      { input: { q: 1 }, groupId: "g" },
    ]);
    for (let i = 0; i < 2; i++) {
      const claim = (await store.claimRollout({ workerId: "w" }))!;
      const attemptId = claim.attempt.id;
      const base = { attemptId, promptIds: [1, 2], responseIds: [7, 8], responseLogprobs: [-0.5, -0.25] };
      await store.addTransitions([
        { ...base, metadata: { constrained: "json_schema", logprobs: "masked", unmaskedLogprobs: [-1.5, -2.25] } },
        // Unmasked logprobs missing a token: the recorded ones are kept rather than misaligned.
        { ...base, metadata: { constrained: "json_schema", logprobs: "masked", unmaskedLogprobs: [-1.5] } },
        { ...base, metadata: {} },
      ]);
      await store.finishAttempt(attemptId, { status: "succeeded", reward: i });
    }
    const finished = await store.waitForRollouts(
      rollouts.map((r) => r.id),
      { timeoutMs: 1000 },
    );
    const { samples } = await buildSamples(store, finished, { advantage: { kind: "grpo", normalizeStd: false } });
    expect(samples.length).toBe(6);
    const olds = samples.map((s) => s.oldLogprobs.slice(2));
    expect(olds.filter((o) => o[0] === -1.5 && o[1] === -2.25).length).toBe(2);
    expect(olds.filter((o) => o[0] === -0.5 && o[1] === -0.25).length).toBe(4);
    await store.close();
  });
});
