// Prompt optimisation (APO) with real components: a Fulgur server (libSQL file store, the proxy
// in front of an upstream over HTTP), the in-process Runner running an agent that reads its
// prompt template from the rollout's resources and calls the LLM with the official `openai`
// client, and APO as an `Algorithm` talking to its optimiser LLM over HTTP. The LLM is a scripted
// deterministic service (test/trainer/apo-llm-server.ts): what is under test is the algorithm,
// the store, the runner and the HTTP between them. The pure parts (transcripts, rewrite parsing,
// template helpers) are checked on their own.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { formatPrompt, promptTemplate, templateFields } from "../../src/prompt-template.ts";
import { Runner } from "../../src/runner/runner.ts";
import type { Agent } from "../../src/runner/types.ts";
import { type FulgurServer, startServer } from "../../src/server.ts";
import { openStore } from "../../src/store/libsql.ts";
import type { JsonValue, Transition } from "../../src/store/types.ts";
import type { AlgorithmContext, TrainerEvent } from "../../src/trainer/algorithm.ts";
import { createApo } from "../../src/trainer/apo.ts";
import { OptimizerLlmError } from "../../src/trainer/apo-llm.ts";
import { critiqueMessages, parseRewrite, renderRollout } from "../../src/trainer/apo-prompts.ts";
import { SCRIPTED_MODEL, type ScriptedLlm, startScriptedLlm } from "./apo-llm-server.ts";
import { agent, type FormatTask } from "./fixtures/format-agent.ts";

type Task = FormatTask;

const WORDS = ["red fox", "blue sky", "green tea", "old oak", "new moon", "cold rain", "warm sun", "dark night"];
const task = (text: string): Task => ({ text, want: `${text.toUpperCase()}.` });
const TRAIN = WORDS.slice(0, 6).map(task);
const VAL = WORDS.slice(6).concat(["tall tree", "soft snow"]).map(task);
const root = join(import.meta.dirname, "../..");
const INITIAL = "You are a helpful assistant. Repeat the user's text.";

interface Stack {
  dir: string;
  server: FulgurServer;
  runner: Runner;
  logs: Record<string, unknown>[];
  events: TrainerEvent<Task>[];
  ctx: AlgorithmContext<Task>;
  close(): Promise<void>;
}

/** A Fulgur server (upstream: `upstreamUrl`, or `modelDir` on the GPU) with a runner serving its store. */
async function startStack(
  agentFn: Agent<Task>,
  server: { upstreamUrl: string } | { modelDir: string },
  model: string,
): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), "fulgur-apo-"));
  const fulgur = await startServer({ ...server, storeUrl: `file:${join(dir, "store.db")}`, port: 0, maxSeqLen: 512 });
  const runner = new Runner({
    store: fulgur.store,
    agent: agentFn as Agent,
    serverUrl: fulgur.url,
    model,
    concurrency: 4,
    workerId: "apo-test",
  });
  runner.start();
  const logs: Record<string, unknown>[] = [];
  const events: TrainerEvent<Task>[] = [];
  return {
    dir,
    server: fulgur,
    runner,
    logs,
    events,
    ctx: {
      store: fulgur.store,
      async log(record) {
        logs.push(record);
      },
      emit: (e) => events.push(e),
    },
    async close() {
      await runner.stop();
      await fulgur.shutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn();
  cleanup = [];
});

