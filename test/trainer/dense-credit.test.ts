// Dense credit: per-call advantages from the rewards an agent emits along the way, weighted by
// reward dimension, normalised over the GRPO group's reward events and discounted backwards
// (docs/trainer.md, "Dense credit"). Exact numbers on hand-built rollouts in a real store (with
// rewards written by the real ctx.emitReward), and end to end: an openai-SDK agent against the
// real server on a tiny model, run by the real Runner, its rewards reaching the samples.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveApp } from "../../src/http/serve.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { LocalBackend } from "../../src/proxy/local.ts";
import { flushingBeforeFinish } from "../../src/proxy/recorder.ts";
import { createAttemptContext } from "../../src/runner/context.ts";
import { Runner } from "../../src/runner/runner.ts";
import type { AgentContext } from "../../src/runner/types.ts";
import { createApp } from "../../src/server.ts";
import { openStore } from "../../src/store/libsql.ts";
import type { Reward, Span, Store, Transition } from "../../src/store/types.ts";
import { computeAdvantages } from "../../src/trainer/advantages.ts";
import { runRollouts } from "../../src/trainer/algorithm.ts";
import { type DenseEpisode, denseAdvantages } from "../../src/trainer/credit.ts";
import { rewardEvents } from "../../src/trainer/reward-events.ts";
import { buildSamples } from "../../src/trainer/samples.ts";
import { useGpu } from "../helpers/gpu.ts";

const close = (a: number[], b: number[]) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < b.length; i++) expect(a[i]).toBeCloseTo(b[i], 9);
};

/** Writes one call as the proxy does: its transition, then its llm span (before the answer). */
async function call(store: Store, attemptId: string, callId: string, promptIds: number[]) {
  await store.addTransitions([
    { attemptId, promptIds, responseIds: [7, 8], responseLogprobs: [-0.5, -0.25], metadata: { callId } },
  ]);
  await store.addSpans([
    { attemptId, name: "llm.chat.completions", kind: "llm", startTime: 0, attributes: { callId } },
  ]);
}

function contextFor(store: Store, rolloutId: string, attemptId: string) {
  return createAttemptContext({
    store,
    rolloutId,
    attemptId,
    mode: "train",
    llm: { baseURL: "http://127.0.0.1:1", apiKey: "x", model: "m" },
    signal: new AbortController().signal,
    resources: null,
  });
}

describe("denseAdvantages", () => {
  it("normalises reward scores over the group's events and discounts them backwards", () => {
    // A: 3 calls, a reward at call 0 (scores 0.5 + 0.2·1 = 0.7) and the final at call 2 (1 + 0.2 = 1.2).
    // B: 2 calls, a reward at call 0 (score 0) and a final recorded without dimensions (value 0).
    const episodes: DenseEpisode[] = [
      {
        group: "g",
        calls: 3,
        events: [
          { call: 0, value: 0.5, dimensions: { correctness: 0.5, format: 1 } },
          { call: 2, value: 1, dimensions: { correctness: 1, format: 1, ignored: 9 } },
        ],
      },
      {
        group: "g",
        calls: 2,
        events: [
          { call: 0, value: 0, dimensions: { correctness: 0, format: 0 } },
          { call: 1, value: 0, dimensions: null },
        ],
      },
    ];
    const credit = { kind: "dense" as const, dimensions: { correctness: 1, format: 0.2 }, gamma: 0.9 };
    // Scores [0.7, 1.2, 0, 0]: mean 0.475, unbiased std sqrt(1.0275 / 3).
    const raw = denseAdvantages(episodes, credit, { normalizeStd: false });
    close(raw.advantages[0]!, [0.225 + 0.81 * 0.725, 0.9 * 0.725, 0.725]);
    close(raw.advantages[1]!, [-0.475 - 0.9 * 0.475, -0.475]);
    const std = Math.sqrt(1.0275 / 3) + 1e-6;
    const normed = denseAdvantages(episodes, credit);
    close(
      normed.advantages[0]!,
      raw.advantages[0]!.map((x) => x / std),
    );
    close(
      normed.advantages[1]!,
      raw.advantages[1]!.map((x) => x / std),
    );
    // Without weights every reward scores its value: [0.5, 1, 0, 0].
    const plain = denseAdvantages(episodes, { kind: "dense" }, { normalizeStd: false });
    close(plain.advantages[0]!, [0.5 - 0.375 + (1 - 0.375), 1 - 0.375, 1 - 0.375]);
  });

  it("with only final rewards and gamma 1 equals GRPO's advantage on every call; drops flat groups", () => {
    const rewards = [1, 0, 0.25, 3];
    const episodes = rewards.map((r, i) => ({
      group: "g",
      calls: i + 1,
      events: [{ call: i, value: r, dimensions: null }],
    }));
    const dense = denseAdvantages(episodes, { kind: "dense" });
    const grpo = computeAdvantages(
      rewards.map((reward) => ({ group: "g", reward })),
      { kind: "grpo" },
    );
    for (const [i, a] of dense.advantages.entries()) close(a!, Array(i + 1).fill(grpo.advantages[i]));
    const flat = denseAdvantages(
      [
        { group: "h", calls: 1, events: [{ call: 0, value: 1, dimensions: null }] },
        { group: "h", calls: 2, events: [{ call: 1, value: 1, dimensions: null }] },
        { group: "solo", calls: 2, events: [{ call: 1, value: 1, dimensions: null }] },
      ],
      { kind: "dense" },
    );
    expect(flat.advantages).toEqual([null, null, null]);
    expect(flat.droppedGroups).toBe(2);
    expect(() => denseAdvantages(episodes, { kind: "dense", gamma: 0 })).toThrow(/gamma/);
  });
});

