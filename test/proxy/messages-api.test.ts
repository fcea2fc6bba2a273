// Anthropic's Messages API (`POST /v1/messages`) on the real server with the built-in model
// (models/fulgur-calc on the GPU), driven by the official @anthropic-ai/sdk: plain, streamed
// (`messages.stream`, and the raw SSE event sequence), a tool round trip, stop sequences, errors
// in Anthropic's shape; every call recorded with its exact tokens under the attempt named by the
// base URL. The request mapping (system, blocks, tool_choice) is checked on its own too.
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseMessagesRequest, toolInput } from "../../src/proxy/messages-wire.ts";
import { createApp, type FulgurServer, startServer } from "../../src/server.ts";
import { openStore } from "../../src/store/libsql.ts";

const MODEL = "fulgur-calc";
const SYSTEM = "You are a math helper. Use the calculator tool, then give the answer.";
const QUESTION = "Mia has 12 apples and gets 30 more. How many apples does Mia have now?";
const CALCULATOR: Anthropic.Tool = {
  name: "calculator",
  description: "Evaluate an arithmetic expression with + - * / and parentheses.",
  input_schema: { type: "object", properties: { expression: { type: "string" } }, required: ["expression"] },
};

/**
 * Greedy decoding, so the model's answers are fixed. The current SDK no longer types
 * `temperature` (the API deprecates it); the route honours it when sent, as older SDKs do.
 */
const GREEDY: object = { temperature: 0 };

let server: FulgurServer;

beforeAll(async () => {
  server = await startServer({ modelDir: `models/${MODEL}`, storeUrl: ":memory:", port: 0, maxSeqLen: 512 });
});

afterAll(async () => {
  await server?.shutdown();
});

async function newAttempt() {
  const rollout = await server.store.enqueueRollout({ input: { task: "messages" } });
  const claim = await server.store.claimRollout({ workerId: "messages-test" });
  expect(claim?.rollout.id).toBe(rollout.id);
  const attemptId = claim!.attempt.id;
  // The SDK appends /v1/messages to its base URL.
  const client = new Anthropic({
    baseURL: `${server.url}/rollouts/${rollout.id}/attempts/${attemptId}`,
    apiKey: "unused",
    maxRetries: 0,
  });
  return { rolloutId: rollout.id, attemptId, client };
}

async function transitionsOf(attemptId: string) {
  await server.recorder.flush();
  return server.store.getTransitions({ attemptId });
}

const decode = (ids: ArrayLike<number>) => server.model!.tokenizer.decode(Array.from(ids), { skipSpecialTokens: true });
const textOf = (m: Anthropic.Message) =>
  m.content
    .filter((b): b is Anthropic.TextBlock => b.type === "text")
    .map((b) => b.text)
    .join("");

