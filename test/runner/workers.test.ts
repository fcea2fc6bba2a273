// `fulgur worker` as real OS processes against a real server over HTTP: 64 rollouts across two
// workers with concurrency 8 each finish exactly once, and a worker SIGKILLed mid-rollout has its
// attempt marked unresponsive by the server's sweeper, the rollout retried, and nothing it had
// already recorded lost.
import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWorker } from "../../src/commands/worker.ts";
import { loadAgent } from "../../src/runner/load-agent.ts";
import { Runner } from "../../src/runner/runner.ts";
import { startTestServer, type TestServer, waitFor } from "./harness.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const AGENT = resolve(ROOT, "test/runner/fixtures/worker-agent.ts");

let t: TestServer;
const children: ChildProcess[] = [];

beforeAll(async () => {
  t = await startTestServer("workers");
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await t?.close();
});

interface Worker {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** Spawns `fulgur worker` and resolves once it prints its ready line. */
async function spawnWorker(args: string[], server: TestServer = t): Promise<Worker> {
  // `node --import tsx` rather than the tsx binary: that one runs the script in a child process,
  // so SIGKILL would hit only the wrapper and leave the worker running.
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      resolve(ROOT, "src/commands/worker-main.ts"),
      "--server",
      server.server.url,
      "--agent",
      AGENT,
      ...args,
    ],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  children.push(child);
  let text = "";
  child.stdout!.on("data", (chunk) => {
    text += chunk;
  });
  child.stderr!.on("data", (chunk) => {
    text += chunk;
  });
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
  await waitFor(`worker ${args.join(" ")} to be ready`, async () => {
    if (child.exitCode !== null) throw new Error(`worker exited early (${child.exitCode}):\n${text}`);
    return text.includes("ready:");
  });
  return { child, output: () => text, exited };
}