describe("rewardEvents", () => {
  const t = (callId: string) => ({ metadata: { callId } }) as unknown as Transition;
  const span = (spanId: string, seq: number, kind: "llm" | "reward", attributes: Record<string, string> = {}) =>
    ({ spanId, seq, kind, attributes }) as unknown as Span;
  const reward = (value: number, spanId: string | null) => ({ value, spanId, dimensions: null }) as unknown as Reward;

  it("puts a reward before any call at the first call, a spanless one at the last, the final at the last", () => {
    const calls = [t("a"), t("b"), t("c")];
    const spans = [
      span("r0", 1, "reward"),
      span("la", 2, "llm", { callId: "a" }),
      span("lb", 3, "llm", { callId: "b" }),
      span("r1", 4, "reward"),
      span("r2", 5, "reward", { "reward.call": "unknown" }),
      span("lc", 6, "llm", { callId: "c" }),
    ];
    const rewards = [reward(1, "r0"), reward(2, "r1"), reward(3, "r2"), reward(4, null), reward(5, "r1")];
    expect(rewardEvents(rewards, spans, calls).map((e) => [e.value, e.call])).toEqual([
      [1, 0],
      [2, 1],
      [3, 1], // an unknown named call falls back to trace order
      [4, 2],
      [5, 2],
    ]);
    // The runner's copy of the last emitted reward is not a second reward.
    const copied = rewardEvents([reward(2, "r1"), reward(2, null)], spans, calls);
    expect(copied.map((e) => [e.value, e.call])).toEqual([[2, 2]]);
    expect(rewardEvents([], spans, calls)).toEqual([]);
  });
});

describe("dense credit from the store", () => {
  it("attributes emitted rewards to calls (trace order or named call) and builds per-call advantages", async () => {
    const store = await openStore(":memory:");
    const rollouts = await store.enqueueRollouts([
      { input: { q: 1 }, groupId: "g" },
      { input: { q: 1 }, groupId: "g" },
    ]);
    for (let i = 0; i < 2; i++) {
      const claim = (await store.claimRollout({ workerId: "w" }))!;
      const { id: attemptId, rolloutId } = claim.attempt;
      const { ctx, settle, lastReward } = contextFor(store, rolloutId, attemptId);
      await call(store, attemptId, `c${i}-0`, [1, 2]);
      await ctx.emitReward(i === 0 ? 0.5 : 0, { correctness: i === 0 ? 0.5 : 0, format: 1 }); // → call 0
      await call(store, attemptId, `c${i}-1`, [1, 2, 7, 8, 3]);
      await call(store, attemptId, `c${i}-2`, [1, 2, 7, 8, 3, 7, 8, 4]);
      await expect(ctx.emitReward(1, undefined, { call: "" })).rejects.toThrow(/options.call/);
      // Emitted after call 2 but named for call 1.
      await ctx.emitReward(i === 0 ? 0.25 : 1, undefined, { call: `c${i}-1` });
      // Rollout 0 returns its final reward; rollout 1 returns nothing (the runner passes the last
      // emitted one to finishAttempt, as Runner does), with dimensions.
      if (i === 1) await ctx.emitReward(0.75, { correctness: 0.5, format: 1.25 });
      await settle();
      await store.finishAttempt(attemptId, { status: "succeeded", reward: i === 0 ? 1 : lastReward()! });
    }
    const finished = await store.waitForRollouts(
      rollouts.map((r) => r.id),
      { timeoutMs: 1000 },
    );
    const credit = { kind: "dense" as const, dimensions: { correctness: 1, format: 0.5 }, gamma: 0.5 };
    const batch = await buildSamples(store, finished, {
      advantage: { kind: "grpo", normalizeStd: false },
      credit,
    });
    // Events: rollout 0: call 0 → 0.5 + 0.5 = 1; call 1 → 0.25 (no dims); final at call 2 → 1.
    //         rollout 1: call 0 → 0 + 0.5 = 0.5; call 1 → 1; final (its emitted 0.75, not the copy)
    //         → 0.5 + 0.625 = 1.125 at call 2. Mean of the six scores: 4.875 / 6 = 0.8125.
    const m = 0.8125;
    const a0 = [1 - m, 0.25 - m, 1 - m];
    const a1 = [0.5 - m, 1 - m, 1.125 - m];
    const ret = (a: number[]) => [a[0] + 0.5 * a[1] + 0.25 * a[2], a[1] + 0.5 * a[2], a[2]];
    expect(batch.samples.length).toBe(6);
    close(
      batch.samples.map((s) => s.advantage),
      [...ret(a0), ...ret(a1)],
    );
    // Aggregated, the three calls are one sequence with each call's advantage on its tokens.
    const agg = await buildSamples(store, finished, {
      advantage: { kind: "grpo", normalizeStd: false },
      credit,
      trajectory: "aggregate",
    });
    expect(agg.samples.length).toBe(2);
    const trained = agg.samples[0].tokenAdvantages!.filter((_, p) => agg.samples[0].lossMask[p] > 0);
    close(
      trained,
      ret(a0).flatMap((x) => [x, x]),
    );
    await expect(
      buildSamples(store, finished, { advantage: { kind: "rloo" }, credit: { kind: "dense" } }),
    ).rejects.toThrow(/grpo/);
    await store.close();
  });
});

