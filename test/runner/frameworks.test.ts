// Today's agent frameworks, unchanged, against a real Fulgur server (the built-in fulgur-calc
// model on the GPU, a file store, any model name accepted as the READMEs hard-code theirs):
//   - each library's first documented example (test/runner/fixtures/readme/, copied from its
//     README), run as its own Node process with only OPENAI_BASE_URL pointing at an attempt;
//   - the "Point an existing agent at Fulgur" snippet of our README, run as written (only the
//     host:port replaced);
//   - the Agents SDK and LangGraph calculator agents in examples/, one rollout each through the
//     Runner, as `fulgur train` would run them.
// The assertions are on protocol: the run succeeds and every call is recorded under its attempt
// with exact prompt/response token ids and one logprob per response token.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTasks } from "../../src/demo/tasks.ts";
import { loadAgent } from "../../src/runner/load-agent.ts";
import { Runner } from "../../src/runner/runner.ts";
import type { Agent } from "../../src/runner/types.ts";
import { type FulgurServer, startServer } from "../../src/server.ts";
import type { JsonValue, Transition } from "../../src/store/types.ts";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const MODEL = "fulgur-calc";
let server: FulgurServer;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-frameworks-"));
  server = await startServer({
    modelDir: join(ROOT, "models", MODEL),
    storeUrl: `file:${join(dir, "store.db")}`,
    port: 0,
    maxSeqLen: 1024,
    acceptAnyModel: true,
  });
});

afterAll(async () => {
  await server?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `agent` on one rollout through the Runner; returns the attempt's recorded transitions. */
async function oneRollout(agent: Agent, input: JsonValue = {}): Promise<Transition[]> {
  const store = server.store;
  const [rollout] = await store.enqueueRollouts([{ input, config: { maxAttempts: 1 } }]);
  const runner = new Runner({ store, agent, serverUrl: server.url, model: MODEL, pollMs: 20, concurrency: 1 });
  runner.start();
  const [ended] = await store.waitForRollouts([rollout.id], { timeoutMs: 120_000 }).finally(() => runner.stop());
  await server.recorder.flush();
  const [attempt] = await store.listAttempts(rollout.id);
  expect(attempt.error, JSON.stringify(attempt.error)).toBeNull();
  expect(ended.status).toBe("succeeded");
  expect([0, 1]).toContain(ended.finalReward);
  const transitions = await store.getTransitions({ attemptId: attempt.id });
  expect(transitions.length).toBeGreaterThanOrEqual(1);
  for (const tr of transitions) {
    expect(tr.rolloutId).toBe(rollout.id);
    expect(tr.promptIds.length).toBeGreaterThan(0);
    expect(tr.responseIds.length).toBeGreaterThan(0);
    expect(tr.responseLogprobs?.length).toBe(tr.responseIds.length);
    expect(tr.metadata?.error ?? null).toBeNull();
  }
  return transitions;
}

const callIds = (transitions: Transition[]) => transitions.map((tr) => String(tr.metadata?.callId));

/** An agent that runs a script as its own process with the attempt's URL in OPENAI_BASE_URL. */
function scriptAgent(script: string, output: string[]): Agent {
  return async (_task, ctx) => {
    const { stdout } = await run(process.execPath, [script], {
      cwd: ROOT,
      timeout: 120_000,
      env: {
        ...process.env,
        OPENAI_BASE_URL: ctx.llm.baseURL,
        OPENAI_API_KEY: ctx.llm.apiKey,
        OPENAI_AGENTS_DISABLE_TRACING: "1",
      },
    });
    output.push(stdout);
    return 1;
  };
}

const README_DIR = join(ROOT, "test/runner/fixtures/readme");

describe("each library's first README example, unchanged", () => {
  it.each([
    ["openai: client.responses.create", "openai.mjs", /^resp_/],
    ["@openai/agents: run() on the default model", "openai-agents.mjs", /^resp_/],
    ["@ai-sdk/openai: generateText({model: openai(id)})", "ai-sdk-openai.mjs", /^resp_/],
    ["@langchain/openai: ChatOpenAI.invoke (chat completions by default)", "langchain-openai.mjs", /^chatcmpl-/],
    ["@langchain/openai: ChatOpenAI({useResponsesApi: true})", "langchain-openai-responses.mjs", /^resp_/],
  ])("%s", async (_name, file, idPattern) => {
    const output: string[] = [];
    const transitions = await oneRollout(scriptAgent(join(README_DIR, file), output));
    expect(output).toHaveLength(1);
    for (const id of callIds(transitions)) expect(id).toMatch(idPattern);
  });
});

describe("our README's snippet, as written", () => {
  it("runs every client it shows against the server", async () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Point an existing agent at Fulgur"));
    const snippet = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(snippet).toContain('const baseURL = "http://127.0.0.1:8000/v1";');
    // Inside the repo so its imports resolve from node_modules; only the host:port changes.
    const scratch = join(ROOT, "node_modules/.cache/fulgur-readme");
    mkdirSync(scratch, { recursive: true });
    const script = join(scratch, "snippet.mjs");
    const output: string[] = [];
    let baseURL = "";
    const agent: Agent = async (task, ctx) => {
      baseURL = ctx.llm.baseURL;
      writeFileSync(script, snippet!.replace("http://127.0.0.1:8000/v1", ctx.llm.baseURL));
      return scriptAgent(script, output)(task, ctx);
    };
    const transitions = await oneRollout(agent);
    expect(baseURL).toMatch(/\/rollouts\/.+\/attempts\/.+\/v1$/);
    // responses.create, chat.completions.create, LangChain, the AI SDK and the Agents SDK.
    expect(transitions).toHaveLength(5);
    expect(callIds(transitions).map((id) => id.split(/[-_]/)[0])).toEqual([
      "resp",
      "chatcmpl",
      "chatcmpl",
      "resp",
      "resp",
    ]);
    rmSync(scratch, { recursive: true, force: true });
  });
});

describe("examples/ agents, one rollout each as fulgur train runs them", () => {
  const [task] = makeTasks(7, 1, "fw");

  it("examples/agents-sdk-agent.ts (OpenAI Agents SDK)", async () => {
    // Loaded the way `fulgur train` / `fulgur worker` load an agent module.
    const transitions = await oneRollout(await loadAgent(join(ROOT, "examples/agents-sdk-agent.ts")), { ...task });
    for (const id of callIds(transitions)) expect(id).toMatch(/^resp_/);
    const prompt = server.model!.tokenizer.decode(Array.from(transitions[0].promptIds));
    expect(prompt).toContain("calculator");
    expect(prompt).toContain(task.question);
  });

  it("examples/langgraph-agent.ts (LangGraph)", async () => {
    const transitions = await oneRollout(await loadAgent(join(ROOT, "examples/langgraph-agent.ts")), { ...task });
    for (const id of callIds(transitions)) expect(id).toMatch(/^resp_/);
    const prompt = server.model!.tokenizer.decode(Array.from(transitions[0].promptIds));
    expect(prompt).toContain("calculator");
    expect(prompt).toContain(task.question);
  });
});