describe("APO learning", () => {
  it("raises the validated reward by critiques and rewrites, and publishes the best prompt as the latest version", async () => {
    const llm: ScriptedLlm = await startScriptedLlm();
    cleanup.push(() => llm.close());
    const stack = await startStack(agent, { upstreamUrl: llm.baseURL }, SCRIPTED_MODEL);
    cleanup.push(() => stack.close());

    const apo = createApo<Task>({
      llm: { baseURL: llm.baseURL, model: SCRIPTED_MODEL },
      initialTemplate: INITIAL,
      beamWidth: 2,
      branchFactor: 2,
      minibatchSize: 4,
      seed: 0,
    });
    const result = await apo.fit(stack.ctx, { train: TRAIN, val: VAL }, 3);

    // The initial prompt earns nothing; the published winner is perfect on held-out tasks.
    expect(result.initialValReward).toBe(0);
    expect(result.validation[0]).toEqual({ step: 0, accuracy: 0, rewardMean: 0 });
    expect(result.best.valReward).toBe(1);
    expect(result.validation.at(-1)).toEqual({ step: 3, accuracy: 1, rewardMean: 1 });
    expect(result.best.template.startsWith(INITIAL)).toBe(true);
    expect(result.best.template).toMatch(/upper case/);
    expect(result.best.template).toMatch(/period/);
    expect(result.best.template).not.toMatch(/lower case/);
    const latest = await stack.server.store.getResources("prompt");
    expect(latest.version).toBe(result.best.version);
    expect(latest.value).toEqual({ template: result.best.template });

    // Beam search: candidates every round, the beam capped, the best round score never falling.
    expect(result.history).toHaveLength(3);
    for (const m of result.history) {
      expect(m.candidates).toBeGreaterThan(0);
      expect(m.beamSize).toBeLessThanOrEqual(2);
      expect(m.llmErrors).toBe(0);
    }
    expect(result.history.at(-1)!.bestScore).toBe(1);
    // A harmful rewrite ("lower case") was generated, scored and left out of the beam.
    const candidates = stack.logs.filter((l) => l.event === "apo-candidate");
    const harmful = candidates.filter((c) => String(c.template).includes("lower case"));
    expect(harmful.length).toBeGreaterThan(0);
    for (const c of harmful) expect(c.score).toBeLessThan(1);
    // The critiques came from the transcripts: the first names both failures the agent showed.
    const critiques = stack.logs.filter((l) => l.event === "apo-critique").map((l) => String(l.critique));
    expect(critiques[0]).toBe("The answers must be written in upper case. Each answer must end with a period.");
    expect(llm.requests.filter((r) => r.kind === "critique").length).toBe(critiques.length);

    // Every candidate's rollouts ran pinned to its resource version and recorded their LLM calls.
    const rollouts = await stack.server.store.listRollouts({ limit: 1000 });
    const versions = new Set(rollouts.map((r) => r.resourcesVersion));
    for (const c of candidates) expect(versions.has(c.version as number)).toBe(true);
    expect(rollouts.every((r) => r.resourcesName === "prompt" && r.status === "succeeded")).toBe(true);
    const calls = await stack.server.store.getTransitions({ rolloutId: rollouts[0].id });
    expect(calls).toHaveLength(1);
    // Step metrics and validation are in the store (dashboard) and reported to listeners.
    const steps = await stack.server.store.listTrainingSteps();
    expect(steps.filter((s) => "bestScore" in s.metrics)).toHaveLength(3);
    expect(stack.events.filter((e) => e.type === "step")).toHaveLength(3);
    expect(stack.events.filter((e) => e.type === "validation")).toHaveLength(2);
  });

  it("starts from the resource's latest version and keeps its other fields", async () => {
    const llm = await startScriptedLlm();
    cleanup.push(() => llm.close());
    const stack = await startStack(agent, { upstreamUrl: llm.baseURL }, SCRIPTED_MODEL);
    cleanup.push(() => stack.close());
    await stack.server.store.addResources("prompt", { template: INITIAL, owner: "team-a" });
    const apo = createApo<Task>({ llm: { baseURL: llm.baseURL, model: SCRIPTED_MODEL }, minibatchSize: 3, seed: 1 });
    const result = await apo.fit(stack.ctx, { train: TRAIN }, 2);
    const latest = await stack.server.store.getResources("prompt");
    expect(latest.value).toEqual({ template: result.best.template, owner: "team-a" });
    // Without held-out tasks the winner is the best on the last minibatch.
    expect(result.best.valReward).toBeNull();
    expect(result.history.at(-1)!.bestScore).toBeGreaterThan(0);
  });

  it("stops with a clear error when the optimiser LLM cannot be used", async () => {
    const llm = await startScriptedLlm();
    cleanup.push(() => llm.close());
    const stack = await startStack(agent, { upstreamUrl: llm.baseURL }, SCRIPTED_MODEL);
    cleanup.push(() => stack.close());
    const apo = createApo<Task>({ llm: { baseURL: llm.baseURL, model: "no-such-model" }, initialTemplate: INITIAL });
    await expect(apo.fit(stack.ctx, { train: TRAIN }, 1)).rejects.toThrow(/every optimiser LLM call of round 1 failed/);
    const error = stack.logs.find((l) => l.event === "apo-llm-error");
    expect(String(error?.error)).toMatch(/answered 404: model no-such-model not found/);
    expect(() => createApo({ llm: { baseURL: "", model: "x" } })).toThrow(/"llm" needs/);
    expect(() => createApo({ llm: { baseURL: llm.baseURL, model: "x" }, beamWidth: 0 })).toThrow(/beamWidth/);
    expect(new OptimizerLlmError("x", 500).status).toBe(500);
  });
});