describe("dense credit end to end", () => {
  const gpu = useGpu();
  let dir: string;
  let model: Model;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fulgur-dense-"));
    await writeTinyModel(join(dir, "tiny"), { hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48, seed: 3 });
    model = await loadModel(join(dir, "tiny"), { gpu: gpu(), maxSlots: 8, maxSeqLen: 256 });
  });

  afterAll(() => {
    model?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it("an agent's intermediate rewards reach the samples through the real server, runner and store", async () => {
    const store = await openStore(`file:${join(dir, "store.db")}`);
    const { app, recorder } = createApp({ store, backend: new LocalBackend(model, { modelId: basename(model.dir) }) });
    const server = await serveApp(app, "127.0.0.1", 0);
    // Two turns; a format reward for turn 1 right after it, then one named for turn 1 after turn 2
    // (correctness), and the final reward returned.
    const agent = async (task: { final: number }, ctx: AgentContext) => {
      const client = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey, maxRetries: 0 });
      const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "hello" }];
      const first = await client.chat.completions.create({ model: ctx.llm.model, messages, max_tokens: 3 });
      await ctx.emitReward(task.final / 2, { format: task.final });
      messages.push(first.choices[0].message, { role: "user", content: "again" });
      await client.chat.completions.create({ model: ctx.llm.model, messages, max_tokens: 3 });
      await ctx.emitReward(0.1, { correctness: task.final }, { call: first.id });
      return task.final;
    };
    const runner = new Runner({
      store: flushingBeforeFinish(store, recorder),
      agent: agent as never,
      serverUrl: server.url,
      model: basename(model.dir),
      concurrency: 2,
      workerId: "dense-e2e",
    });
    runner.start();
    try {
      const rollouts = await runRollouts(
        store,
        [0, 1].map((final) => ({ task: { final }, group: "g" })),
        "train",
        { timeoutMs: 60_000 },
      );
      expect(rollouts.map((r) => r.status)).toEqual(["succeeded", "succeeded"]);
      const credit = { kind: "dense" as const, dimensions: { correctness: 1, format: 0.5 }, gamma: 1 };
      const { samples } = await buildSamples(store, rollouts, {
        advantage: { kind: "grpo", normalizeStd: false },
        credit,
      });
      // Rollout with final f: turn 1 gets format 0.5·f and correctness f, turn 2 the final f (no dims).
      // Scores: f=0 → [0, 0, 0]; f=1 → [0.5, 1, 1]; mean 2.5 / 6.
      const m = 2.5 / 6;
      const byRollout = rollouts.map((r) => samples.filter((s) => s.rolloutId === r.id).map((s) => s.advantage));
      close(byRollout[0], [-m * 3, -m]);
      close(byRollout[1], [0.5 - m + (1 - m) + (1 - m), 1 - m]);
    } finally {
      await runner.stop();
      await server.close();
      await store.close();
    }
  });
});
