// The Runner in-process against a real server (tiny model on the GPU, file store): real agents
// make real openai-SDK calls through ctx.llm; the store must end up with the attempt's spans, LLM
// calls and rewards in order, and with the right outcome for agents that succeed, throw or hang.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Runner } from "../../src/runner/runner.ts";
import type { Agent, AgentContext, RunnerEvent } from "../../src/runner/types.ts";
import type { EnqueueRolloutInput, Rollout } from "../../src/store/types.ts";
import { startTestServer, type TestServer } from "./harness.ts";

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer("runner");
});

afterAll(async () => {
  await t?.close();
});

/** Enqueues `inputs`, runs `agent` over them until they all end, and returns the ended rollouts. */
async function runAll(agent: Agent, inputs: EnqueueRolloutInput[], extra: { concurrency?: number } = {}) {
  const store = t.server.store;
  const rollouts = await store.enqueueRollouts(inputs);
  const events: RunnerEvent[] = [];
  const runner = new Runner({
    store,
    agent,
    serverUrl: t.server.url,
    model: "tiny",
    heartbeatMs: 200,
    pollMs: 20,
    concurrency: extra.concurrency ?? 4,
    workerId: "in-process",
    onEvent: (e) => events.push(e),
  });
  runner.start();
  let ended: Rollout[];
  try {
    ended = await store.waitForRollouts(
      rollouts.map((r) => r.id),
      { timeoutMs: 30_000, pollMs: 20 },
    );
  } finally {
    await runner.stop();
  }
  expect(ended.length, "every rollout ended").toBe(rollouts.length);
  await t.server.recorder.flush();
  return { ended, events, runner };
}

