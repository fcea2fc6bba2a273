// LLM judges against a real Fulgur server serving the built-in model (createApp + LocalBackend +
// serveApp, every HTTP request counted on the way in). The tiny model is no judge, so these check
// the mechanics: the constrained answer parses into one in-range score per candidate, the cache
// saves the call (memory and file), a GRPO group run by the real Runner is judged in one call and
// the scores become the rollouts' rewards, judge calls stay out of the attempts' transitions, and
// every failure is a clear error (a crashed judge fails the attempt instead of hanging it). A
// second small Hono server plays a misbehaving upstream endpoint for the failure paths only.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hono } from "hono";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withAttemptTokens } from "../../src/http/auth.ts";
import { type RunningServer, serveApp } from "../../src/http/serve.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { LocalBackend } from "../../src/proxy/local.ts";
import { flushingBeforeFinish } from "../../src/proxy/recorder.ts";
import { createJudge, JUDGE_USER, JudgeError, parseVerdicts } from "../../src/runner/judge.ts";
import { GroupJudge } from "../../src/runner/judge-group.ts";
import { Runner } from "../../src/runner/runner.ts";
import type { AgentContext } from "../../src/runner/types.ts";
import { createApp } from "../../src/server.ts";
import { openStore } from "../../src/store/libsql.ts";
import type { Store } from "../../src/store/types.ts";
import { waitFor } from "./harness.ts";

const MODEL = "fulgur-calc";
let model: Model;
let store: Store;
let server: RunningServer;
let flush: () => Promise<void>;
let dir: string;
/** Chat requests that reached the server, by who made them. */
const seen = { judge: 0, agent: 0 };
/** Requests the server did not answer 200, for the failure messages. */
const refused: string[] = [];
/** The latest judge request's messages. */
let lastJudgeMessages: { role: string; content: string }[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-judge-"));
  model = await loadModel(`models/${MODEL}`, { maxSeqLen: 512 });
  store = await openStore(`file:${join(dir, "store.db")}`);
  const composed = createApp({ store, backend: new LocalBackend(model, { modelId: MODEL }) });
  flush = () => composed.recorder.flush();
  const outer = new Hono();
  outer.all("*", async (c) => {
    if (c.req.method === "POST" && c.req.path.endsWith("/chat/completions")) {
      const body = (await c.req.raw.clone().json()) as { user?: string; messages: typeof lastJudgeMessages };
      if (body.user === JUDGE_USER) {
        seen.judge++;
        lastJudgeMessages = body.messages;
      } else seen.agent++;
    }
    const res = await composed.app.fetch(c.req.raw);
    if (res.status !== 200) refused.push(`${c.req.method} ${c.req.path} ${res.status} ${await res.clone().text()}`);
    return res;
  });
  server = await serveApp(outer);
}, 180_000);

