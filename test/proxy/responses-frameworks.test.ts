// Agent frameworks on their Responses-API defaults, unchanged, through the proxy to the toy
// upstream (which calls the first tool whenever the last message is the user's and answers
// "The tool returned: …" after a tool result, so every tool loop below really runs two steps):
// the OpenAI Agents SDK's `run()` (plain and streamed), the AI SDK's default `openai(model)`
// provider (generateText and streamText with tools and a step limit), and LangChain's
// `ChatOpenAI({useResponsesApi: true})` with a bound tool, and a Mastra `Agent` whose model is
// `{id, url, apiKey, api: "responses"}`. Each step must be one recorded call.
import { createOpenAI } from "@ai-sdk/openai";
import { type BaseMessage, HumanMessage } from "@langchain/core/messages";
import { tool as langchainTool } from "@langchain/core/tools";
import { ChatOpenAI } from "@langchain/openai";
import { Agent as MastraAgent } from "@mastra/core/agent";
import { createTool } from "@mastra/core/tools";
import { Agent, tool as agentsTool, OpenAIProvider, Runner } from "@openai/agents";
import { tool as aiTool, generateText, stepCountIs, streamText } from "ai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { RecordedChatCall } from "../../src/proxy/backend.ts";
import { type ProxyHarness, startProxy, UPSTREAM_MODEL, until } from "./harness.ts";

// Mastra reports usage to a remote service unless told not to; tests are loopback only.
process.env.MASTRA_TELEMETRY_DISABLED = "1";

let h: ProxyHarness;
const ATTEMPT_PATH = "/rollouts/ro-fw/attempts/at-fw/v1";

beforeAll(async () => {
  h = await startProxy();
});
afterAll(async () => {
  await h.close();
});

async function newCalls(before: number, count: number): Promise<RecordedChatCall[]> {
  await until(() => h.recorder.calls.length >= before + count);
  await new Promise((r) => setTimeout(r, 30));
  expect(h.recorder.calls.length).toBe(before + count);
  return h.recorder.calls.slice(before) as RecordedChatCall[];
}

/** Both steps of a tool loop: a Responses call each, attributed, with exact token ids. */
function expectToolLoopRecorded(calls: RecordedChatCall[], city: string) {
  for (const call of calls) {
    expect(call.id).toMatch(/^resp_/);
    expect(call).toMatchObject({ kind: "chat", rolloutId: "ro-fw", attemptId: "at-fw", error: null });
    expect(call.outcome?.choices[0].tokenIds?.length).toBeGreaterThan(0);
    expect(call.outcome?.choices[0].logprobs?.length).toBe(call.outcome?.choices[0].tokenIds?.length);
  }
  expect(calls[0].outcome?.choices[0].toolCalls.map((c) => c.function.name)).toEqual(["get_weather"]);
  const second = calls[1].request.messages;
  expect(second.at(-1)).toMatchObject({ role: "tool", content: `sunny in ${city}` });
  expect(second.at(-2)).toMatchObject({ role: "assistant", tool_calls: [{ function: { name: "get_weather" } }] });
}

describe("OpenAI Agents SDK (@openai/agents) on the Responses API", () => {
  const weather = agentsTool({
    name: "get_weather",
    description: "Weather for a city",
    parameters: z.object({ query: z.string() }),
    execute: ({ query }) => `sunny in ${query}`,
  });

  function runner() {
    const openAIClient = h.clientAt(ATTEMPT_PATH);
    return new Runner({ modelProvider: new OpenAIProvider({ openAIClient }), tracingDisabled: true });
  }

  it("run() calls a function tool and answers", async () => {
    const before = h.recorder.calls.length;
    const agent = new Agent({
      name: "Weather",
      instructions: "Use the tool.",
      model: UPSTREAM_MODEL,
      tools: [weather],
    });
    const result = await runner().run(agent, "Oslo");
    expect(result.finalOutput).toBe("The tool returned: sunny in Oslo");
    const calls = await newCalls(before, 2);
    expectToolLoopRecorded(calls, "Oslo");
    expect(calls[0].request.messages[0]).toEqual({ role: "system", content: "Use the tool." });
  });

  it("run({stream: true}) streams the same loop", async () => {
    const before = h.recorder.calls.length;
    const agent = new Agent({
      name: "Weather",
      instructions: "Use the tool.",
      model: UPSTREAM_MODEL,
      tools: [weather],
    });
    const result = await runner().run(agent, "Rome", { stream: true });
    let text = "";
    for await (const event of result.toTextStream()) text += event;
    await result.completed;
    expect(result.finalOutput).toBe("The tool returned: sunny in Rome");
    expect(text).toBe("The tool returned: sunny in Rome");
    const calls = await newCalls(before, 2);
    expect(calls.every((c) => c.request.stream)).toBe(true);
    expectToolLoopRecorded(calls, "Rome");
  });
});