describe("Runner in-process", () => {
  it("runs an openai-SDK agent: LLM calls, spans and the returned reward land under the attempt, in order", async () => {
    const seen: AgentContext[] = [];
    const agent: Agent<{ question: string }> = async (task, ctx) => {
      seen.push(ctx);
      const client = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey, maxRetries: 0 });
      const answer = await ctx.span(
        "think",
        async () => {
          const res = await client.chat.completions.create({
            model: ctx.llm.model,
            messages: [{ role: "user", content: task.question }],
            max_tokens: 4,
            temperature: 0,
          });
          return ctx.span("lookup", () => res.choices[0].message.content ?? "", { kind: "tool", query: "x" });
        },
        { step: 1 },
      );
      await ctx.emitReward(0.5, { format: 1 });
      return { reward: answer.length >= 0 ? 0.75 : 0, answer };
    };
    const { ended, events, runner } = await runAll(agent as Agent, [
      { input: { question: "What is 2 + 2?" }, mode: "val", resources: null },
    ]);
    const [rollout] = ended;
    expect(rollout.status).toBe("succeeded");
    expect(rollout.finalReward).toBe(0.75);
    expect(runner.stats).toEqual({ claimed: 1, succeeded: 1, failed: 0, timedOut: 0 });
    const ctx = seen[0];
    expect(ctx.rolloutId).toBe(rollout.id);
    expect(ctx.mode).toBe("val");
    expect(ctx.resources).toBeNull();
    expect(ctx.llm.baseURL).toBe(`${t.server.url}/rollouts/${rollout.id}/attempts/${ctx.attemptId}/v1`);
    expect(ctx.signal.aborted).toBe(true); // released once the attempt finished

    const [attempt] = await t.server.store.listAttempts(rollout.id);
    expect(attempt.id).toBe(ctx.attemptId);
    expect(attempt.status).toBe("succeeded");
    expect(attempt.workerId).toBe("in-process");
    const transitions = await t.server.store.getTransitions({ attemptId: attempt.id });
    expect(transitions.length).toBe(1);
    expect(transitions[0].late).toBe(false);

    const spans = await t.server.store.getSpans({ attemptId: attempt.id });
    expect(spans.every((s) => !s.late)).toBe(true);
    // Runner spans are written when each ends (nested tool span, its parent, then the reward); the
    // proxy writes the LLM call's span from its batched recorder, so its place among them varies.
    expect(spans.map((s) => s.seq)).toEqual([1, 2, 3, 4]);
    const ours = spans.filter((s) => s.kind !== "llm");
    expect(ours.map((s) => `${s.kind}:${s.name}`)).toEqual(["tool:lookup", "custom:think", "reward:reward"]);
    const [lookup, think, rewardSpan] = ours;
    const llm = spans.find((s) => s.kind === "llm")!;
    expect(llm.name).toMatch(/chat\.completions/);
    // The LLM call happened inside "think" (same machine clock; 5 ms slack for rounding).
    expect(llm.startTime).toBeGreaterThanOrEqual(think.startTime - 5);
    expect(llm.endTime!).toBeLessThanOrEqual(think.endTime! + 5);
    expect(lookup.parentSpanId).toBe(think.spanId);
    expect(think.parentSpanId).toBeNull();
    expect(lookup.attributes).toEqual({ query: "x" });
    expect(think.attributes).toEqual({ step: 1 });
    expect(think.status).toEqual({ code: "ok" });
    expect(think.endTime! >= think.startTime).toBe(true);
    const rewards = await t.server.store.getRewards({ attemptId: attempt.id });
    expect(rewards.map((r) => r.value)).toEqual([0.5, 0.75]);
    expect(rewards[0].dimensions).toEqual({ format: 1 });
    expect(rewards[0].spanId).toBe(rewardSpan.spanId);
    expect(events.map((e) => e.type)).toEqual(["started", "finished"]);
  });

  it("uses the last emitted reward when the agent returns nothing, and passes the rollout's resources", async () => {
    const store = t.server.store;
    await store.addResources("prompt", { template: "v1: {q}" });
    const latest = await store.addResources("prompt", { template: "v2: {q}" });
    const received: unknown[] = [];
    const agent: Agent = async (_task, ctx) => {
      received.push(ctx.resources);
      await ctx.emitReward(0.1);
      void ctx.emitReward(0.9); // not awaited: the runner still waits for the write before finishing
    };
    const { ended } = await runAll(agent, [
      { input: 1, resources: { name: "prompt" } },
      { input: 2, resources: { name: "prompt", version: 1 } },
    ]);
    expect(ended.map((r) => r.status)).toEqual(["succeeded", "succeeded"]);
    expect(ended.map((r) => r.finalReward)).toEqual([0.9, 0.9]);
    expect(ended[0].resourcesVersion).toBe(latest.version);
    expect(received).toHaveLength(2);
    expect(received).toContainEqual({ template: "v2: {q}" });
    expect(received).toContainEqual({ template: "v1: {q}" });
  });

  it("records a thrown error with message, type and stack, keeps what was recorded, and retries up to maxAttempts", async () => {
    class ToolError extends Error {
      override name = "ToolError";
    }
    const agent: Agent = async (_task, ctx) => {
      await ctx.emitReward(0.3);
      await ctx.span("broken-tool", () => {
        throw new ToolError("calculator exploded");
      });
    };
    const { ended, events, runner } = await runAll(agent, [{ input: "boom", config: { maxAttempts: 2 } }]);
    const [rollout] = ended;
    expect(rollout.status).toBe("failed");
    expect(rollout.attemptCount).toBe(2);
    expect(runner.stats.failed).toBe(2);
    const attempts = await t.server.store.listAttempts(rollout.id);
    expect(attempts.map((a) => a.status)).toEqual(["failed", "failed"]);
    for (const attempt of attempts) {
      expect(attempt.error?.message).toBe("calculator exploded");
      expect(attempt.error?.type).toBe("ToolError");
      expect(attempt.error?.stack).toContain("runner.test.ts");
      expect(attempt.reward).toBe(0.3);
      const spans = await t.server.store.getSpans({ attemptId: attempt.id });
      expect(spans.map((s) => s.kind)).toEqual(["reward", "custom"]);
      expect(spans[1].status).toEqual({ code: "error", message: "calculator exploded" });
      expect(spans[1].events[0].name).toBe("exception");
      expect(spans[1].events[0].attributes?.["exception.type"]).toBe("ToolError");
    }
    expect(events.filter((e) => e.type === "failed")).toHaveLength(2);
  });

  it("times out an agent that ignores its signal, aborts ctx.signal, and the retry can succeed", async () => {
    let calls = 0;
    const abortReasons: unknown[] = [];
    const agent: Agent = async (_task, ctx) => {
      calls++;
      ctx.signal.addEventListener("abort", () => abortReasons.push(ctx.signal.reason));
      if (calls === 1) {
        await ctx.emitReward(0.2);
        await new Promise(() => {}); // hangs and ignores the signal
      }
      return 1;
    };
    const started = Date.now();
    const { ended, runner } = await runAll(agent, [{ input: "slow", config: { maxAttempts: 2, timeoutMs: 400 } }]);
    const [rollout] = ended;
    expect(rollout.status).toBe("succeeded");
    expect(rollout.finalReward).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    const attempts = await t.server.store.listAttempts(rollout.id);
    expect(attempts.map((a) => a.status)).toEqual(["timeout", "succeeded"]);
    // The runner's timer and the server's sweeper (same clock, 1 s period) race to end it; on a
    // loaded machine the sweeper can win, and either way the attempt is a timeout with a reason.
    const error = attempts[0].error;
    if (error?.type === "timeout") expect(error.message).toMatch(/rollout timeout/);
    else {
      expect(error?.type).toBe("TimeoutError");
      expect(error?.message).toMatch(/400 ms/);
    }
    expect(attempts[0].reward).toBe(0.2);
    expect((await t.server.store.getRewards({ attemptId: attempts[0].id })).map((r) => r.value)).toEqual([0.2]);
    expect((abortReasons[0] as Error).name).toBe("TimeoutError");
    expect(runner.stats).toMatchObject({ claimed: 2, succeeded: 1, timedOut: 1 });
  });

  it("aborts the agent when the store has already ended its attempt, recording the finish as late", async () => {
    const store = t.server.store;
    // Heartbeats slower than the unresponsive timeout: the server's sweeper (1 s) ends the attempt
    // first, and the next heartbeat's conflict tells the runner to abort the agent.
    const rollout = await store.enqueueRollout({
      input: "slow",
      config: { maxAttempts: 1, unresponsiveTimeoutMs: 300 },
    });
    const events: RunnerEvent[] = [];
    const agent: Agent = (_task, ctx) =>
      new Promise((_done, fail) => ctx.signal.addEventListener("abort", () => fail(ctx.signal.reason)));
    const runner = new Runner({
      store,
      agent,
      serverUrl: t.server.url,
      model: "tiny",
      heartbeatMs: 2500,
      pollMs: 20,
      onEvent: (e) => events.push(e),
    });
    runner.start();
    const [ended] = await store.waitForRollouts([rollout.id], { timeoutMs: 10_000 });
    expect(ended.status).toBe("failed");
    await runner.stop();
    const [attempt] = await store.listAttempts(rollout.id);
    expect(attempt.status).toBe("unresponsive");
    expect(attempt.lateFinish?.status).toBe("failed");
    expect(attempt.lateFinish?.error?.message).toMatch(/was ended by the store/);
    expect(events.at(-1)).toMatchObject({ type: "failed", late: true });
  });

  it("fails an attempt whose agent returns something that is not a reward", async () => {
    const agent = (() => "yes") as unknown as Agent;
    const { ended } = await runAll(agent, [{ input: 0, config: { maxAttempts: 1 } }]);
    const [attempt] = await t.server.store.listAttempts(ended[0].id);
    expect(attempt.status).toBe("failed");
    expect(attempt.error?.message).toMatch(/finite number, \{ reward: number \} or nothing/);
  });

  it("runs agents concurrently and stop() waits for the running ones", async () => {
    let active = 0;
    let peak = 0;
    const agent: Agent<{ i: number }> = async (task) => {
      active++;
      peak = Math.max(peak, active);
      await new Promise((done) => setTimeout(done, 150));
      active--;
      return task.i;
    };
    const store = t.server.store;
    const rollouts = await store.enqueueRollouts(Array.from({ length: 6 }, (_, i) => ({ input: { i } })));
    const runner = new Runner({
      store,
      agent: agent as Agent,
      serverUrl: t.server.url,
      model: "tiny",
      concurrency: 3,
      pollMs: 10,
    });
    const stop = new AbortController();
    const running = runner.run(stop.signal);
    // Stop as soon as the first batch has started: those finish, nothing new is claimed.
    while (runner.stats.claimed < 3) await new Promise((done) => setTimeout(done, 5));
    stop.abort();
    await running;
    expect(active).toBe(0);
    expect(peak).toBe(3);
    expect(runner.stats.succeeded).toBe(runner.stats.claimed);
    const states = await Promise.all(rollouts.map((r) => store.getRollout(r.id)));
    const done = states.filter((r) => r.status === "succeeded");
    expect(done.length).toBe(runner.stats.claimed);
    expect(states.filter((r) => r.status === "queuing").length).toBe(6 - runner.stats.claimed);
    // Drain the rest so later tests start from an empty queue.
    const rest = new Runner({ store, agent: agent as Agent, serverUrl: t.server.url, model: "tiny", pollMs: 10 });
    rest.start();
    await store.waitForRollouts(
      rollouts.map((r) => r.id),
      { timeoutMs: 10_000 },
    );
    await rest.stop();
  });

  it("rejects bad options with clear messages", () => {
    const base = { store: t.server.store, agent: () => 1, serverUrl: t.server.url, model: "tiny" };
    expect(() => new Runner({ ...base, agent: "nope" as unknown as Agent })).toThrow(/agent.*must be a function/);
    expect(() => new Runner({ ...base, serverUrl: "localhost:8000" })).toThrow(/serverUrl.*http/);
    expect(() => new Runner({ ...base, concurrency: 0 })).toThrow(/concurrency.*positive integer/);
    expect(() => new Runner({ ...base, model: "" })).toThrow(/model/);
  });
});
