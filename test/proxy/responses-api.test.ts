// `POST /v1/responses` end to end over real HTTP: the official `openai` SDK's `responses.create`
// and `responses.stream` → proxy routes → UpstreamBackend → the toy upstream server. Checks the
// Response shape, the streamed event sequence, function calls and their outputs, logprobs,
// previous_response_id / item_reference / GET and DELETE of stored responses, the mapping onto
// the normalised ChatRequest (tool_choice, text.format, max_output_tokens), attribution, that each
// call is recorded exactly once with its token ids, and every refusal in OpenAI's error shape.
import OpenAI, { type APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RecordedChatCall } from "../../src/proxy/backend.ts";
import { parseResponsesRequest, ResponseStore, responseBody } from "../../src/proxy/responses-api.ts";
import { type ProxyHarness, startProxy, UPSTREAM_MODEL, until } from "./harness.ts";
import { toyLogprob, toyPromptIds, toyRenderChat, toyTokenId, toyTokenize } from "./upstream-server.ts";

const WEATHER = {
  type: "function" as const,
  name: "get_weather",
  description: "Weather for a city",
  parameters: { type: "object", properties: { query: { type: "string" } }, required: ["query"] },
  strict: false,
};

let h: ProxyHarness;

beforeAll(async () => {
  h = await startProxy();
});
afterAll(async () => {
  await h.close();
});

async function newCalls(before: number, count: number): Promise<RecordedChatCall[]> {
  await until(() => h.recorder.calls.length >= before + count);
  await new Promise((r) => setTimeout(r, 20));
  expect(h.recorder.calls.length).toBe(before + count);
  return h.recorder.calls.slice(before) as RecordedChatCall[];
}

