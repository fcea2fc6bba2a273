// The committed built-in model end to end: it loads, the proxy serves it, and the calculator
// agent (examples/calculator-agent.ts, ordinary openai-SDK code) runs on validation tasks through
// a real server, its calls recorded as transitions under each attempt.
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agent } from "../../examples/calculator-agent.ts";
import { demoSplits } from "../../src/demo/tasks.ts";
import { type FulgurServer, startServer } from "../../src/server.ts";

const MODEL_DIR = "models/fulgur-calc";
let server: FulgurServer;

beforeAll(async () => {
  server = await startServer({ modelDir: MODEL_DIR, storeUrl: ":memory:", port: 0, maxSeqLen: 512 });
}, 120_000);

afterAll(async () => {
  await server?.shutdown();
});

describe("built-in calculator demo", () => {
  it("ships a small HF-format model", () => {
    let bytes = 0;
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]) {
      expect(existsSync(join(MODEL_DIR, f)), f).toBe(true);
      bytes += statSync(join(MODEL_DIR, f)).size;
    }
    expect(bytes).toBeLessThan(10 * 1024 * 1024);
  });

  it("runs the agent through the proxy on validation tasks, calling the tool", async () => {
    const tasks = demoSplits().val.slice(0, 8);
    const rewards: number[] = [];
    const attempts: string[] = [];
    await Promise.all(
      tasks.map(async (task) => {
        const rollout = await server.store.enqueueRollout({ input: { ...task } });
        const claim = await server.store.claimRollout({ workerId: "demo-test" });
        const attemptId = claim!.attempt.id;
        attempts.push(attemptId);
        const baseURL = `${server.url}/rollouts/${claim!.rollout.id}/attempts/${attemptId}/v1`;
        expect(claim!.rollout.id).toBe(rollout.id);
        rewards.push(await agent(task, { llm: { baseURL, apiKey: "unused", model: "fulgur-calc" } }));
      }),
    );
    for (const r of rewards) expect([0, 1]).toContain(r);
    await server.recorder.flush();
    let calls = 0;
    let toolCalls = 0;
    for (const attemptId of attempts) {
      const transitions = await server.store.getTransitions({ attemptId });
      calls += transitions.length;
      toolCalls += transitions.filter(
        (t) => (t.response as { tool_calls?: unknown[] } | null)?.tool_calls?.length,
      ).length;
    }
    // Every episode makes at least one call; the base model calls the tool on most add/sub tasks.
    expect(calls).toBeGreaterThanOrEqual(tasks.length);
    expect(toolCalls).toBeGreaterThan(0);
  }, 300_000);
});