afterAll(async () => {
  await server?.close();
  await flush?.();
  await store?.close();
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const TASK = "What is 7 + 5?";
const CANDIDATES = ["12", "The answer is 13.", "7 + 5 = 12", "I do not know."];

describe("judge on the served model", () => {
  it("scores a group in one constrained call; the cache (memory, then file) makes no second call", async () => {
    // Without reasons: four candidates' prompt and answer fit the built-in model's 512 tokens.
    const judge = createJudge({
      baseURL: `${server.url}/v1`,
      model: MODEL,
      rubric: "Correct arithmetic.",
      reasons: false,
    });
    const before = seen.judge;
    const verdicts = await judge.scoreGroup(TASK, CANDIDATES);
    expect(seen.judge - before).toBe(1);
    expect(verdicts.map((v) => v.id)).toEqual(["1", "2", "3", "4"]);
    for (const v of verdicts) {
      expect(Number.isInteger(v.score)).toBe(true);
      expect(v.score).toBeGreaterThanOrEqual(0);
      expect(v.score).toBeLessThanOrEqual(10);
      expect(v.reward).toBeCloseTo(v.score / 10, 12);
      expect(v.reason).toBe("");
    }
    // Scoring the same group again is answered from memory: same verdicts, no HTTP request.
    expect(await judge.scoreGroup(TASK, CANDIDATES)).toEqual(verdicts);
    expect(seen.judge - before).toBe(1);
    expect(judge.stats).toEqual({ calls: 1, cacheHits: 1 });
    // A different rubric is a different question; with reasons, each score comes with its text.
    const strict = createJudge({ baseURL: `${server.url}/v1`, model: MODEL, rubric: "Brevity.", maxTokens: 200 });
    const one = await strict.score(TASK, CANDIDATES[0]);
    expect(one.id).toBe("1");
    expect(typeof one.reason).toBe("string");
    expect(one.score).toBeGreaterThanOrEqual(0);
    expect(one.score).toBeLessThanOrEqual(10);
    expect(seen.judge - before).toBe(2);

    // A file cache survives the judge: a new judge over the same file makes no call.
    const file = join(dir, "judge-cache.jsonl");
    const first = createJudge({
      baseURL: `${server.url}/v1`,
      model: MODEL,
      cache: file,
      reasons: false,
      rubric: "Correct.",
    });
    const scored = await first.scoreGroup(TASK, CANDIDATES);
    expect(seen.judge - before).toBe(3);
    expect(readFileSync(file, "utf8").trim().split("\n")).toHaveLength(1);
    const second = createJudge({
      baseURL: `${server.url}/v1`,
      model: MODEL,
      cache: file,
      reasons: false,
      rubric: "Correct.",
    });
    expect(await second.scoreGroup(TASK, CANDIDATES)).toEqual(scored);
    expect(second.stats).toEqual({ calls: 0, cacheHits: 1 });
    expect(seen.judge - before).toBe(3);

    // Judge calls at the root /v1 are stored unattributed, named by `user`: never an attempt's.
    await flush();
    const unattributed = await store.getTransitions({ unattributed: true });
    const judged = unattributed.filter((t) => (t.metadata as { agent?: string }).agent === JUDGE_USER);
    expect(judged.length).toBe(3);
    for (const t of judged) {
      expect(t.rolloutId).toBeNull();
      expect((t.metadata as { constrained?: string }).constrained).toBe("json_schema");
    }
  }, 300_000);

  it("a prompt over the model's context is the server's 400, as a JudgeError naming it", async () => {
    const judge = createJudge({ baseURL: `${server.url}/v1`, model: MODEL });
    const long = "one two three four five six seven eight nine ten ".repeat(60);
    const error = await judge.scoreGroup(TASK, [long, long]).catch((e) => e);
    expect(error).toBeInstanceOf(JudgeError);
    expect(error.status).toBe(400);
    expect(error.message).toMatch(/HTTP 400: .*context/i);
    expect(judge.stats.calls).toBe(1); // a 400 is not retried
  }, 120_000);
});

interface Task {
  question: string;
}

let agentRuns = 0;

/** A real agent: asks the served model through its attempt URL, then lets the judge score its transcript. */
async function judgedAgent(task: Task, ctx: AgentContext): Promise<number> {
  const client = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey });
  const messages = [{ role: "user" as const, content: task.question }];
  const res = await client.chat.completions.create(
    // Greedy and short: the four transcripts must fit the judge prompt in the built-in model's 512 tokens.
    { model: ctx.llm.model, messages, temperature: 0, max_tokens: 6 },
    { signal: ctx.signal },
  );
  // Numbered, so the transcripts of a group differ (identical ones would share a cached verdict).
  const answer = `${res.choices[0].message.content} (run ${++agentRuns})`;
  return ctx.judge.relative(task, [...messages, { role: "assistant", content: answer }]);
}