describe("POST /v1/messages with the Anthropic SDK", () => {
  it("answers a plain request and records the exact tokens under the attempt", async () => {
    const { attemptId, rolloutId, client } = await newAttempt();
    const msg = await client.messages.create({
      model: MODEL,
      max_tokens: 24,
      ...GREEDY,
      system: [{ type: "text", text: SYSTEM }],
      messages: [{ role: "user", content: QUESTION }],
    });
    expect(msg.type).toBe("message");
    expect(msg.role).toBe("assistant");
    expect(msg.id).toMatch(/^msg_/);
    expect(msg.model).toBe(MODEL);
    expect(["end_turn", "max_tokens"]).toContain(msg.stop_reason);
    const [t] = await transitionsOf(attemptId);
    expect(t.rolloutId).toBe(rolloutId);
    expect(msg.usage.input_tokens).toBe(t.promptIds.length);
    expect(msg.usage.output_tokens).toBe(t.responseIds.length);
    // Without tools the model's whole output is the text block.
    expect(textOf(msg)).toBe(decode(t.responseIds));
    expect(t.responseLogprobs?.length).toBe(t.responseIds.length);
    const prompt = server.model!.tokenizer.decode(Array.from(t.promptIds));
    expect(prompt).toContain(SYSTEM);
    expect(prompt).toContain(QUESTION);
    expect((t.messages as { role: string }[]).map((m) => m.role)).toEqual(["system", "user"]);
  });

  it("does a tool round trip: tool_use with a parsed input, then tool_result back, both recorded", async () => {
    const { attemptId, client } = await newAttempt();
    const first = await client.messages.create({
      model: MODEL,
      max_tokens: 48,
      ...GREEDY,
      system: SYSTEM,
      tools: [CALCULATOR],
      tool_choice: { type: "auto" },
      messages: [{ role: "user", content: QUESTION }],
    });
    expect(first.stop_reason).toBe("tool_use");
    const call = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use");
    expect(call?.name).toBe("calculator");
    expect(typeof (call?.input as { expression?: unknown } | undefined)?.expression).toBe("string");
    const second = await client.messages.create({
      model: MODEL,
      max_tokens: 48,
      ...GREEDY,
      system: SYSTEM,
      tools: [CALCULATOR],
      messages: [
        { role: "user", content: QUESTION },
        { role: "assistant", content: first.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: call!.id, content: "42" }] },
      ],
    });
    expect(second.stop_reason).toBe("end_turn");
    expect(textOf(second)).toContain("42");
    const [t1, t2] = await transitionsOf(attemptId);
    expect(t1.responseIds.length).toBe(first.usage.output_tokens);
    // The tool call is in the recorded tokens; the second prompt carries the call and its result.
    expect(decode(t1.responseIds)).toContain("<tool_call>");
    const prompt2 = server.model!.tokenizer.decode(Array.from(t2.promptIds));
    expect(prompt2).toContain((call!.input as { expression: string }).expression);
    expect(prompt2).toContain("42");
    expect((t2.messages as { role: string }[]).map((m) => m.role)).toEqual(["system", "user", "assistant", "tool"]);
    expect(decode(t2.responseIds)).toBe(textOf(second));
  });

  it("streams with messages.stream: text and tool input assemble into the same message", async () => {
    const { attemptId, client } = await newAttempt();
    const params = {
      model: MODEL,
      max_tokens: 48,
      ...GREEDY,
      system: SYSTEM,
      tools: [CALCULATOR],
      messages: [{ role: "user" as const, content: QUESTION }],
    };
    const stream = client.messages.stream(params);
    const seen: string[] = [];
    stream.on("streamEvent", (e) => {
      seen.push(e.type === "content_block_delta" ? e.delta.type : e.type);
    });
    const streamed = await stream.finalMessage();
    const plain = await client.messages.create(params);
    expect(seen[0]).toBe("message_start");
    expect(seen).toContain("input_json_delta");
    expect(seen.slice(-2)).toEqual(["message_delta", "message_stop"]);
    expect(streamed.stop_reason).toBe("tool_use");
    // Tool-use ids are fresh per call; everything else matches.
    const withoutIds = (blocks: readonly object[]) =>
      blocks.map((b) => Object.fromEntries(Object.entries(b).filter(([k]) => k !== "id")));
    expect(withoutIds(streamed.content)).toEqual(withoutIds(plain.content));
    const [t] = await transitionsOf(attemptId);
    expect(streamed.usage.input_tokens).toBe(t.promptIds.length);
    expect(streamed.usage.output_tokens).toBe(t.responseIds.length);

    // A text answer streams as text_delta events that join into the recorded tokens.
    const textStream = client.messages.stream({
      model: MODEL,
      max_tokens: 20,
      messages: [{ role: "user", content: QUESTION }],
    });
    let joined = "";
    textStream.on("text", (delta) => {
      joined += delta;
    });
    const final = await textStream.finalMessage();
    expect(joined).toBe(textOf(final));
    const all = await transitionsOf(attemptId);
    expect(decode(all[all.length - 1].responseIds)).toBe(joined);
  });

  it("sends Anthropic's full SSE event sequence on the wire, ping included", async () => {
    const res = await fetch(`${server.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": "unused", "anthropic-version": "2023-06-01" },
      body: JSON.stringify({
        model: MODEL,
        max_tokens: 16,
        stream: true,
        ...GREEDY,
        messages: [{ role: "user", content: [{ type: "text", text: QUESTION }] }],
      }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = (await res.text())
      .split("\n\n")
      .filter((e) => e.trim() !== "")
      .map((e) => {
        const [eventLine, dataLine] = e.split("\n");
        const data = JSON.parse(dataLine.replace(/^data: /, "")) as { type: string; delta?: { type?: string } };
        expect(eventLine).toBe(`event: ${data.type}`);
        return data;
      });
    const names = events.map((e) => (e.type === "content_block_delta" ? `delta:${e.delta?.type}` : e.type));
    expect(names.slice(0, 3)).toEqual(["message_start", "content_block_start", "ping"]);
    expect(names.slice(3, -3).every((n) => n === "delta:text_delta")).toBe(true);
    expect(names.slice(-3)).toEqual(["content_block_stop", "message_delta", "message_stop"]);
    const delta = events.at(-2) as unknown as { delta: { stop_reason: string }; usage: { output_tokens: number } };
    expect(["end_turn", "max_tokens"]).toContain(delta.delta.stop_reason);
    expect(delta.usage.output_tokens).toBeGreaterThan(0);
  });

  it("ends at a stop sequence with stop_reason stop_sequence", async () => {
    const { client } = await newAttempt();
    const messages: Anthropic.MessageParam[] = [
      { role: "user", content: QUESTION },
      {
        role: "assistant",
        content: [{ type: "tool_use", id: "toolu_1", name: "calculator", input: { expression: "12+30" } }],
      },
      {
        role: "user",
        content: [{ type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "42" }] }],
      },
    ];
    const msg = await client.messages.create({
      model: MODEL,
      max_tokens: 32,
      ...GREEDY,
      system: SYSTEM,
      tools: [CALCULATOR],
      stop_sequences: ["answer"],
      messages,
    });
    expect(msg.stop_reason).toBe("stop_sequence");
    expect(msg.stop_sequence).toBe("answer");
    expect(textOf(msg)).not.toContain("answer");
    const streamed = await client.messages
      .stream({
        model: MODEL,
        max_tokens: 32,
        ...GREEDY,
        system: SYSTEM,
        tools: [CALCULATOR],
        stop_sequences: ["answer"],
        messages,
      })
      .finalMessage();
    expect(streamed.stop_reason).toBe("stop_sequence");
    expect(streamed.stop_sequence).toBe("answer");
    expect(textOf(streamed)).toBe(textOf(msg));
  });

  it("answers bad requests in Anthropic's error shape, recording only what reached the backend", async () => {
    const { attemptId, client } = await newAttempt();
    const cases: [Record<string, unknown>, number, string, RegExp][] = [
      [{ model: MODEL, messages: [{ role: "user", content: "hi" }] }, 400, "invalid_request_error", /max_tokens/],
      [
        { model: "claude-nope", max_tokens: 5, messages: [{ role: "user", content: "hi" }] },
        404,
        "not_found_error",
        /claude-nope/,
      ],
      [
        {
          model: MODEL,
          max_tokens: 5,
          messages: [
            {
              role: "user",
              content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "" } }],
            },
          ],
        },
        400,
        "invalid_request_error",
        /image/,
      ],
      [
        { model: MODEL, max_tokens: 5, temperature: 1.5, messages: [{ role: "user", content: "hi" }] },
        400,
        "invalid_request_error",
        /temperature/,
      ],
      [
        {
          model: MODEL,
          max_tokens: 5,
          tools: [CALCULATOR],
          tool_choice: { type: "tool", name: "other" },
          messages: [{ role: "user", content: "hi" }],
        },
        400,
        "invalid_request_error",
        /other/,
      ],
      [
        {
          model: MODEL,
          max_tokens: 5,
          messages: [
            { role: "user", content: "hi" },
            { role: "assistant", content: "The" },
          ],
        },
        400,
        "invalid_request_error",
        /prefill/,
      ],
      [
        { model: MODEL, max_tokens: 4000, messages: [{ role: "user", content: "hi" }] },
        400,
        "invalid_request_error",
        /context length/,
      ],
      // A streamed request that fails before any output still gets its real status, not a 200 stream.
      [
        { model: MODEL, max_tokens: 4000, stream: true, messages: [{ role: "user", content: "hi" }] },
        400,
        "invalid_request_error",
        /context length/,
      ],
    ];
    for (const [body, status, type, message] of cases) {
      const err = await client.messages.create(body as never).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, JSON.stringify(body)).toBeInstanceOf(Anthropic.APIError);
      const apiError = err as InstanceType<typeof Anthropic.APIError>;
      expect(apiError.status).toBe(status);
      const payload = apiError.error as { type: string; error: { type: string; message: string } };
      expect(payload.type).toBe("error");
      expect(payload.error.type).toBe(type);
      expect(payload.error.message).toMatch(message);
    }
    // Malformed JSON, straight over HTTP.
    const res = await fetch(`${server.url}/v1/messages`, {
      method: "POST",
      body: "{nope",
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
    // Only the two context overflows reached the backend; they are recorded, with their error.
    const recorded = await transitionsOf(attemptId);
    expect(recorded.length).toBe(2);
    for (const t of recorded) {
      expect(t.responseIds.length).toBe(0);
      const meta = t.metadata as { callId: string; error: { status: number; message: string } };
      expect(meta.callId).toMatch(/^msg_/);
      expect(meta.error.status).toBe(400);
      expect(meta.error.message).toMatch(/context length/);
    }
  });
});

describe("x-api-key", () => {
  it("is accepted where a server key is required; a wrong key is a 401 in Anthropic's shape", async () => {
    const store = await openStore(":memory:");
    try {
      const { app } = createApp({ store, apiKey: "sekrit", acceptAnyModel: true });
      const body = JSON.stringify({ model: "m", max_tokens: 5, messages: [{ role: "user", content: "hi" }] });
      const headers = (key: string) => ({ "content-type": "application/json", "x-api-key": key });
      const wrong = await app.request("/v1/messages", { method: "POST", body, headers: headers("nope") });
      expect(wrong.status).toBe(401);
      expect(await wrong.json()).toEqual({
        type: "error",
        error: { type: "authentication_error", message: expect.any(String) },
      });
      // Past the key check: no model is loaded here, so the backend answers 503 (overloaded_error).
      const right = await app.request("/v1/messages", { method: "POST", body, headers: headers("sekrit") });
      expect(right.status).toBe(503);
      expect(((await right.json()) as { error: { type: string } }).error.type).toBe("overloaded_error");
    } finally {
      await store.close();
    }
  });
});

describe("parseMessagesRequest", () => {
  const base = { model: "m", max_tokens: 10 };
  it("maps system blocks, tool_use and tool_result blocks onto OpenAI chat messages in order", () => {
    const req = parseMessagesRequest({
      ...base,
      system: [
        { type: "text", text: "one" },
        { type: "text", text: "two", cache_control: { type: "ephemeral" } },
      ],
      stop_sequences: ["END"],
      top_k: 5,
      top_p: 0.9,
      metadata: { user_id: "u1" },
      tools: [CALCULATOR],
      messages: [
        { role: "user", content: [{ type: "text", text: "q" }] },
        {
          role: "assistant",
          content: [
            { type: "text", text: "let me see" },
            { type: "tool_use", id: "t1", name: "calculator", input: { expression: "1+1" } },
          ],
        },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "t1", content: [{ type: "text", text: "2" }] },
            { type: "tool_result", tool_use_id: "t2", content: "boom", is_error: true },
            { type: "text", text: "and?" },
          ],
        },
      ],
    });
    expect(req.messages).toEqual([
      { role: "system", content: "one\ntwo" },
      { role: "user", content: "q" },
      {
        role: "assistant",
        content: "let me see",
        tool_calls: [
          { id: "t1", type: "function", function: { name: "calculator", arguments: '{"expression":"1+1"}' } },
        ],
      },
      { role: "tool", tool_call_id: "t1", content: "2" },
      { role: "tool", tool_call_id: "t2", content: "Error: boom" },
      { role: "user", content: "and?" },
    ]);
    expect(req.tools).toEqual([
      {
        type: "function",
        function: { name: "calculator", description: CALCULATOR.description, parameters: CALCULATOR.input_schema },
      },
    ]);
    expect(req.toolChoice).toBe("auto");
    expect(req.parseToolCalls).toBe(true);
    expect(req.sampling).toMatchObject({ n: 1, temperature: 1, topP: 0.9, topK: 5, maxTokens: 10, stop: ["END"] });
    expect(req.user).toBe("u1");
  });

  it("maps tool_choice auto/any/tool/none and disable_parallel_tool_use", () => {
    const withChoice = (tool_choice: unknown) =>
      parseMessagesRequest({ ...base, tools: [CALCULATOR], tool_choice, messages: [{ role: "user", content: "x" }] });
    expect(withChoice({ type: "auto" }).toolChoice).toBe("auto");
    expect(withChoice({ type: "any" }).toolChoice).toBe("required");
    expect(withChoice({ type: "tool", name: "calculator" }).toolChoice).toEqual({
      type: "function",
      function: { name: "calculator" },
    });
    const none = withChoice({ type: "none" });
    expect(none.toolChoice).toBe("none");
    expect(none.parseToolCalls).toBe(false);
    expect(withChoice({ type: "any", disable_parallel_tool_use: true }).parallelToolCalls).toBe(false);
    expect(parseMessagesRequest({ ...base, messages: [{ role: "user", content: "x" }] }).toolChoice).toBe("none");
  });

  it("explains the mistakes agents ported from OpenAI make", () => {
    const fails = (body: Record<string, unknown>) => {
      try {
        parseMessagesRequest({ ...base, ...body });
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error("accepted");
    };
    expect(fails({ messages: [{ role: "system", content: "x" }] })).toMatch(/top-level `system` field/);
    expect(fails({ messages: [{ role: "tool", content: "x" }] })).toMatch(/invalid role "tool"/);
    expect(
      fails({ messages: [{ role: "user", content: [{ type: "tool_use", id: "a", name: "b", input: {} }] }] }),
    ).toMatch(/"tool_use" are not supported in user messages/);
    expect(fails({ messages: [{ role: "user", content: [{ type: "tool_result" }] }] })).toMatch(/tool_use_id/);
    expect(
      fails({
        messages: [
          { role: "user", content: [{ type: "tool_result", tool_use_id: "a", content: [{ type: "image" }] }] },
        ],
      }),
    ).toMatch(/tool_result content/);
    expect(
      fails({ thinking: { type: "enabled", budget_tokens: 100 }, messages: [{ role: "user", content: "x" }] }),
    ).toMatch(/thinking/);
  });

  it("keeps tool arguments that are not a JSON object instead of dropping them", () => {
    expect(toolInput('{"a":1}')).toEqual({ a: 1 });
    expect(toolInput("")).toEqual({});
    expect(toolInput("12+30")).toEqual({ arguments: "12+30" });
    expect(toolInput("[1]")).toEqual({ arguments: "[1]" });
  });
});
