// Structured output on the real server with the built-in model (a poor JSON writer): real
// clients' structured-output helpers — openai `chat.completions.parse` + `zodResponseFormat` and
// `responses.parse` + `zodTextFormat`, the AI SDK's `generateObject` and `Output.object` (default
// Responses provider), LangChain's `withStructuredOutput` (chat and Responses), the Agents SDK's
// `outputType` — get output that parses and validates because decoding is constrained on the GPU;
// `tool_choice` "required" and a named function (chat, Responses; Messages `any`/`tool`) always
// yield that tool call; unsupported schema features are a 400 naming them; and the recorded
// transitions say their logprobs are masked and carry the unmasked ones.
import { createOpenAI } from "@ai-sdk/openai";
import Anthropic from "@anthropic-ai/sdk";
import { ChatOpenAI } from "@langchain/openai";
import { Agent, OpenAIProvider, Runner } from "@openai/agents";
import { generateObject, generateText, Output } from "ai";
import OpenAI from "openai";
import { zodResponseFormat, zodTextFormat } from "openai/helpers/zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { type FulgurServer, startServer } from "../../src/server.ts";

const MODEL = "fulgur-calc";
let server: FulgurServer;

beforeAll(async () => {
  server = await startServer({ modelDir: `models/${MODEL}`, storeUrl: ":memory:", port: 0, maxSeqLen: 512 });
}, 120_000);

afterAll(async () => {
  await server?.shutdown();
});

async function attempt(): Promise<{ attemptId: string; baseURL: string }> {
  await server.store.enqueueRollout({ input: { task: "structured" } });
  const claim = await server.store.claimRollout({ workerId: "structured-test" });
  const attemptId = claim!.attempt.id;
  return { attemptId, baseURL: `${server.url}/rollouts/${claim!.rollout.id}/attempts/${attemptId}/v1` };
}

const Answer = z.object({
  answer: z.number(),
  unit: z.string(),
  steps: z.array(z.string()),
  confident: z.boolean(),
  kind: z.enum(["sum", "difference"]),
  note: z.string().nullable(),
});

const calcTool = {
  type: "function" as const,
  function: {
    name: "calc",
    description: "Evaluates an arithmetic expression",
    parameters: {
      type: "object",
      properties: { expression: { type: "string" } },
      required: ["expression"],
      additionalProperties: false,
    },
  },
};
const convertTool = {
  type: "function" as const,
  function: {
    name: "convert",
    parameters: {
      type: "object",
      properties: { value: { type: "number" }, to: { type: "string", enum: ["m", "cm"] } },
      required: ["value", "to"],
      additionalProperties: false,
    },
  },
};