async function runGroup(groupId: string, concurrency: number) {
  const task: Task = { question: `What is ${groupId.length} + 2?` };
  const rollouts = await store.enqueueRollouts(
    Array.from({ length: 4 }, () => ({ input: task as never, mode: "train" as const, groupId })),
  );
  const ids = rollouts.map((r) => r.id);
  const runner = new Runner({
    store,
    agent: judgedAgent as never,
    serverUrl: server.url,
    model: MODEL,
    concurrency,
    judge: { rubric: "Correct.", reasons: false, maxTokens: 96 },
    settleMs: 0,
  });
  const judgeBefore = seen.judge;
  const agentBefore = seen.agent;
  runner.start();
  const done = await store.waitForRollouts(ids, { timeoutMs: 240_000 });
  await runner.stop();
  const errors = await Promise.all(done.map(async (r) => (await store.getAttempt(r.currentAttemptId!)).error?.message));
  expect(errors).toEqual([undefined, undefined, undefined, undefined]);
  expect(done.map((r) => r.status)).toEqual(["succeeded", "succeeded", "succeeded", "succeeded"]);
  return { done, judgeCalls: seen.judge - judgeBefore, agentCalls: seen.agent - agentBefore };
}

describe("ctx.judge.relative in the Runner", () => {
  it("a group of 4 rollouts is judged in one call; the scores become the rollouts' rewards", async () => {
    const { done, judgeCalls, agentCalls } = await runGroup("grp-a", 4);
    expect(refused.filter((r) => !r.includes("context length"))).toEqual([]);
    expect(agentCalls).toBe(4);
    expect(judgeCalls).toBe(1);
    for (const rollout of done) {
      const spans = await store.getSpans({ attemptId: rollout.currentAttemptId! });
      const span = spans.find((s) => s.name === "judge")!;
      expect(span.status?.code).toBe("ok");
      expect(span.attributes["judge.candidates"]).toBe(4);
      expect(span.attributes["judge.mode"]).toBe("relative");
      expect(rollout.finalReward).toBe(span.attributes["judge.reward"]);
      expect(rollout.finalReward).toBe((span.attributes["judge.score"] as number) / 10);
      // The attempt's transitions are the agent's own call only: the judge's is not trained.
      const transitions = await store.getTransitions({ attemptId: rollout.currentAttemptId! });
      expect(transitions.length).toBe(1);
      expect((transitions[0].metadata as { agent?: string }).agent).not.toBe(JUDGE_USER);
    }
  }, 300_000);

  it("fewer slots than the group: judged in parts as the slots fill, never a hang", async () => {
    const { done, judgeCalls } = await runGroup("grp-b", 2);
    expect(judgeCalls).toBe(2);
    for (const rollout of done) {
      const spans = await store.getSpans({ attemptId: rollout.currentAttemptId! });
      expect(spans.find((s) => s.name === "judge")!.attributes["judge.candidates"]).toBe(2);
    }
  }, 300_000);

  it("an agent may bring its own judge and rubric in the same line; its group is still one call", async () => {
    const own = createJudge({ baseURL: `${server.url}/v1`, model: MODEL, reasons: false, scale: { min: 1, max: 5 } });
    const agent = async (task: Task, ctx: AgentContext) =>
      ctx.judge.relative(task, `The answer is ${task.question.length}.`, { judge: own, rubric: "Says a number." });
    const rollouts = await store.enqueueRollouts(
      Array.from({ length: 3 }, () => ({
        input: { question: "What is 2 + 2?" },
        mode: "train" as const,
        groupId: "grp-own",
      })),
    );
    const runner = new Runner({ store, agent: agent as never, serverUrl: server.url, model: MODEL, settleMs: 0 });
    const before = seen.judge;
    runner.start();
    const done = await store.waitForRollouts(
      rollouts.map((r) => r.id),
      { timeoutMs: 120_000 },
    );
    await runner.stop();
    expect(own.stats.calls).toBe(1);
    expect(seen.judge - before).toBe(1);
    expect(lastJudgeMessages[0].content).toContain("Rubric: Says a number.");
    expect(lastJudgeMessages[0].content).toContain("integer 1 (worst) to 5 (best)");
    for (const rollout of done) {
      expect(rollout.status).toBe("succeeded");
      const span = (await store.getSpans({ attemptId: rollout.currentAttemptId! })).find((s) => s.name === "judge")!;
      expect(span.attributes["judge.candidates"]).toBe(3);
      expect(rollout.finalReward).toBe(((span.attributes["judge.score"] as number) - 1) / 4);
    }
  }, 300_000);

  it("with an API key the judge uses the runner's key at the root, never the agent's attempt token", async () => {
    const keyed = createApp({ store, backend: new LocalBackend(model, { modelId: MODEL }), apiKey: "judge-test-key" });
    const guarded = await serveApp(keyed.app);
    try {
      const tokens: string[] = [];
      const agent = async (task: Task, ctx: AgentContext) => {
        tokens.push(ctx.llm.apiKey);
        const client = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey });
        const res = await client.chat.completions.create({
          model: ctx.llm.model,
          messages: [{ role: "user", content: task.question }],
          max_tokens: 4,
        });
        return ctx.judge.relative(task, res.choices[0].message.content ?? "");
      };
      const rollouts = await store.enqueueRollouts(
        Array.from({ length: 2 }, () => ({
          input: { question: "What is 4 + 4?" },
          mode: "train" as const,
          groupId: "grp-key",
        })),
      );
      const judgeCalls = async () =>
        (await store.getTransitions({ unattributed: true })).filter(
          (t) => (t.metadata as { agent?: string }).agent === JUDGE_USER,
        ).length;
      const before = await judgeCalls();
      const runner = new Runner({
        // As the server hands it to in-process runners: claims carry attempt tokens.
        store: withAttemptTokens(flushingBeforeFinish(store, keyed.recorder), keyed.tokens!),
        agent: agent as never,
        serverUrl: guarded.url,
        model: MODEL,
        apiKey: "judge-test-key",
        judge: { reasons: false, rubric: "Correct." },
        settleMs: 0,
      });
      runner.start();
      const done = await store.waitForRollouts(
        rollouts.map((r) => r.id),
        { timeoutMs: 120_000 },
      );
      await runner.stop();
      await keyed.recorder.flush();
      expect(await judgeCalls()).toBe(before + 1);
      expect(tokens).toHaveLength(2);
      for (const token of tokens) expect(token).not.toBe("judge-test-key");
      for (const rollout of done) {
        const attempt = await store.getAttempt(rollout.currentAttemptId!);
        expect(attempt.error).toBeNull();
        expect(rollout.status).toBe("succeeded");
        const transitions = await store.getTransitions({ attemptId: attempt.id });
        expect(transitions.map((t) => (t.metadata as { agent?: string }).agent)).toEqual([null]);
        const span = (await store.getSpans({ attemptId: attempt.id })).find((s) => s.name === "judge")!;
        expect(span.attributes["judge.candidates"]).toBe(2);
      }
    } finally {
      await guarded.close();
      await keyed.recorder.flush();
    }
  }, 300_000);

  it("GroupJudge: a group member that never comes is waited for only until the group timeout; an abort leaves", async () => {
    const judge = createJudge({ baseURL: `${server.url}/v1`, model: MODEL, reasons: false, rubric: "Short." });
    const groups = new GroupJudge({ judge, store, groupTimeoutMs: 500, pollMs: 50 });
    // Three rollouts of the group queued; nobody claims them, so they stay active in the store.
    const [a, b, c] = await store.enqueueRollouts(
      Array.from({ length: 3 }, () => ({ input: { q: 1 }, mode: "train" as const, groupId: "grp-wait" })),
    );
    const controller = new AbortController();
    const left = groups.submit({
      groupId: "grp-wait",
      rolloutId: b.id,
      task: "t",
      trajectory: "7",
      signal: controller.signal,
    });
    expect(groups.waiting()).toBe(1);
    controller.abort(new Error("gone"));
    await expect(left).rejects.toThrow("gone");
    expect(groups.waiting()).toBe(0);
    // b and c are still queued (a too: nobody claimed it), so only the group timeout let this through.
    const alone = await groups.submit({ groupId: "grp-wait", rolloutId: a.id, task: "t", trajectory: "12" });
    const active = await store.listRollouts({ groupId: "grp-wait", status: ["queuing"] });
    expect(active.map((r) => r.id).sort()).toEqual([a.id, b.id, c.id].sort());
    expect(alone.candidates).toBe(1);
    expect(judge.stats.calls).toBe(1);
    // Once the others are final (here: cancelled), the rest is complete without waiting.
    await store.cancelRollout(b.id);
    await store.cancelRollout(c.id);
    const quick = await groups.submit({ groupId: "grp-wait", rolloutId: a.id, task: "t", trajectory: "13" });
    expect(quick.candidates).toBe(1);
    expect(judge.stats.calls).toBe(2);
    await store.cancelRollout(a.id); // so the later runners in this file do not claim it
  }, 120_000);

  it("a rollout without a group is scored against the rubric alone", async () => {
    const [rollout] = await store.enqueueRollouts([{ input: { question: "What is 3 + 3?" }, mode: "val" }]);
    const runner = new Runner({
      store,
      agent: judgedAgent as never,
      serverUrl: server.url,
      model: MODEL,
      judge: { reasons: false },
      settleMs: 0,
    });
    const before = seen.judge;
    runner.start();
    const [done] = await store.waitForRollouts([rollout.id], { timeoutMs: 120_000 });
    await runner.stop();
    expect(done.status).toBe("succeeded");
    expect(seen.judge - before).toBe(1);
    const span = (await store.getSpans({ attemptId: done.currentAttemptId! })).find((s) => s.name === "judge")!;
    expect(span.attributes["judge.mode"]).toBe("rubric");
    expect(span.attributes["judge.candidates"]).toBe(1);
    expect(done.finalReward).toBe(span.attributes["judge.reward"]);
  }, 300_000);
});