describe("fulgur worker processes", () => {
  it("finishes 64 rollouts across 2 workers with concurrency 8 each, each exactly once", async () => {
    const [w1, w2] = await Promise.all([
      spawnWorker(["--concurrency", "8", "--worker-id", "w1"]),
      spawnWorker(["--concurrency", "8", "--worker-id", "w2"]),
    ]);
    const store = t.server.store;
    const rollouts = await store.enqueueRollouts(
      Array.from({ length: 64 }, (_, index) => ({ input: { kind: "llm", index, reward: index / 64 } })),
    );
    const ended = await store.waitForRollouts(
      rollouts.map((r) => r.id),
      { timeoutMs: 60_000, pollMs: 50 },
    );
    expect(ended.length).toBe(64);
    w1.child.kill("SIGTERM");
    w2.child.kill("SIGTERM");
    expect(await w1.exited).toBe(0);
    expect(await w2.exited).toBe(0);
    await t.server.recorder.flush();

    const perWorker = new Map<string, number>();
    for (const [index, rollout] of ended.entries()) {
      expect(rollout.status).toBe("succeeded");
      expect(rollout.attemptCount).toBe(1);
      expect(rollout.finalReward).toBe(index / 64);
      const attempts = await store.listAttempts(rollout.id);
      expect(attempts.length).toBe(1);
      expect(attempts[0].status).toBe("succeeded");
      expect(attempts[0].lateFinish).toBeNull();
      perWorker.set(attempts[0].workerId, (perWorker.get(attempts[0].workerId) ?? 0) + 1);
      const transitions = await store.getTransitions({ attemptId: attempts[0].id });
      expect(transitions.length).toBe(1);
      const spans = await store.getSpans({ attemptId: attempts[0].id });
      expect(spans.map((s) => s.kind).sort()).toEqual(["custom", "llm"]);
    }
    // Both processes did work, and their own counts agree with the store's.
    expect([...perWorker.keys()].sort()).toEqual(["w1", "w2"]);
    for (const w of [w1, w2]) {
      const id = w === w1 ? "w1" : "w2";
      const succeeded = w.output().match(/\] succeeded /g)?.length ?? 0;
      expect(succeeded, w.output()).toBe(perWorker.get(id));
      expect(w.output()).toContain(`stopped: ${perWorker.get(id)} claimed, ${perWorker.get(id)} succeeded, 0 failed`);
    }
  });

  it("retries a rollout whose worker process is SIGKILLed mid-rollout, keeping what it recorded", async () => {
    const store = t.server.store;
    const rollout = await store.enqueueRollout({
      input: { kind: "hang", index: 0, reward: 0 },
      config: { maxAttempts: 2, unresponsiveTimeoutMs: 2500 },
    });
    const doomed = await spawnWorker(["--concurrency", "1", "--worker-id", "doomed", "--heartbeat-ms", "200"]);
    const [first] = await waitFor("the doomed worker's reward", async () => {
      const rewards = await store.getRewards({ rolloutId: rollout.id });
      return rewards.length > 0 ? rewards : null;
    });
    // Alive past the unresponsive timeout: its heartbeats keep the attempt running.
    await new Promise((done) => setTimeout(done, 2800));
    expect((await store.getAttempt(first.attemptId)).status).toBe("running");
    doomed.child.kill("SIGKILL");
    expect(await doomed.exited).toBeNull();

    await waitFor(
      "the sweeper to requeue the rollout",
      async () => (await store.getRollout(rollout.id)).status === "requeuing",
    );
    const dead = await store.getAttempt(first.attemptId);
    expect(dead.status).toBe("unresponsive");
    expect(dead.workerId).toBe("doomed");
    expect(dead.error?.message).toBeTruthy();
    expect(dead.reward).toBe(0.25);

    // A healthy runner picks the retry up.
    const runner = new Runner({ store, agent: () => 1, serverUrl: t.server.url, model: "tiny", pollMs: 20 });
    runner.start();
    const [done] = await store.waitForRollouts([rollout.id], { timeoutMs: 10_000 });
    await runner.stop();
    expect(done.status).toBe("succeeded");
    expect(done.attemptCount).toBe(2);
    expect(done.finalReward).toBe(1);
    const attempts = await store.listAttempts(rollout.id);
    expect(attempts.map((a) => a.status)).toEqual(["unresponsive", "succeeded"]);
    const spans = await store.getSpans({ attemptId: first.attemptId });
    expect(spans.map((s) => `${s.kind}:${s.name}`)).toEqual(["tool:before-hang", "reward:reward"]);
    expect(spans.every((s) => !s.late)).toBe(true);
    expect((await store.getRewards({ attemptId: first.attemptId })).map((r) => r.value)).toEqual([0.25]);
  });

  it("works against a server that requires an API key, for store calls and LLM calls alike", async () => {
    const keyed = await startTestServer("keyed", { apiKey: "s3cret" });
    try {
      const rollout = await keyed.server.store.enqueueRollout({ input: { kind: "llm", index: 0, reward: 0.5 } });
      const denied = await spawnWorker(["--worker-id", "nokey"], keyed).catch((error: Error) => error);
      expect(String(denied)).toMatch(/answered HTTP 401/);
      const worker = await spawnWorker(["--worker-id", "keyed", "--api-key", "s3cret"], keyed);
      const [done] = await keyed.server.store.waitForRollouts([rollout.id], { timeoutMs: 20_000 });
      worker.child.kill("SIGTERM");
      expect(await worker.exited).toBe(0);
      expect(done.status).toBe("succeeded");
      expect(done.finalReward).toBe(0.5);
      await keyed.server.recorder.flush();
      expect((await keyed.server.store.getTransitions({ rolloutId: rollout.id })).length).toBe(1);
    } finally {
      await keyed.close();
    }
  });

  it("loads the examples as worker agents (named export `agent`)", async () => {
    for (const name of ["openai-agent", "langchain-agent", "ai-sdk-agent"]) {
      expect(typeof (await loadAgent(`examples/${name}.ts`))).toBe("function");
    }
    expect(typeof (await loadAgent(AGENT))).toBe("function"); // default export
    await expect(loadAgent("examples/missing.ts")).rejects.toThrow(/cannot load agent module examples\/missing\.ts/);
  });

  it("answers --help and rejects bad flags with clear messages", async () => {
    expect(await runWorker(["--help"])).toBe(0);
    await expect(runWorker(["--agent", AGENT])).rejects.toThrow(/--server URL is required/);
    await expect(runWorker(["--server", t.server.url])).rejects.toThrow(/--agent PATH is required/);
    await expect(runWorker(["--server", t.server.url, "--agent", AGENT, "--concurrency", "0"])).rejects.toThrow(
      /--concurrency must be a positive integer/,
    );
    await expect(runWorker(["--server", t.server.url, "--agent", AGENT, "--mode", "prod"])).rejects.toThrow(
      /--mode must be one of/,
    );
    await expect(
      runWorker(["--server", t.server.url, "--agent", resolve(ROOT, "test/runner/harness.ts")]),
    ).rejects.toThrow(/must export the agent function/);
  });
});