describe("fulgur train with algorithm apo", () => {
  it("optimises the prompt from a config, the served model (here an upstream) as the optimiser", async () => {
    const llm = await startScriptedLlm();
    cleanup.push(() => llm.close());
    const dir = mkdtempSync(join(tmpdir(), "fulgur-apo-cli-"));
    cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
    const jsonl = (tasks: Task[]) => `${tasks.map((t) => JSON.stringify(t)).join("\n")}\n`;
    writeFileSync(join(dir, "train.jsonl"), jsonl(TRAIN));
    writeFileSync(join(dir, "val.jsonl"), jsonl(VAL));
    const config = {
      upstream: { baseURL: llm.baseURL, model: SCRIPTED_MODEL },
      agent: join(root, "test/trainer/fixtures/format-agent.ts"),
      tasks: { train: "train.jsonl", val: "val.jsonl" },
      steps: 3,
      store: "file:store.db",
      algorithm: { name: "apo", initialTemplate: INITIAL, beamWidth: 2, branchFactor: 2, minibatchSize: 4 },
      logFile: "apo.jsonl",
      output: "prompt.json",
    };
    writeFileSync(join(dir, "train.json"), JSON.stringify(config));
    // Asynchronous spawn: the scripted LLM answers from this process meanwhile.
    const child = spawn(
      join(root, "node_modules/.bin/tsx"),
      [join(root, "src/cli.ts"), "train", "--config", join(dir, "train.json"), "--json"],
      { cwd: root },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((done) => child.on("close", done));
    expect(code, stderr).toBe(0);
    const events = stdout
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l));
    expect(events.filter((e) => e.event === "step").map((e) => e.step)).toEqual([1, 2, 3]);
    expect(events.filter((e) => e.event === "validation").map((e) => e.rewardMean)).toEqual([0, 1]);
    const done = events.at(-1);
    expect(done).toMatchObject({ event: "done", algorithm: "apo", steps: 3 });
    const best = JSON.parse(readFileSync(join(dir, "prompt.json"), "utf8"));
    expect(best).toEqual(done.prompt);
    expect(best.valReward).toBe(1);
    // Critiques and rewrites went through Fulgur's own /v1 to the upstream.
    expect(llm.requests.filter((r) => r.kind === "critique").length).toBeGreaterThan(0);
    expect(readFileSync(join(dir, "apo.jsonl"), "utf8")).toContain('"event":"apo-best"');
    const store = await openStore(`file:${join(dir, "store.db")}`);
    try {
      const latest = await store.getResources("prompt");
      expect(latest).toMatchObject({ version: best.version, value: { template: best.template } });
      expect((await store.getTransitions({ unattributed: true })).length).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  });
});

describe("APO with the built-in model as the optimiser", () => {
  it("generates, scores and keeps candidates from a real local LLM's rewrites without crashing on junk", async () => {
    // The agent asks the served model too; its reward is a property of the template alone.
    const lengthAgent: Agent<Task> = async (t, ctx) => {
      const template = promptTemplate(ctx);
      const client = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey || "unused", maxRetries: 0 });
      await client.chat.completions.create({
        model: ctx.llm.model,
        messages: [
          { role: "system", content: template.slice(0, 200) },
          { role: "user", content: t.text },
        ],
        max_tokens: 4,
        temperature: 0,
      });
      return Math.min(1, template.length / 400);
    };
    const stack = await startStack(lengthAgent, { modelDir: "models/fulgur-calc" }, "fulgur-calc");
    cleanup.push(() => stack.close());
    const apo = createApo<Task>({
      llm: { baseURL: `${stack.server.url}/v1`, model: "fulgur-calc" },
      initialTemplate: "Answer briefly.",
      beamWidth: 2,
      branchFactor: 2,
      minibatchSize: 2,
      maxTokens: 24,
      // Requests and junk templates small enough for its 512-token context even at a token per byte.
      maxPromptChars: 400,
      maxTemplateChars: 100,
      seed: 3,
    });
    const result = await apo.fit(stack.ctx, { train: TRAIN.slice(0, 2), val: VAL.slice(0, 2) }, 2);
    expect(result.history).toHaveLength(2);
    let asked = 0;
    for (const m of result.history) {
      expect(m.llmErrors).toBe(0);
      expect(m.beamSize).toBeLessThanOrEqual(2);
      expect(Number.isFinite(m.bestScore)).toBe(true);
      asked += m.candidates + m.rejectedRewrites;
    }
    // Every rewrite asked for was either a scored candidate or a logged rejection.
    expect(asked).toBe(1 * 2 + result.history[0].beamSize * 2);
    const scored = stack.logs.filter((l) => l.event === "apo-candidate");
    expect(scored.length).toBe(result.history.reduce((n, m) => n + m.candidates, 0));
    expect(scored.length).toBeGreaterThan(0);
    // The optimiser's calls went through the proxy and were recorded (unattributed) in the store.
    const recorded = await stack.server.store.getTransitions({ unattributed: true });
    expect(recorded.length).toBeGreaterThanOrEqual(2 + asked);
    const latest = await stack.server.store.getResources("prompt");
    expect(latest.version).toBe(result.best.version);
    expect(latest.value).toEqual({ template: result.best.template });
    expect(result.best.valReward).toBe(Math.min(1, result.best.template.length / 400));
  });
});