describe("judge failures (a misbehaving upstream endpoint)", () => {
  let upstream: RunningServer;
  const hits: Record<string, number> = {};
  const answer = (content: string, finish = "stop") => ({
    id: "x",
    object: "chat.completion",
    created: 0,
    model: "m",
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: finish }],
  });

  beforeAll(async () => {
    const app = new Hono();
    app.post("/:mode/v1/chat/completions", async (c) => {
      const mode = c.req.param("mode");
      hits[mode] = (hits[mode] ?? 0) + 1;
      if (mode === "slow") await new Promise((done) => setTimeout(done, 2000));
      if (mode === "prose") return c.json(answer("Candidate 1 is better, I'd say 8."));
      if (mode === "missing") return c.json(answer('{"scores": {"1": {"score": 3}}}'));
      if (mode === "range") return c.json(answer('{"scores": {"1": {"score": 11}, "2": {"score": 2}}}'));
      if (mode === "cut") return c.json(answer('{"scores": {"1": {"reason": "Becau', "length"));
      if (mode === "bad")
        return c.json({ error: { message: "unknown model 'm'", type: "invalid_request_error" } }, 404);
      if (mode === "down") return c.json({ error: { message: "overloaded" } }, 503);
      // Lenient parsing: fenced JSON, the array form, numeric strings.
      return c.json(
        answer(
          '```json\n{"scores": [{"id": "2", "score": "4", "reason": "b"}, {"id": 1, "score": 9, "reason": "a"}]}\n```',
        ),
      );
    });
    upstream = await serveApp(app);
  });
  afterAll(async () => {
    await upstream?.close();
  });

  const at = (mode: string, extra = {}) =>
    createJudge({ baseURL: `${upstream.url}/${mode}/v1`, model: "m", maxRetries: 1, ...extra });

  it("answers without constrained decoding are parsed leniently (fences, array form, numeric strings)", async () => {
    const verdicts = await at("ok").scoreGroup("t", ["a", "b"]);
    expect(verdicts.map((v) => [v.id, v.score, v.reason])).toEqual([
      ["1", 9, "a"],
      ["2", 4, "b"],
    ]);
  });

  it("unparsable, incomplete or out-of-range answers are a JudgeError after the retries", async () => {
    for (const [mode, why] of [
      ["prose", /holds no JSON object/],
      ["missing", /no score for candidate 2/],
      ["range", /scores candidate 1 11, not a number from 0 to 10/],
    ] as const) {
      const error = await at(mode)
        .scoreGroup("t", ["a", "b"])
        .catch((e) => e);
      expect(error).toBeInstanceOf(JudgeError);
      expect(error.message).toMatch(why);
      expect(error.message).toMatch(/after 2 tries/);
      expect(hits[mode]).toBe(2);
    }
    const cut = await at("cut")
      .scoreGroup("t", ["a", "b"])
      .catch((e) => e);
    expect(cut.message).toMatch(/cut off at max_tokens .*reasons: false/);
    expect(hits.cut).toBe(1);
  });

  it("error answers name the status and message; only 429/5xx are retried; unreachable is named", async () => {
    const bad = await at("bad")
      .scoreGroup("t", ["a"])
      .catch((e) => e);
    expect(bad).toBeInstanceOf(JudgeError);
    expect(bad.status).toBe(404);
    expect(bad.message).toMatch(/HTTP 404: unknown model 'm'/);
    expect(hits.bad).toBe(1);
    const down = await at("down")
      .scoreGroup("t", ["a"])
      .catch((e) => e);
    expect(down.status).toBe(503);
    expect(hits.down).toBe(2);
    // A port nothing listens on (a server we just closed).
    const gone = await serveApp(new Hono());
    await gone.close();
    const unreachable = await createJudge({ baseURL: `${gone.url}/v1`, model: "m", maxRetries: 0 })
      .score("t", "a")
      .catch((e) => e);
    expect(unreachable).toBeInstanceOf(JudgeError);
    expect(unreachable.message).toMatch(/is unreachable/);
  });

  it("a judge that does not answer: timeoutMs is a JudgeError; the caller's signal stops waiting", async () => {
    const timedOut = await at("slow", { timeoutMs: 200, maxRetries: 0 })
      .score("t", "a")
      .catch((e) => e);
    expect(timedOut).toBeInstanceOf(JudgeError);
    expect(timedOut.message).toMatch(/unreachable: no answer within 200 ms/);
    const controller = new AbortController();
    const reason = new Error("attempt timed out");
    setTimeout(() => controller.abort(reason), 100);
    const judge = at("slow");
    const aborted = await judge.score("t", "b", { signal: controller.signal }).catch((e) => e);
    expect(aborted).toBe(reason);
    // An identical call made meanwhile shares the request, and is not aborted with the first caller.
    const shared = await judge.score("t", "b");
    expect(shared.score).toBe(9);
    expect(hits.slow).toBe(2);
  });

  it("parseVerdicts refuses a candidate scored twice", () => {
    expect(() =>
      parseVerdicts('{"scores": [{"id": "1", "score": 1}, {"id": "1", "score": 2}]}', ["1"], { min: 0, max: 10 }),
    ).toThrow(/scores candidate 1 twice/);
  });

  it("a crashed judge fails the attempt with its error instead of hanging it", async () => {
    const rollouts = await store.enqueueRollouts(
      Array.from({ length: 2 }, () => ({
        input: { question: "What is 1 + 1?" },
        mode: "train" as const,
        groupId: "grp-crash",
        config: { maxAttempts: 1 },
      })),
    );
    const runner = new Runner({
      store,
      agent: judgedAgent as never,
      serverUrl: server.url,
      model: MODEL,
      judge: { baseURL: `${upstream.url}/prose/v1`, model: "m", maxRetries: 0 },
      settleMs: 0,
    });
    runner.start();
    const done = await store.waitForRollouts(
      rollouts.map((r) => r.id),
      { timeoutMs: 120_000 },
    );
    await runner.stop();
    for (const rollout of done) {
      expect(rollout.status).toBe("failed");
      const attempt = await store.getAttempt(rollout.currentAttemptId!);
      expect(attempt.status).toBe("failed");
      expect(attempt.error?.type).toBe("JudgeError");
      expect(attempt.error?.message).toMatch(/holds no JSON object/);
      const span = (await store.getSpans({ attemptId: attempt.id })).find((s) => s.name === "judge")!;
      expect(span.status?.code).toBe("error");
    }
    await waitFor("runner stats", async () => runner.stats.failed === 2);
  }, 180_000);
});