describe("AI SDK default provider (openai(model) = Responses API)", () => {
  const tools = {
    get_weather: aiTool({
      description: "Weather for a city",
      inputSchema: z.object({ query: z.string() }),
      execute: async ({ query }) => `sunny in ${query}`,
    }),
  };

  it("generateText with a tool runs two steps (store: true → the text comes back as an item_reference)", async () => {
    const before = h.recorder.calls.length;
    // Watch what the provider sends (the request still goes over HTTP as is).
    const sent: { input: { type?: string }[]; store?: boolean }[] = [];
    const openai = createOpenAI({
      baseURL: `${h.url}${ATTEMPT_PATH}`,
      apiKey: "unused",
      fetch: (url, init) => {
        sent.push(JSON.parse(String(init?.body)));
        return fetch(url, init);
      },
    });
    const result = await generateText({
      model: openai(UPSTREAM_MODEL),
      prompt: "think: Paris",
      tools,
      stopWhen: stepCountIs(3),
    });
    expect(result.steps).toHaveLength(2);
    expect(result.steps[0].text).toBe("Let me look that up.\n");
    expect(result.text).toBe("The tool returned: sunny in think: Paris");
    expect(result.steps[0].toolCalls.map((c) => c.toolName)).toEqual(["get_weather"]);
    const calls = await newCalls(before, 2);
    expectToolLoopRecorded(calls, "think: Paris");
    expect(sent[1].input.some((item) => item.type === "item_reference")).toBe(true);
    // The step's text and its call are one assistant turn again.
    expect(calls[1].request.messages.at(-2)).toMatchObject({ role: "assistant", content: "Let me look that up.\n" });
  });

  it("streamText with a tool runs two streamed steps", async () => {
    const before = h.recorder.calls.length;
    const openai = createOpenAI({ baseURL: `${h.url}${ATTEMPT_PATH}`, apiKey: "unused" });
    const result = streamText({ model: openai(UPSTREAM_MODEL), prompt: "Lima", tools, stopWhen: stepCountIs(3) });
    let text = "";
    for await (const delta of result.textStream) text += delta;
    expect(text).toBe("The tool returned: sunny in Lima");
    expect(await result.steps).toHaveLength(2);
    const calls = await newCalls(before, 2);
    expect(calls.every((c) => c.request.stream)).toBe(true);
    expectToolLoopRecorded(calls, "Lima");
  });
});

describe("LangChain ChatOpenAI({useResponsesApi: true})", () => {
  it("runs a bound tool and continues after its result", async () => {
    const before = h.recorder.calls.length;
    const weather = langchainTool(async ({ query }) => `sunny in ${query}`, {
      name: "get_weather",
      description: "Weather for a city",
      schema: z.object({ query: z.string() }),
    });
    const llm = new ChatOpenAI({
      model: UPSTREAM_MODEL,
      apiKey: "unused",
      configuration: { baseURL: `${h.url}${ATTEMPT_PATH}` },
      useResponsesApi: true,
    }).bindTools([weather]);
    const messages: BaseMessage[] = [new HumanMessage("Kyoto")];
    const first = await llm.invoke(messages);
    expect(first.tool_calls?.map((c) => c.name)).toEqual(["get_weather"]);
    messages.push(first);
    for (const call of first.tool_calls ?? []) messages.push(await weather.invoke(call));
    const second = await llm.invoke(messages);
    expect(second.text).toBe("The tool returned: sunny in Kyoto");
    expectToolLoopRecorded(await newCalls(before, 2), "Kyoto");
  });
});

describe('Mastra Agent with model {url, api: "responses"}', () => {
  function weatherAgent() {
    const getWeather = createTool({
      id: "get_weather",
      description: "Weather for a city",
      inputSchema: z.object({ query: z.string() }),
      execute: async ({ query }) => `sunny in ${query}`,
    });
    return new MastraAgent({
      id: "weather",
      name: "Weather",
      instructions: "Use the tool.",
      model: { id: `fulgur/${UPSTREAM_MODEL}`, url: `${h.url}${ATTEMPT_PATH}`, apiKey: "unused", api: "responses" },
      tools: { get_weather: getWeather },
    });
  }

  it("generate() runs a function tool over /v1/responses and answers", async () => {
    const before = h.recorder.calls.length;
    const agent = weatherAgent();
    const result = await agent.generate("Accra", { maxSteps: 3 });
    expect(result.text).toBe("The tool returned: sunny in Accra");
    expect(result.steps).toHaveLength(2);
    const calls = await newCalls(before, 2);
    expect(calls[0].request.model).toBe(UPSTREAM_MODEL);
    expect(calls[0].request.messages[0]).toEqual({ role: "system", content: "Use the tool." });
    expectToolLoopRecorded(calls, "Accra");
  });

  it("stream() streams the same loop", async () => {
    const before = h.recorder.calls.length;
    const result = await weatherAgent().stream("Quito", { maxSteps: 3 });
    let text = "";
    for await (const delta of result.textStream) text += delta;
    expect(text).toBe("The tool returned: sunny in Quito");
    expect(await result.text).toBe(text);
    const calls = await newCalls(before, 2);
    expect(calls.every((c) => c.request.stream)).toBe(true);
    expectToolLoopRecorded(calls, "Quito");
  });
});