describe("response_format on the local engine", () => {
  it("openai chat.completions.parse + zodResponseFormat: parsed, validated, recorded as masked", async () => {
    const { attemptId, baseURL } = await attempt();
    const client = new OpenAI({ baseURL, apiKey: "unused" });
    for (const seed of [1, 2, 3]) {
      const res = await client.chat.completions.parse({
        model: MODEL,
        messages: [{ role: "user", content: "What is 2 + 3? Answer in JSON." }],
        response_format: zodResponseFormat(Answer, "answer"),
        temperature: 1,
        seed,
        logprobs: true,
      });
      const choice = res.choices[0];
      expect(choice.finish_reason).toBe("stop");
      expect(Answer.parse(choice.message.parsed)).toEqual(choice.message.parsed);
      // Masked logprobs are the sampled token's under the allowed set: never −∞, never above 0.
      for (const lp of choice.logprobs!.content!) expect(lp.logprob).toBeLessThanOrEqual(0);
    }
    // The same request unconstrained: the model does not write this JSON by itself.
    const free = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "What is 2 + 3? Answer in JSON." }],
      temperature: 1,
      seed: 1,
      max_tokens: 60,
    });
    expect(() => Answer.parse(JSON.parse(free.choices[0].message.content ?? ""))).toThrow();
    await server.recorder.flush();
    const transitions = (await server.store.getTransitions({ attemptId })).filter(
      (t) => (t.metadata as { constrained?: string }).constrained,
    );
    expect(transitions.length).toBe(3);
    for (const t of transitions) {
      const meta = t.metadata as { constrained: string; logprobs: string; unmaskedLogprobs: number[] };
      expect(meta.constrained).toBe("json_schema");
      expect(meta.logprobs).toBe("masked");
      expect(meta.unmaskedLogprobs.length).toBe(t.responseIds.length);
      // Removing tokens can only raise the sampled token's probability.
      meta.unmaskedLogprobs.forEach((u, i) => {
        expect(u).toBeLessThanOrEqual(t.responseLogprobs![i] + 1e-4);
      });
    }
  }, 300_000);

  it("a free request's tokens do not change when constrained requests share its batch", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
    const free = () =>
      client.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "What is 6 + 1?" }],
        temperature: 1,
        seed: 99,
        max_tokens: 24,
      });
    const alone = await free();
    const [mixed] = await Promise.all([
      free(),
      ...[1, 2].map((seed) =>
        client.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: "What is 6 + 1?" }],
          response_format: { type: "json_object" },
          seed,
          max_tokens: 24,
        }),
      ),
    ]);
    expect(mixed.choices[0].message.content).toBe(alone.choices[0].message.content);
  }, 120_000);

  it("closes the JSON within max_tokens", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
    const res = await client.chat.completions.parse({
      model: MODEL,
      messages: [{ role: "user", content: "What is 9 - 4?" }],
      response_format: zodResponseFormat(Answer, "answer"),
      // The shortest valid answer is ~80 bytes; the budget forces the model to close in time.
      max_tokens: 100,
      seed: 7,
    });
    expect(res.choices[0].finish_reason).toBe("stop");
    expect(res.usage!.completion_tokens).toBeLessThanOrEqual(100);
    expect(Answer.safeParse(res.choices[0].message.parsed).success).toBe(true);
  }, 120_000);

  it("json_object, streamed: the deltas add up to an object", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Reply with a JSON object." }],
      response_format: { type: "json_object" },
      max_tokens: 60,
      seed: 3,
      stream: true,
    });
    let text = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe("stop");
    const value = JSON.parse(text);
    expect(typeof value === "object" && value !== null && !Array.isArray(value)).toBe(true);
  }, 120_000);

  it("AI SDK generateObject (chat provider)", async () => {
    const { baseURL } = await attempt();
    const provider = createOpenAI({ baseURL, apiKey: "unused" });
    const { object } = await generateObject({
      model: provider.chat(MODEL),
      schema: Answer,
      prompt: "What is 7 - 4?",
      maxOutputTokens: 200,
    });
    expect(Answer.parse(object)).toEqual(object);
  }, 120_000);

  it("LangChain withStructuredOutput (default method)", async () => {
    const { baseURL } = await attempt();
    const llm = new ChatOpenAI({ model: MODEL, apiKey: "unused", maxTokens: 200, configuration: { baseURL } });
    const out = await llm.withStructuredOutput(Answer).invoke("What is 5 + 5?");
    expect(Answer.parse(out)).toEqual(out);
  }, 120_000);

  it("completions take a response_format too (as vLLM's do)", async () => {
    const res = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: MODEL,
        prompt: "JSON:",
        max_tokens: 40,
        seed: 5,
        response_format: {
          type: "json_schema",
          json_schema: { name: "n", schema: { type: "array", items: { type: "integer" } } },
        },
      }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { text: string; finish_reason: string }[] };
    const value = JSON.parse(body.choices[0].text);
    expect(Array.isArray(value) && value.every((x: unknown) => Number.isInteger(x))).toBe(true);
    expect(body.choices[0].finish_reason).toBe("stop");
  }, 120_000);

  it("unsupported schema features are a 400 naming the feature, for chat, tools and completions", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const withPattern = {
      type: "object",
      properties: { code: { type: "string", pattern: "^[A-Z]{3}$" } },
      required: ["code"],
      additionalProperties: false,
    };
    const err = await client.chat.completions
      .create({
        model: MODEL,
        messages: [{ role: "user", content: "hi" }],
        response_format: { type: "json_schema", json_schema: { name: "x", schema: withPattern, strict: true } },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const bad = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(bad.status).toBe(400);
    expect(bad.message).toMatch(/`pattern`/);
    expect(bad.message).toMatch(/#\/properties\/code/);
    expect(bad.param).toBe("response_format.json_schema.schema");
    expect(bad.code).toBe("unsupported_schema");

    const toolErr = await client.chat.completions
      .create({
        model: MODEL,
        messages: [{ role: "user", content: "hi" }],
        tools: [
          {
            type: "function",
            function: {
              name: "f",
              parameters: { type: "object", properties: { d: { type: "string", format: "date" } } },
            },
          },
        ],
        tool_choice: "required",
      })
      .catch((e: unknown) => e);
    expect((toolErr as { status: number }).status).toBe(400);
    expect((toolErr as Error).message).toMatch(/`format`/);

    const res = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: MODEL,
        prompt: "x",
        response_format: { type: "json_schema", json_schema: { name: "n", schema: { type: "string", minLength: 3 } } },
      }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/`minLength`/);
  }, 60_000);
});