describe("APO prompts and templates", () => {
  const transition = (messages: JsonValue[], response: JsonValue): Transition =>
    ({ messages, response }) as unknown as Transition;

  it("renders a rollout as task, conversation and reward within its budget", () => {
    const view = {
      input: { text: "red fox" },
      reward: 0.5,
      transitions: [
        transition(
          [
            { role: "system", content: "Be terse." },
            { role: "user", content: "red fox" },
          ],
          { role: "assistant", content: "RED FOX" },
        ),
      ],
    };
    expect(renderRollout(view, 500)).toBe(
      'Task: {"text":"red fox"}\n[system] Be terse.\n[user] red fox\n[assistant] RED FOX\nReward: 0.5',
    );
    expect(renderRollout({ ...view, reward: null, transitions: [] }, 500)).toBe(
      'Task: {"text":"red fox"}\n(no LLM calls recorded)\nReward: failed (counted as 0)',
    );
    const long = renderRollout({ ...view, input: { text: "x".repeat(5000) } }, 300);
    expect(long.length).toBeLessThanOrEqual(300);
    const request = critiqueMessages("Be terse.", [view, view], 2000);
    expect(request[1].content).toContain("<prompt>\nBe terse.\n</prompt>");
    expect(request[1].content).toContain("Rollout 2\nTask:");
  });

  it("parses rewrites and rejects empty, unchanged, oversized and placeholder-dropping ones", () => {
    const parent = "Solve {question} step by step.";
    expect(parseRewrite("Sure!\n<prompt>\nSolve {question} carefully.\n</prompt>", parent, 100)).toEqual({
      ok: true,
      template: "Solve {question} carefully.",
    });
    expect(parseRewrite("<prompt>a {question}</prompt> then <prompt>b {question}</prompt>", parent, 100)).toEqual({
      ok: true,
      template: "b {question}",
    });
    expect(parseRewrite("<prompt>\nAnswer {question} now.", parent, 100)).toEqual({
      ok: true,
      template: "Answer {question} now.",
    });
    expect(parseRewrite("```\nThink about {question}.\n```", parent, 100)).toEqual({
      ok: true,
      template: "Think about {question}.",
    });
    expect(parseRewrite("  ", parent, 100)).toEqual({ ok: false, reason: "empty" });
    expect(parseRewrite(`<prompt>${parent}</prompt>`, parent, 100)).toEqual({ ok: false, reason: "unchanged" });
    expect(parseRewrite("Solve it.", parent, 100)).toEqual({ ok: false, reason: "drops placeholder(s) {question}" });
    expect(parseRewrite(`{question} ${"y".repeat(200)}`, parent, 100)).toEqual({
      ok: false,
      reason: "longer than 100 characters",
    });
  });

  it("reads and fills prompt templates", () => {
    expect(promptTemplate({ resources: { template: "Hi {name}" } })).toBe("Hi {name}");
    expect(promptTemplate({ template: "T" })).toBe("T");
    expect(promptTemplate({ resources: null }, "fallback")).toBe("fallback");
    expect(() => promptTemplate({ resources: { other: 1 } })).toThrow(/no prompt template/);
    expect(templateFields("{a} and {b} and {a} but not { c } or {1x}")).toEqual(["a", "b"]);
    expect(formatPrompt("{a}/{b}/{c}", { a: "x", b: { n: 1 } })).toBe('x/{"n":1}/{c}');
  });
});
