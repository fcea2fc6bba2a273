// Samples per adapter (multi-agent LoRA): buildSamples's `adapter` option keeps the calls a named
// adapter generated (metadata.adapter, as the proxy records it), null keeps the calls of no named
// adapter (what a default-adapter trainer uses next to named ones), absent keeps every call.
import { expect, it } from "vitest";
import { openStore } from "../../src/store/libsql.ts";
import { buildSamples } from "../../src/trainer/samples.ts";

it("selects each adapter's calls by the adapter name they recorded", async () => {
  const store = await openStore(":memory:");
  const rollouts = await store.enqueueRollouts([
    { input: { q: 1 }, groupId: "g" },
    { input: { q: 1 }, groupId: "g" },
  ]);
  for (const reward of [1, 0]) {
    const claim = (await store.claimRollout({ workerId: "w" }))!;
    const attemptId = claim.attempt.id;
    await store.addTransitions(
      (["agentA", "agentB", null, "agentA"] as const).map((adapter, k) => ({
        attemptId,
        promptIds: [1, 2, 10 + k],
        responseIds: [7],
        responseLogprobs: [-0.5],
        adapterVersion: adapter === null ? null : "3",
        metadata: { adapter, agent: k === 3 ? "critic" : "solver" },
      })),
    );
    await store.finishAttempt(attemptId, { status: "succeeded", reward });
  }
  const finished = await store.waitForRollouts(
    rollouts.map((r) => r.id),
    { timeoutMs: 1000 },
  );
  const grpo = { kind: "grpo" as const };
  const third = async (o: Parameters<typeof buildSamples>[2]) =>
    (await buildSamples(store, finished, o)).samples.map((s) => s.tokens[2]).sort();
  expect(await third({ advantage: grpo })).toEqual([10, 10, 11, 11, 12, 12, 13, 13]);
  expect(await third({ advantage: grpo, adapter: "agentA" })).toEqual([10, 10, 13, 13]);
  expect(await third({ advantage: grpo, adapter: "agentB" })).toEqual([11, 11]);
  expect(await third({ advantage: grpo, adapter: null })).toEqual([12, 12]);
  expect(await third({ advantage: grpo, adapter: "nobody" })).toEqual([]);
  // The agent filter still applies on top.
  expect(await third({ advantage: grpo, adapter: "agentA", agents: ["critic"] })).toEqual([13, 13]);
  await store.close();
});