describe("tool_choice on the local engine", () => {
  const client = () => new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });

  it('"required" always yields a tool call with arguments that match its schema', async () => {
    // Left alone (tool_choice auto), the model answers this greeting in text.
    const free = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Hello there, how are you?" }],
      tools: [calcTool, convertTool],
      temperature: 0,
      max_tokens: 40,
    });
    expect(free.choices[0].message.tool_calls ?? []).toEqual([]);
    const res = await client().chat.completions.create({
      model: MODEL,
      // A greeting: left alone, the model answers in text.
      messages: [{ role: "user", content: "Hello there, how are you?" }],
      tools: [calcTool, convertTool],
      tool_choice: "required",
      n: 4,
      temperature: 1,
      seed: 11,
    });
    for (const choice of res.choices) {
      expect(choice.finish_reason).toBe("tool_calls");
      const calls = choice.message.tool_calls!;
      expect(calls.length).toBe(1);
      const call = calls[0] as { function: { name: string; arguments: string } };
      const args = JSON.parse(call.function.arguments);
      if (call.function.name === "calc") expect(Object.keys(args)).toEqual(["expression"]);
      else {
        expect(call.function.name).toBe("convert");
        expect(typeof args.value).toBe("number");
        expect(["m", "cm"]).toContain(args.to);
      }
    }
  }, 120_000);

  it("a named function yields that function, streamed too", async () => {
    const res = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "What is 3 + 4?" }],
      tools: [calcTool, convertTool],
      tool_choice: { type: "function", function: { name: "convert" } },
      n: 3,
      temperature: 1,
      seed: 5,
    });
    for (const choice of res.choices) {
      const call = choice.message.tool_calls![0] as { function: { name: string; arguments: string } };
      expect(call.function.name).toBe("convert");
      expect(Object.keys(JSON.parse(call.function.arguments))).toEqual(["value", "to"]);
    }
    const stream = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Convert 3 meters." }],
      tools: [calcTool, convertTool],
      tool_choice: { type: "function", function: { name: "calc" } },
      stream: true,
      seed: 2,
    });
    const names: string[] = [];
    let args = "";
    for await (const chunk of stream) {
      for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
        if (d.function?.name) names.push(d.function.name);
        args += d.function?.arguments ?? "";
      }
    }
    expect(names).toEqual(["calc"]);
    expect(typeof JSON.parse(args).expression).toBe("string");
  }, 120_000);
});

