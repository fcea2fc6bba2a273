// Today's agent frameworks, unchanged, against a real Fulgur server (the built-in fulgur-calc
// model on the GPU, a file store, any model name accepted as the READMEs hard-code theirs):
//   - each library's first documented example, taken at test time from the README of the version
//     installed (node_modules/<pkg>/README.md) and run as its own Node process with only
//     OPENAI_BASE_URL (ANTHROPIC_BASE_URL for the Anthropic SDK) pointing at an attempt (so an
//     upgrade that changes the example is tested);
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
    // The Anthropic SDK's README example asks for max_tokens 1024, which must fit with its prompt.
    maxSeqLen: 2048,
    acceptAnyModel: true,
  });
});

afterAll(async () => {
  await server?.shutdown();
  rmSync(dir, { recursive: true, force: true });
  rmSync(SCRATCH, { recursive: true, force: true });
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
        // Anthropic's SDK appends /v1/messages itself.
        ANTHROPIC_BASE_URL: ctx.llm.baseURL.replace(/\/v1$/, ""),
        ANTHROPIC_API_KEY: ctx.llm.apiKey,
      },
    });
    output.push(stdout);
    return 1;
  };
}

/** The first JavaScript/TypeScript code block of the installed `pkg`'s README that contains `marker`. */
function readmeExample(pkg: string, marker: string): string {
  const readme = readFileSync(join(ROOT, "node_modules", pkg, "README.md"), "utf8");
  for (const m of readme.matchAll(/```(?:ts|typescript|js|javascript)\n([\s\S]*?)```/g)) {
    if (m[1].includes(marker)) return m[1];
  }
  throw new Error(`${pkg}'s README has no code block with ${JSON.stringify(marker)}`);
}

/** `code` with `from` replaced by `to`; throws when `from` is not there (the README changed). */
function edit(code: string, from: string, to: string): string {
  if (!code.includes(from)) throw new Error(`expected ${JSON.stringify(from)} in:\n${code}`);
  return code.replace(from, to);
}

/**
 * `@langchain/openai`'s example needs two fixes to run on LangChain 1.x: the `HumanMessage` import
 * it leaves out, and the message in a list (`invoke(new HumanMessage(…))` throws
 * "promptValue.toChatMessages is not a function" in 1.x).
 */
function langchainExample(): string {
  const code = readmeExample("@langchain/openai", "new ChatOpenAI(");
  return edit(
    `import { HumanMessage } from "@langchain/core/messages";\n${code}`,
    'invoke(new HumanMessage("Hello world!"))',
    'invoke([new HumanMessage("Hello world!")])',
  );
}

// Inside the repo (git-ignored /tmp/) so the scripts' imports resolve from its node_modules.
const SCRATCH = join(ROOT, "tmp/readme-examples");

describe("each library's first README example, unchanged", () => {
  it.each([
    // The first example after the install instructions, on the Responses API.
    ["openai: client.responses.create", () => readmeExample("openai", "client.responses.create("), /^resp_/],
    // "Build an agent": the default model (the SDK's own default name) on the Responses API.
    ["@openai/agents: run() on the default model", () => readmeExample("@openai/agents", "await run("), /^resp_/],
    // The default provider instance, whose `openai(modelId)` is the Responses API.
    [
      "@ai-sdk/openai: generateText({model: openai(id)})",
      () => readmeExample("@ai-sdk/openai", "generateText("),
      /^resp_/,
    ],
    ["@langchain/openai: ChatOpenAI.invoke (chat completions by default)", langchainExample, /^chatcmpl-/],
    // The Messages API, with ANTHROPIC_BASE_URL pointing at the attempt.
    [
      "@anthropic-ai/sdk: client.messages.create",
      () => readmeExample("@anthropic-ai/sdk", "client.messages.create("),
      /^msg_/,
    ],
    [
      "@langchain/openai: ChatOpenAI({useResponsesApi: true})",
      () =>
        edit(
          langchainExample(),
          'model: "gpt-4-1106-preview",',
          'model: "gpt-4-1106-preview",\n  useResponsesApi: true,',
        ),
      /^resp_/,
    ],
  ])("%s", async (name, example, idPattern) => {
    mkdirSync(SCRATCH, { recursive: true });
    const script = join(SCRATCH, `${name.replace(/[^a-z0-9]+/gi, "-")}.mjs`);
    writeFileSync(script, example());
    const output: string[] = [];
    const transitions = await oneRollout(scriptAgent(script, output));
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
    mkdirSync(SCRATCH, { recursive: true });
    const script = join(SCRATCH, "snippet.mjs");
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
