// The examples in examples/ run unchanged through the Runner against a real server (tiny random
// model): each agent's LLM calls must be recorded under its attempt and the attempt must finish
// with the agent's reward. A random model rarely emits a tool call; when it does, the tool spans
// must match the calls, so the tool path is checked without faking it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agent as aiSdkAgent } from "../../examples/ai-sdk-agent.ts";
import { calculate, type MathTask, score } from "../../examples/calculator.ts";
import { agent as langchainAgent } from "../../examples/langchain-agent.ts";
import { agent as openaiAgent } from "../../examples/openai-agent.ts";
import { Runner } from "../../src/runner/runner.ts";
import type { Agent } from "../../src/runner/types.ts";
import { MODEL, startTestServer, type TestServer } from "./harness.ts";

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer("examples");
});

afterAll(async () => {
  await t?.close();
});

const TASKS: MathTask[] = [
  { question: "What is 17 * 23?", answer: 391 },
  { question: "What is (12 + 30) / 7?", answer: 6 },
];

async function runExample(agent: Agent) {
  const store = t.server.store;
  const rollouts = await store.enqueueRollouts(
    TASKS.map((task) => ({ input: { ...task }, config: { maxAttempts: 1 } })),
  );
  const runner = new Runner({ store, agent, serverUrl: t.server.url, model: MODEL, pollMs: 20, concurrency: 2 });
  runner.start();
  const ended = await store.waitForRollouts(
    rollouts.map((r) => r.id),
    { timeoutMs: 60_000 },
  );
  await runner.stop();
  await t.server.recorder.flush();
  expect(ended.length).toBe(TASKS.length);
  const results = [];
  for (const rollout of ended) {
    const [attempt] = await store.listAttempts(rollout.id);
    expect(attempt.error, JSON.stringify(attempt.error)).toBeNull();
    expect(rollout.status).toBe("succeeded");
    expect([0, 1]).toContain(rollout.finalReward);
    const transitions = await store.getTransitions({ attemptId: attempt.id });
    const spans = await store.getSpans({ attemptId: attempt.id });
    expect(transitions.length).toBeGreaterThanOrEqual(1);
    expect(transitions.every((tr) => !tr.late && tr.rolloutId === rollout.id)).toBe(true);
    expect(spans.filter((s) => s.kind === "llm").length).toBe(transitions.length);
    results.push({ transitions, spans });
  }
  return results;
}

describe("examples run through the Runner", () => {
  it("openai SDK tool-calling agent", async () => {
    for (const { transitions, spans } of await runExample(openaiAgent as Agent)) {
      // The agent sent its tool definition on every call.
      const prompt = t.server.model!.tokenizer.decode(Array.from(transitions[0].promptIds));
      expect(prompt).toContain('"name": "calculator"');
      const toolCalls = transitions.flatMap(
        (tr) => ((tr.response as { tool_calls?: unknown[] } | null)?.tool_calls ?? []) as unknown[],
      );
      expect(spans.filter((s) => s.kind === "tool").length).toBe(toolCalls.length);
      // The loop stops at an answer without tool calls, or after 4 turns.
      expect(transitions.length).toBeLessThanOrEqual(4);
    }
  });

  it("LangChain.js agent", async () => {
    for (const { transitions } of await runExample(langchainAgent as Agent)) {
      const prompt = t.server.model!.tokenizer.decode(Array.from(transitions[0].promptIds));
      expect(prompt).toContain("calculator");
    }
  });

  it("AI SDK agent", async () => {
    for (const { transitions } of await runExample(aiSdkAgent as Agent)) {
      const prompt = t.server.model!.tokenizer.decode(Array.from(transitions[0].promptIds));
      expect(prompt).toContain("calculator");
    }
  });

  it("the calculator tool evaluates arithmetic and rejects anything else", () => {
    expect(calculate("17 * 23")).toBe(391);
    expect(calculate("(12 + 30) / 7 - -1")).toBe(7);
    expect(calculate("2 + 3 * 4")).toBe(14);
    expect(() => calculate("process.exit()")).toThrow(/unexpected/);
    expect(() => calculate("(1 + 2")).toThrow(/expected "\)"/);
    expect(score("the answer is 391.", 391)).toBe(1);
    expect(score("about 390", 391)).toBe(0);
  });
});