describe("structured output and tool_choice on the Responses and Messages APIs (local engine)", () => {
  it("openai responses.parse + zodTextFormat: parsed, validated, recorded as constrained", async () => {
    const { attemptId, baseURL } = await attempt();
    const client = new OpenAI({ baseURL, apiKey: "unused" });
    const res = await client.responses.parse({
      model: MODEL,
      input: "What is 2 + 3? Answer in JSON.",
      text: { format: zodTextFormat(Answer, "answer") },
      temperature: 1,
    });
    expect(res.status).toBe("completed");
    expect(Answer.parse(res.output_parsed)).toEqual(res.output_parsed);
    await server.recorder.flush();
    const [t] = await server.store.getTransitions({ attemptId });
    expect(String(t.metadata?.callId)).toMatch(/^resp_/);
    expect(t.metadata).toMatchObject({ constrained: "json_schema", logprobs: "masked" });
    expect(t.responseLogprobs?.length).toBe(t.responseIds.length);
  }, 120_000);

  it("AI SDK generateText with Output.object on the default openai(model) provider (text.format)", async () => {
    const { attemptId, baseURL } = await attempt();
    const provider = createOpenAI({ baseURL, apiKey: "unused" });
    const { output } = await generateText({
      model: provider(MODEL),
      output: Output.object({ schema: Answer }),
      prompt: "What is 8 - 2?",
      maxOutputTokens: 200,
    });
    expect(Answer.parse(output)).toEqual(output);
    await server.recorder.flush();
    const [t] = await server.store.getTransitions({ attemptId });
    expect(String(t.metadata?.callId)).toMatch(/^resp_/);
    expect(t.metadata).toMatchObject({ constrained: "json_schema" });
  }, 120_000);

  it("OpenAI Agents SDK outputType on its default (Responses) model", async () => {
    const { attemptId, baseURL } = await attempt();
    const runner = new Runner({
      modelProvider: new OpenAIProvider({ openAIClient: new OpenAI({ baseURL, apiKey: "unused" }) }),
      tracingDisabled: true,
    });
    const agent = new Agent({ name: "Calc", instructions: "Answer in JSON.", model: MODEL, outputType: Answer });
    const result = await runner.run(agent, "What is 4 + 4?");
    expect(Answer.parse(result.finalOutput)).toEqual(result.finalOutput);
    await server.recorder.flush();
    const [t] = await server.store.getTransitions({ attemptId });
    expect(String(t.metadata?.callId)).toMatch(/^resp_/);
    expect(t.metadata).toMatchObject({ constrained: "json_schema" });
  }, 120_000);

  it("LangChain withStructuredOutput on ChatOpenAI({useResponsesApi: true})", async () => {
    const { baseURL } = await attempt();
    const llm = new ChatOpenAI({
      model: MODEL,
      apiKey: "unused",
      maxTokens: 200,
      useResponsesApi: true,
      configuration: { baseURL },
    });
    const out = await llm.withStructuredOutput(Answer).invoke("What is 5 + 1?");
    expect(Answer.parse(out)).toEqual(out);
  }, 120_000);

  it('Responses tool_choice "required" and a named function yield that function call, streamed too', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
    const tools = [calcTool, convertTool].map((t) => ({
      type: "function" as const,
      name: t.function.name,
      parameters: t.function.parameters,
      strict: true,
    }));
    // A greeting: left alone (tool_choice auto) the model answers in text.
    const free = await client.responses.create({
      model: MODEL,
      input: "Hello there, how are you?",
      tools,
      temperature: 0,
      max_output_tokens: 40,
    });
    expect(free.output.filter((o) => o.type === "function_call")).toEqual([]);
    const required = await client.responses.create({
      model: MODEL,
      input: "Hello there, how are you?",
      tools,
      tool_choice: "required",
      temperature: 1,
    });
    const [call] = required.output.filter((o) => o.type === "function_call");
    expect(["calc", "convert"]).toContain(call.name);
    JSON.parse(call.arguments);
    const named = await client.responses.create({
      model: MODEL,
      input: "What is 3 + 4?",
      tools,
      tool_choice: { type: "function", name: "convert" },
      temperature: 1,
    });
    const [convert] = named.output.filter((o) => o.type === "function_call");
    expect(convert.name).toBe("convert");
    expect(Object.keys(JSON.parse(convert.arguments))).toEqual(["value", "to"]);
    const stream = client.responses.stream({
      model: MODEL,
      input: "Convert 3 meters.",
      tools,
      tool_choice: { type: "function", name: "calc" },
    });
    const final = await stream.finalResponse();
    const calls = final.output.filter((o) => o.type === "function_call");
    expect(calls.map((c) => c.name)).toEqual(["calc"]);
    expect(typeof JSON.parse(calls[0].arguments).expression).toBe("string");
  }, 120_000);

  it('Messages tool_choice {type: "any"} and {type: "tool", name} yield a tool_use block of that tool', async () => {
    const client = new Anthropic({ baseURL: server.url, apiKey: "unused" });
    const tools = [calcTool, convertTool].map((t) => ({
      name: t.function.name,
      input_schema: t.function.parameters as Anthropic.Tool.InputSchema,
    }));
    const any = await client.messages.create({
      model: MODEL,
      max_tokens: 200,
      messages: [{ role: "user", content: "Hello there, how are you?" }],
      tools,
      tool_choice: { type: "any" },
    });
    expect(any.stop_reason).toBe("tool_use");
    const [use] = any.content.filter((b) => b.type === "tool_use");
    expect(["calc", "convert"]).toContain(use.name);
    const named = await client.messages.create({
      model: MODEL,
      max_tokens: 200,
      messages: [{ role: "user", content: "What is 3 + 4?" }],
      tools,
      tool_choice: { type: "tool", name: "convert" },
    });
    const [convert] = named.content.filter((b) => b.type === "tool_use");
    expect(convert.name).toBe("convert");
    expect(Object.keys(convert.input as object)).toEqual(["value", "to"]);
  }, 120_000);

  it("an unsupported schema feature in text.format is a 400 naming the feature and the Responses param", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const err = await client.responses
      .create({
        model: MODEL,
        input: "hi",
        text: {
          format: {
            type: "json_schema",
            name: "x",
            strict: true,
            schema: {
              type: "object",
              properties: { code: { type: "string", pattern: "^[A-Z]{3}$" } },
              required: ["code"],
              additionalProperties: false,
            },
          },
        },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const bad = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(bad.message).toMatch(/`pattern`/);
    expect(bad.code).toBe("unsupported_schema");
    expect(bad.param).toBe("text.format.schema");
  }, 60_000);
});

describe("an unsupported schema feature costs one call, not a retry loop", () => {
  it("LangChain withStructuredOutput (default method, default retries) gets one 400 naming the feature", async () => {
    const { baseURL } = await attempt();
    let requests = 0;
    const llm = new ChatOpenAI({
      model: MODEL,
      apiKey: "unused",
      configuration: {
        baseURL,
        fetch: (url: RequestInfo | URL, init?: RequestInit) => {
          requests++;
          return fetch(url, init);
        },
      },
    });
    const started = performance.now();
    const err = await llm
      .withStructuredOutput(z.object({ email: z.string().email() }))
      .invoke("Who are you?")
      .catch((e: unknown) => e);
    expect((err as { status?: number }).status).toBe(400);
    expect(String((err as Error).message)).toMatch(/`format`/);
    expect(requests).toBe(1);
    expect(performance.now() - started).toBeLessThan(10_000);
  }, 60_000);
});