async function rawPost(path: string, body: unknown) {
  const res = await fetch(`${h.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

describe("POST /v1/responses", () => {
  it("answers a string input with instructions, and records the call with exact token ids", async () => {
    const before = h.recorder.calls.length;
    const res = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      instructions: "Be brief.",
      input: "hello wörld 🚀",
      temperature: 0.5,
      top_p: 0.9,
    });
    expect(res.object).toBe("response");
    expect(res.id).toMatch(/^resp_/);
    expect(res.status).toBe("completed");
    expect(res.output_text).toBe("You said: hello wörld 🚀");
    expect(res.output).toHaveLength(1);
    const [message] = res.output;
    expect(message).toMatchObject({ type: "message", role: "assistant", status: "completed" });
    if (message.type !== "message") throw new Error("message expected");
    expect(message.id).toMatch(/^msg_/);
    expect(message.content).toEqual([
      { type: "output_text", text: "You said: hello wörld 🚀", annotations: [], logprobs: [] },
    ]);
    expect(res).toMatchObject({ instructions: "Be brief.", temperature: 0.5, top_p: 0.9, store: true, error: null });
    const messages = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "hello wörld 🚀" },
    ];
    const reply = toyTokenize("You said: hello wörld 🚀");
    const promptIds = toyPromptIds(toyRenderChat(messages));
    expect(res.usage).toMatchObject({
      input_tokens: promptIds.length,
      output_tokens: reply.length,
      total_tokens: promptIds.length + reply.length,
    });

    const [call] = await newCalls(before, 1);
    expect(call).toMatchObject({ kind: "chat", id: res.id, error: null });
    expect(call.request.messages).toEqual(messages);
    expect(call.request.sampling).toMatchObject({ temperature: 0.5, topP: 0.9, n: 1, maxTokens: null });
    expect(call.request.extra).toEqual({});
    expect(call.outcome?.promptTokenIds).toEqual(promptIds);
    expect(call.outcome?.choices[0].tokenIds).toEqual(reply.map(toyTokenId));
    expect(call.outcome?.choices[0].logprobs?.map((l) => l.logprob)).toEqual(
      reply.map((t, i) => toyLogprob(toyTokenId(t), i)),
    );
  });

  it("takes message items with developer/system roles and content parts", async () => {
    const before = h.recorder.calls.length;
    const res = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      input: [
        { role: "developer", content: "Answer in English." },
        { type: "message", role: "system", content: [{ type: "input_text", text: "Be kind." }] },
        { role: "user", content: "first" },
        { role: "assistant", content: [{ type: "output_text", text: "ok", annotations: [] }] } as never,
        {
          role: "user",
          content: [
            { type: "input_text", text: "second " },
            { type: "input_text", text: "part" },
          ],
        },
      ],
    });
    // The toy upstream joins text parts with a newline.
    expect(res.output_text).toBe("You said: second \npart");
    const [call] = await newCalls(before, 1);
    expect(call.request.messages).toEqual([
      { role: "developer", content: "Answer in English." },
      { role: "system", content: [{ type: "text", text: "Be kind." }] },
      { role: "user", content: "first" },
      { role: "assistant", content: "ok" },
      {
        role: "user",
        content: [
          { type: "text", text: "second " },
          { type: "text", text: "part" },
        ],
      },
    ]);
  });

  it("returns function_call items, then continues from function_call + function_call_output items", async () => {
    const before = h.recorder.calls.length;
    const first = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      input: "think: weather in Oslo",
      tools: [WEATHER],
    });
    expect(first.output.map((o) => o.type)).toEqual(["message", "function_call"]);
    const call = first.output[1];
    if (call.type !== "function_call") throw new Error("function_call expected");
    expect(call.id).toMatch(/^fc_/);
    expect(call.call_id).toMatch(/^call_/);
    expect(call.name).toBe("get_weather");
    expect(JSON.parse(call.arguments)).toEqual({ query: "think: weather in Oslo" });
    expect(call.status).toBe("completed");
    expect(first.tools).toEqual([{ ...WEATHER }]);
    expect(first.tool_choice).toBe("auto");

    const second = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      store: false,
      input: [
        { role: "user", content: "think: weather in Oslo" },
        ...first.output.map((o) => o as OpenAI.Responses.ResponseInputItem),
        { type: "function_call_output", call_id: call.call_id, output: "sunny, 21°C" },
      ],
      tools: [WEATHER],
    });
    expect(second.output_text).toBe("The tool returned: sunny, 21°C");

    const [, recorded] = await newCalls(before, 2);
    // The message and the call of one answer are one assistant turn for the chat template.
    expect(recorded.request.messages).toEqual([
      { role: "user", content: "think: weather in Oslo" },
      {
        role: "assistant",
        content: "Let me look that up.\n",
        tool_calls: [
          { id: call.call_id, type: "function", function: { name: "get_weather", arguments: call.arguments } },
        ],
      },
      { role: "tool", tool_call_id: call.call_id, content: "sunny, 21°C" },
    ]);
    expect(recorded.request.tools).toEqual([
      {
        type: "function",
        function: {
          name: "get_weather",
          description: WEATHER.description,
          parameters: WEATHER.parameters,
          strict: false,
        },
      },
    ]);
    // store: false → not retrievable.
    await expect(h.client.responses.retrieve(second.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("continues a stored response with previous_response_id (instructions are not carried over)", async () => {
    const before = h.recorder.calls.length;
    const first = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      instructions: "First instructions.",
      input: "weather in Bergen",
      tools: [WEATHER],
    });
    const call = first.output.find((o) => o.type === "function_call");
    if (call?.type !== "function_call") throw new Error("function_call expected");
    const second = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      previous_response_id: first.id,
      instructions: "Second instructions.",
      input: [{ type: "function_call_output", call_id: call.call_id, output: "rain" }],
      tools: [WEATHER],
    });
    expect(second.previous_response_id).toBe(first.id);
    expect(second.output_text).toBe("The tool returned: rain");
    const [, recorded] = await newCalls(before, 2);
    expect(recorded.request.messages).toEqual([
      { role: "system", content: "Second instructions." },
      { role: "user", content: "weather in Bergen" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: call.call_id, type: "function", function: { name: call.name, arguments: call.arguments } }],
      },
      { role: "tool", tool_call_id: call.call_id, content: "rain" },
    ]);

    // Retrieve and delete the stored response.
    const got = await h.client.responses.retrieve(first.id);
    expect(got).toMatchObject({ id: first.id, status: "completed", output: first.output });
    const deleted = await fetch(`${h.url}/v1/responses/${first.id}`, { method: "DELETE" });
    expect(await deleted.json()).toEqual({ id: first.id, object: "response", deleted: true });
    await expect(h.client.responses.retrieve(first.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const gone = (await h.client.responses
      .create({ model: UPSTREAM_MODEL, previous_response_id: first.id, input: "again" })
      .catch((e: unknown) => e)) as APIError;
    expect(gone).toBeInstanceOf(OpenAI.BadRequestError);
    expect(gone.param).toBe("previous_response_id");
    expect(gone.code).toBe("previous_response_not_found");
  });

  it("resolves item_reference items to stored output items", async () => {
    const before = h.recorder.calls.length;
    const first = await h.client.responses.create({ model: UPSTREAM_MODEL, input: "remember me" });
    const second = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      input: [
        { role: "user", content: "remember me" },
        { type: "item_reference", id: first.output[0].id as string },
        { role: "user", content: "and now?" },
      ],
    });
    expect(second.output_text).toBe("You said: and now?");
    const [, recorded] = await newCalls(before, 2);
    expect(recorded.request.messages[1]).toEqual({ role: "assistant", content: "You said: remember me" });
  });

  it("maps tool_choice, text.format and max_output_tokens onto the chat request", async () => {
    const before = h.recorder.calls.length;
    const named = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      input: "weather please",
      tools: [WEATHER, { ...WEATHER, name: "get_time" }],
      tool_choice: { type: "function", name: "get_time" },
      parallel_tool_calls: false,
    });
    expect(named.output.find((o) => o.type === "function_call")).toMatchObject({ name: "get_time" });
    expect(named.tool_choice).toEqual({ type: "function", name: "get_time" });
    await h.client.responses.create({ model: UPSTREAM_MODEL, input: "x", tools: [WEATHER], tool_choice: "required" });
    const json = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      input: "give json",
      text: { format: { type: "json_object" } },
    });
    expect(JSON.parse(json.output_text)).toEqual({ echo: "give json" });
    const schema = { type: "object", properties: { echo: { type: "string" } }, required: ["echo"] };
    const structured = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      input: "structured",
      text: { format: { type: "json_schema", name: "echo", schema, strict: true } },
    });
    expect(structured.text?.format).toEqual({ type: "json_schema", name: "echo", schema, strict: true });
    const cut = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      input: "a long sentence to cut short",
      max_output_tokens: 2,
    });
    expect(cut.status).toBe("incomplete");
    expect(cut.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(cut.output_text).toBe("You said:");
    expect(cut.max_output_tokens).toBe(2);

    const calls = await newCalls(before, 5);
    expect(calls[0].request).toMatchObject({
      toolChoice: { type: "function", function: { name: "get_time" } },
      parseToolCalls: true,
      parallelToolCalls: false,
    });
    expect(calls[1].request.toolChoice).toBe("required");
    expect(calls[2].request.responseFormat).toEqual({ type: "json_object" });
    expect(calls[3].request.responseFormat).toEqual({
      type: "json_schema",
      json_schema: { name: "echo", schema, strict: true },
    });
    expect(calls[4].request.sampling.maxTokens).toBe(2);
    expect(calls[4].outcome?.choices[0].finishReason).toBe("length");
  });

  it("includes output_text logprobs when asked, with top_logprobs alternatives", async () => {
    const res = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      input: "hi é",
      include: ["message.output_text.logprobs"],
      top_logprobs: 2,
    });
    const message = res.output[0];
    if (message.type !== "message" || message.content[0].type !== "output_text") throw new Error("text expected");
    const logprobs = message.content[0].logprobs ?? [];
    const tokens = toyTokenize("You said: hi é");
    expect(logprobs.map((l) => l.token)).toEqual(tokens);
    logprobs.forEach((entry, i) => {
      expect(entry.logprob).toBeCloseTo(toyLogprob(toyTokenId(tokens[i]), i), 12);
      expect(entry.bytes).toEqual([...new TextEncoder().encode(tokens[i])]);
      expect(entry.top_logprobs).toHaveLength(2);
    });
    expect(res.top_logprobs).toBe(2);

    const stream = h.client.responses.stream({
      model: UPSTREAM_MODEL,
      input: "hi é",
      include: ["message.output_text.logprobs"],
    });
    const streamed: string[] = [];
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") streamed.push(...event.logprobs.map((l) => l.token));
    }
    expect(streamed).toEqual(tokens);
  });
});

describe("streaming", () => {
  it("sends the full event sequence, numbered, that the SDK assembles into the final Response", async () => {
    const before = h.recorder.calls.length;
    const stream = h.client.responses.stream({
      model: UPSTREAM_MODEL,
      input: "think: weather in Rome",
      tools: [WEATHER],
    });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    const final = await stream.finalResponse();
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const types = events.map((e) => e.type);
    const deltas = types.filter((t) => t === "response.output_text.delta").length;
    expect(deltas).toBeGreaterThan(1);
    expect(types).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      ...Array(deltas).fill("response.output_text.delta"),
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ]);
    const created = events[0] as OpenAI.Responses.ResponseCreatedEvent;
    expect(created.response).toMatchObject({ id: final.id, status: "in_progress", output: [] });
    expect(final.status).toBe("completed");
    expect(final.output_text).toBe("Let me look that up.\n");
    const call = final.output[1];
    if (call.type !== "function_call") throw new Error("function_call expected");
    expect(JSON.parse(call.arguments)).toEqual({ query: "think: weather in Rome" });
    const completed = events.at(-1) as OpenAI.Responses.ResponseCompletedEvent;
    expect(completed.response.usage?.output_tokens).toBeGreaterThan(0);
    // Item ids agree between the added/done events and the final output.
    const added = events.filter((e) => e.type === "response.output_item.added") as { item: { id: string } }[];
    expect(added.map((e) => e.item.id)).toEqual(final.output.map((o) => o.id));

    const [recorded] = await newCalls(before, 1);
    expect(recorded.id).toBe(final.id);
    expect(recorded.request.stream).toBe(true);
    expect(recorded.outcome?.choices[0].tokenIds?.length).toBeGreaterThan(0);
    // Stored: a follow-up can continue it.
    const next = await h.client.responses.create({
      model: UPSTREAM_MODEL,
      previous_response_id: final.id,
      input: [{ type: "function_call_output", call_id: call.call_id, output: "warm" }],
      tools: [WEATHER],
    });
    expect(next.output_text).toBe("The tool returned: warm");
  });

  it("names each event on the wire and ends a cut answer with response.incomplete", async () => {
    const res = await rawPost("/v1/responses", {
      model: UPSTREAM_MODEL,
      input: "cut this one short please",
      max_output_tokens: 3,
      stream: true,
    });
    expect(res.status).toBe(200);
    const blocks = res.text.split("\n\n").filter((b) => b.trim() !== "");
    for (const block of blocks) {
      const [eventLine, dataLine] = block.split("\n");
      const data = JSON.parse(dataLine.replace(/^data: /, ""));
      expect(eventLine).toBe(`event: ${data.type}`);
    }
    const last = JSON.parse(
      blocks
        .at(-1)!
        .split("\n")[1]
        .replace(/^data: /, ""),
    );
    expect(last.type).toBe("response.incomplete");
    expect(last.response).toMatchObject({ status: "incomplete", incomplete_details: { reason: "max_output_tokens" } });
    expect(res.text).not.toContain("[DONE]");
  });
});

describe("attribution and failures", () => {
  it("records under the attempt named in the path", async () => {
    const before = h.recorder.calls.length;
    const client = h.clientAt("/rollouts/ro-r/attempts/at-r/v1");
    const res = await client.responses.create({ model: UPSTREAM_MODEL, input: "attributed" });
    const stream = client.responses.stream({ model: UPSTREAM_MODEL, input: "attributed stream" });
    const streamed = await stream.finalResponse();
    const calls = await newCalls(before, 2);
    const byId = new Map(calls.map((c) => [c.id, c]));
    expect(byId.get(res.id)).toMatchObject({ rolloutId: "ro-r", attemptId: "at-r" });
    expect(byId.get(streamed.id)).toMatchObject({ rolloutId: "ro-r", attemptId: "at-r" });
  });

  it("records an upstream failure once and answers in OpenAI's error shape", async () => {
    const before = h.recorder.calls.length;
    const err = (await h.client.responses
      .create({ model: UPSTREAM_MODEL, input: "!fail500" })
      .catch((e: unknown) => e)) as APIError;
    expect(err.status).toBe(502);
    const [call] = await newCalls(before, 1);
    expect(call.outcome).toBeNull();
    expect(call.error).toMatchObject({ status: 502 });
  });

  it("refuses what it cannot serve with 400 naming the param, and records nothing", async () => {
    const before = h.recorder.calls.length;
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ input: "x" }, "model", /model/],
      [{ model: UPSTREAM_MODEL }, "input", /input/],
      [{ model: UPSTREAM_MODEL, input: [] }, "input", /at least one item/],
      [{ model: UPSTREAM_MODEL, input: "x", tools: [{ type: "web_search" }] }, "tools[0].type", /hosted tools/],
      [
        { model: UPSTREAM_MODEL, input: [{ role: "user", content: [{ type: "input_image", image_url: "http://x" }] }] },
        "input[0].content[0].type",
        /text-only/,
      ],
      [{ model: UPSTREAM_MODEL, input: [{ type: "computer_call_output" }] }, "input[0].type", /not supported/],
      [
        { model: UPSTREAM_MODEL, input: [{ type: "function_call_output", output: "r" }] },
        "input[0].call_id",
        /call_id/,
      ],
      [{ model: UPSTREAM_MODEL, input: [{ type: "item_reference", id: "msg_nope" }] }, "input[0].id", /not found/],
      [
        { model: UPSTREAM_MODEL, input: "x", tools: [WEATHER], tool_choice: { type: "function", name: "other" } },
        "tool_choice.name",
        /not in `tools`/,
      ],
      [{ model: UPSTREAM_MODEL, input: "x", tool_choice: "required" }, "tool_choice", /needs `tools`/],
      [
        { model: UPSTREAM_MODEL, input: "x", tools: [WEATHER], tool_choice: { type: "allowed_tools", tools: [] } },
        "tool_choice.type",
        /allowed_tools.*not supported/,
      ],
      [{ model: UPSTREAM_MODEL, input: "x", background: true }, "background", /not supported/],
      [{ model: UPSTREAM_MODEL, input: "x", conversation: "conv_1" }, "conversation", /not supported/],
      [{ model: UPSTREAM_MODEL, input: "x", include: ["nonsense"] }, "include[0]", /include/],
      [
        { model: UPSTREAM_MODEL, input: "x", previous_response_id: "resp_missing" },
        "previous_response_id",
        /not found/,
      ],
      [{ model: UPSTREAM_MODEL, input: "x", text: { format: { type: "json_schema" } } }, "text.format.name", /name/],
      [{ model: UPSTREAM_MODEL, input: "x", temperature: 3 }, "temperature", /temperature/],
    ];
    for (const [body, param, message] of cases) {
      const res = await rawPost("/v1/responses", body);
      expect(res.status, param).toBe(400);
      const { error } = JSON.parse(res.text);
      expect(Object.keys(error).sort()).toEqual(["code", "message", "param", "type"]);
      expect(error.type).toBe("invalid_request_error");
      expect(error.param, JSON.stringify(body)).toBe(param);
      expect(error.message).toMatch(message);
    }
    const unknownModel = (await h.client.responses
      .create({ model: "gpt-17", input: "x" })
      .catch((e: unknown) => e)) as APIError;
    expect(unknownModel).toBeInstanceOf(OpenAI.NotFoundError);
    expect(unknownModel.code).toBe("model_not_found");
    const missing = await fetch(`${h.url}/v1/responses/resp_nope`);
    expect(missing.status).toBe(404);
    await new Promise((r) => setTimeout(r, 20));
    expect(h.recorder.calls.length).toBe(before);
  });
});

describe("client disconnects and the response memory", () => {
  it("stops the upstream when a streaming client goes away, records it as disconnected, stores nothing", async () => {
    const slow = await startProxy({ upstream: { tokenDelayMs: 30 } });
    try {
      const controller = new AbortController();
      const stream = await slow.client.responses.create(
        { model: UPSTREAM_MODEL, input: "a b c d e f g h i j k l m n o p q r s t u v w x y z", stream: true },
        { signal: controller.signal },
      );
      let seen = 0;
      let id = "";
      try {
        for await (const event of stream) {
          if (event.type === "response.created") id = event.response.id;
          if (++seen === 5) controller.abort();
        }
      } catch {
        // The SDK may or may not raise on a user abort; either way the stream ends here.
      }
      expect(seen).toBeLessThan(12);
      await until(() => slow.upstream.stats.aborted === 1 && slow.recorder.calls.length === 1);
      expect(slow.recorder.calls[0]).toMatchObject({ id, error: { type: "client_disconnected" } });
      await expect(slow.client.responses.retrieve(id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    } finally {
      await slow.close();
    }
  });

  it("keeps at most maxResponses responses and maxBytes bytes, evicting the oldest with its items", () => {
    const store = new ResponseStore({ maxResponses: 2 });
    const outcome = (text: string) => ({
      model: "m",
      adapterVersion: null,
      promptTokenIds: [1],
      promptText: null,
      choices: [
        { index: 0, text, content: text, toolCalls: [], finishReason: "stop" as const, tokenIds: [2], logprobs: null },
      ],
      usage: { promptTokens: 1, completionTokens: 1, totalTokens: 2 },
      timings: { queueMs: null, ttftMs: null, totalMs: 1 },
    });
    const bodies = ["one", "two", "three"].map((text, i) => {
      const req = parseResponsesRequest({ model: "m", input: text }, store);
      const body = responseBody(`resp_${i}`, 0, req, outcome(`said ${text}`));
      store.put(body, req.conversation);
      return body;
    });
    expect(store.size).toBe(2);
    expect(store.get("resp_0")).toBeNull();
    expect(store.item(bodies[0].output[0].id)).toBeNull();
    expect(store.item(bodies[2].output[0].id)).toEqual({ kind: "message", text: "said three" });
    expect(store.conversation("resp_1")).toEqual([
      { role: "user", content: "two" },
      { role: "assistant", content: "said two" },
    ]);
    expect(() => new ResponseStore({ maxResponses: -1 })).toThrow(/maxResponses/);

    // The byte budget: each response here is a few hundred bytes as JSON.
    const small = new ResponseStore({ maxBytes: 2000 });
    for (let i = 0; i < 10; i++) {
      const req = parseResponsesRequest({ model: "m", input: `question ${i}` }, small);
      const body = responseBody(`resp_b${i}`, 0, req, outcome(`answer ${i}`));
      expect(small.put(body, req.conversation)).toBe(true);
    }
    expect(small.bytes).toBeLessThanOrEqual(2000);
    expect(small.size).toBeLessThan(10);
    expect(small.get("resp_b9")).not.toBeNull();
    expect(small.get("resp_b0")).toBeNull();
    const huge = parseResponsesRequest({ model: "m", input: "x".repeat(5000) }, small);
    expect(small.put(responseBody("resp_huge", 0, huge, outcome("y")), huge.conversation)).toBe(false);
    expect(small.get("resp_huge")).toBeNull();
    expect(small.get("resp_b9")).not.toBeNull();
  });
});
