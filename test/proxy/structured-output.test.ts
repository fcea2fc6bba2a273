// Structured output on the real server with the built-in model (a poor JSON writer): real
// clients' structured-output helpers — openai `chat.completions.parse` + `zodResponseFormat`, the
// AI SDK's `generateObject`, LangChain's `withStructuredOutput` — get output that parses and
// validates because decoding is constrained on the GPU; `tool_choice` "required" and a named
// function always yield that tool call; unsupported schema features are a 400 naming them; and
// the recorded transitions say their logprobs are masked and carry the unmasked ones.
import { createOpenAI } from "@ai-sdk/openai";
import { ChatOpenAI } from "@langchain/openai";
import { generateObject } from "ai";
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
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
