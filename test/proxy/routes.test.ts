// The proxy end to end over real HTTP: the official `openai` SDK → proxy routes → UpstreamBackend
// → the toy upstream server. Checks answers in OpenAI's shapes (non-streaming, streaming, tool
// calls, logprobs, n > 1), attribution reaching the recorder, every error path in OpenAI's error
// shape, and that each call reaching the backend is recorded exactly once (and no other).
import OpenAI, { type APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RecordedChatCall } from "../../src/proxy/backend.ts";
import { type ProxyHarness, startProxy, UPSTREAM_MODEL, until } from "./harness.ts";
import { toyLogprob, toyPromptIds, toyRenderChat, toyTokenId, toyTokenize } from "./upstream-server.ts";

const WEATHER_TOOL = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "Weather for a city",
    parameters: { type: "object", properties: { query: { type: "string" } } },
  },
};

let h: ProxyHarness;

beforeAll(async () => {
  h = await startProxy({ routes: { maxBodyBytes: 64 * 1024 } });
});
afterAll(async () => {
  await h.close();
});

/** Waits for the recorder to hold `count` more calls than `before`, and returns the new ones. */
async function newCalls(before: number, count: number) {
  await until(() => h.recorder.calls.length >= before + count);
  // Give a stray duplicate record a chance to show up before asserting "exactly".
  await new Promise((r) => setTimeout(r, 20));
  return h.recorder.calls.slice(before);
}

async function rawPost(path: string, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${h.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
  return { status: res.status, json: (await res.json()) as { error: Record<string, unknown> } };
}

function expectOpenAIError(json: { error: Record<string, unknown> }) {
  expect(Object.keys(json.error).sort()).toEqual(["code", "message", "param", "type"]);
  expect(typeof json.error.message).toBe("string");
}

describe("chat completions", () => {
  it("answers non-streaming and records exact token ids and logprobs", async () => {
    const before = h.recorder.calls.length;
    const messages = [
      { role: "system" as const, content: "Be brief." },
      { role: "user" as const, content: "hello wörld 🚀" },
    ];
    const res = await h.client.chat.completions.create({ model: UPSTREAM_MODEL, messages, temperature: 0.5, seed: 7 });
    expect(res.object).toBe("chat.completion");
    expect(res.id).toMatch(/^chatcmpl-/);
    expect(res.model).toBe(UPSTREAM_MODEL);
    expect(res.choices).toHaveLength(1);
    expect(res.choices[0].message).toMatchObject({ role: "assistant", content: "You said: hello wörld 🚀" });
    expect(res.choices[0].finish_reason).toBe("stop");
    // Logprobs were not asked for: not in the answer, but still recorded below.
    expect(res.choices[0].logprobs).toBeNull();
    const reply = toyTokenize("You said: hello wörld 🚀");
    const promptIds = toyPromptIds(toyRenderChat(messages));
    expect(res.usage).toEqual({
      prompt_tokens: promptIds.length,
      completion_tokens: reply.length,
      total_tokens: promptIds.length + reply.length,
    });

    const [call] = (await newCalls(before, 1)) as RecordedChatCall[];
    expect(h.recorder.calls.length).toBe(before + 1);
    expect(call.kind).toBe("chat");
    expect(call.id).toBe(res.id);
    expect(call.error).toBeNull();
    expect(call.request.messages).toEqual(messages);
    expect(call.request.sampling).toMatchObject({ temperature: 0.5, seed: 7, n: 1 });
    expect(call.outcome?.promptTokenIds).toEqual(promptIds);
    const choice = call.outcome!.choices[0];
    expect(choice.tokenIds).toEqual(reply.map(toyTokenId));
    expect(choice.logprobs?.map((l) => l.logprob)).toEqual(reply.map((t, i) => toyLogprob(toyTokenId(t), i)));
    expect(choice.logprobs?.map((l) => l.tokenId)).toEqual(reply.map(toyTokenId));
    expect(call.timings.totalMs).toBeGreaterThan(0);
    // The proxy asked the upstream for everything RL needs.
    const sent = h.upstream.stats.bodies.at(-1)!;
    expect(sent).toMatchObject({ logprobs: true, return_token_ids: true, temperature: 0.5, seed: 7 });
  });

  it("streams chunks whose text assembles to the answer, with a final usage chunk", async () => {
    const before = h.recorder.calls.length;
    const stream = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [{ role: "user", content: "stream me 日本語 please" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe("You said: stream me 日本語 please");
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finish.map((c) => c.choices[0].finish_reason)).toEqual(["stop"]);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 6, completion_tokens: 6, total_tokens: 12 });
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();

    const [call] = (await newCalls(before, 1)) as RecordedChatCall[];
    expect(h.recorder.calls.length).toBe(before + 1);
    expect(call.id).toBe(chunks[0].id);
    expect(call.request.stream).toBe(true);
    expect(call.outcome?.choices[0].text).toBe(text);
    expect(call.outcome?.choices[0].tokenIds).toEqual(toyTokenize(text).map(toyTokenId));
    expect(call.timings.ttftMs).not.toBeNull();
  });

  it("streams without include_usage: no usage field on chunks", async () => {
    const stream = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [{ role: "user", content: "short" }],
      stream: true,
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => c.usage === undefined)).toBe(true);
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe("stop");
  });

  it("returns logprobs and top_logprobs in OpenAI's shape, streaming and not", async () => {
    const res = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [{ role: "user", content: "hi é" }],
      logprobs: true,
      top_logprobs: 3,
    });
    const content = res.choices[0].logprobs!.content!;
    const tokens = toyTokenize("You said: hi é");
    expect(content.map((c) => c.token)).toEqual(tokens);
    expect(res.choices[0].logprobs!.refusal).toBeNull();
    content.forEach((entry, i) => {
      expect(Object.keys(entry).sort()).toEqual(["bytes", "logprob", "token", "top_logprobs"]);
      expect(entry.logprob).toBeCloseTo(toyLogprob(toyTokenId(tokens[i]), i), 12);
      expect(entry.bytes).toEqual([...new TextEncoder().encode(tokens[i])]);
      expect(entry.top_logprobs).toHaveLength(3);
      expect(entry.top_logprobs[0]).toEqual({ token: entry.token, logprob: entry.logprob, bytes: entry.bytes });
    });

    const stream = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [{ role: "user", content: "hi é" }],
      logprobs: true,
      top_logprobs: 1,
      stream: true,
    });
    const streamed: OpenAI.Chat.Completions.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(streamed.map((c) => c.token)).toEqual(tokens);
    expect(streamed.every((c) => c.top_logprobs.length === 1)).toBe(true);
  });

  it("generates n=2 choices, non-streaming and streaming", async () => {
    const before = h.recorder.calls.length;
    const res = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [{ role: "user", content: "two please" }],
      n: 2,
    });
    expect(res.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(res.choices.map((c) => c.message.content)).toEqual([
      "You said: two please",
      "You said: two please (variant 1)",
    ]);

    const stream = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [{ role: "user", content: "two please" }],
      n: 2,
      stream: true,
    });
    const texts = ["", ""];
    const finishes: (string | null)[] = [null, null];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        texts[c.index] += c.delta.content ?? "";
        if (c.finish_reason) finishes[c.index] = c.finish_reason;
      }
    }
    expect(texts).toEqual(["You said: two please", "You said: two please (variant 1)"]);
    expect(finishes).toEqual(["stop", "stop"]);
    const calls = (await newCalls(before, 2)) as RecordedChatCall[];
    expect(calls).toHaveLength(2);
    for (const call of calls) {
      expect(call.outcome?.choices).toHaveLength(2);
      expect(call.outcome?.choices.every((c) => c.tokenIds !== null && c.logprobs !== null)).toBe(true);
    }
  });

  it("honours max_tokens (finish_reason length) and stop strings", async () => {
    const cut = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [{ role: "user", content: "a long answer here" }],
      max_tokens: 3,
    });
    expect(cut.choices[0].message.content).toBe("You said: a");
    expect(cut.choices[0].finish_reason).toBe("length");
    const stopped = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [{ role: "user", content: "alpha beta gamma" }],
      stop: [" beta"],
    });
    expect(stopped.choices[0].message.content).toBe("You said: alpha");
    expect(h.upstream.stats.bodies.at(-1)!.stop).toEqual([" beta"]);
  });

  it("accepts text content parts and tolerates unknown fields", async () => {
    const res = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "part one" },
            { type: "text", text: "part two" },
          ],
        },
      ],
      // Fields this proxy does not know are forwarded, not rejected.
      ...({ metadata_from_sdk: { a: 1 } } as object),
    });
    expect(res.choices[0].message.content).toBe("You said: part one\npart two");
    expect(h.upstream.stats.bodies.at(-1)!.metadata_from_sdk).toEqual({ a: 1 });
  });
});

describe("tool calls", () => {
  it("returns parsed tool calls with finish_reason tool_calls", async () => {
    const before = h.recorder.calls.length;
    const res = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [{ role: "user", content: "weather in Zürich, twice" }],
      tools: [WEATHER_TOOL],
    });
    const choice = res.choices[0];
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls).toHaveLength(2);
    for (const call of choice.message.tool_calls!) {
      expect(call.id).toMatch(/^call_/);
      expect(call.type).toBe("function");
      if (call.type !== "function") throw new Error("function call expected");
      expect(call.function.name).toBe("get_weather");
      expect(JSON.parse(call.function.arguments)).toEqual({ query: "weather in Zürich, twice" });
    }
    const [recorded] = (await newCalls(before, 1)) as RecordedChatCall[];
    expect(recorded.request.tools).toEqual([WEATHER_TOOL]);
    expect(recorded.outcome?.choices[0].toolCalls).toEqual(choice.message.tool_calls);
    // The raw text (what the token ids decode to) keeps the markup.
    expect(recorded.outcome?.choices[0].text).toContain("<tool_call>");
  });

  it("streams tool calls that the SDK's helper assembles, and continues after a tool result", async () => {
    const runner = h.client.chat.completions.stream({
      model: UPSTREAM_MODEL,
      messages: [{ role: "user", content: "think: weather in Oslo" }],
      tools: [WEATHER_TOOL],
    });
    const final = await runner.finalChatCompletion();
    const message = final.choices[0].message;
    expect(final.choices[0].finish_reason).toBe("tool_calls");
    expect(message.content).toBe("Let me look that up.\n");
    expect(message.tool_calls).toHaveLength(1);
    const call = message.tool_calls![0];
    if (call.type !== "function") throw new Error("function call expected");
    expect(call.function.name).toBe("get_weather");
    expect(JSON.parse(call.function.arguments)).toEqual({ query: "think: weather in Oslo" });

    const followUp = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [
        { role: "user", content: "think: weather in Oslo" },
        { role: "assistant", content: null, tool_calls: [call] },
        { role: "tool", tool_call_id: call.id, content: "sunny, 21°C" },
      ],
      tools: [WEATHER_TOOL],
    });
    expect(followUp.choices[0].message.content).toBe("The tool returned: sunny, 21°C");
    expect(followUp.choices[0].finish_reason).toBe("stop");
  });

  it("does not parse tool calls when tool_choice is none", async () => {
    const res = await h.client.chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [{ role: "user", content: "just talk" }],
      tools: [WEATHER_TOOL],
      tool_choice: "none",
    });
    expect(res.choices[0].message.tool_calls).toBeUndefined();
    expect(res.choices[0].message.content).toBe("You said: just talk");
  });
});

describe("attribution", () => {
  it("takes rollout and attempt ids from the path, from headers, or leaves them null", async () => {
    const before = h.recorder.calls.length;
    const ask = (client: OpenAI) =>
      client.chat.completions.create({ model: UPSTREAM_MODEL, messages: [{ role: "user", content: "who am I" }] });
    const byPath = await ask(h.clientAt("/rollouts/ro-1/attempts/at-1/v1"));
    const byHeader = await ask(h.clientAt("/v1", { "x-fulgur-rollout-id": "ro-2", "x-fulgur-attempt-id": "at-2" }));
    const both = await ask(h.clientAt("/rollouts/ro-3/attempts/at-3/v1", { "x-fulgur-rollout-id": "ignored" }));
    const none = await ask(h.client);
    const calls = await newCalls(before, 4);
    const byId = new Map(calls.map((c) => [c.id, c]));
    expect(byId.get(byPath.id)).toMatchObject({ rolloutId: "ro-1", attemptId: "at-1" });
    expect(byId.get(byHeader.id)).toMatchObject({ rolloutId: "ro-2", attemptId: "at-2" });
    expect(byId.get(both.id)).toMatchObject({ rolloutId: "ro-3", attemptId: "at-3" });
    expect(byId.get(none.id)).toMatchObject({ rolloutId: null, attemptId: null });
  });

  it("serves models and completions under the attempt path too", async () => {
    const client = h.clientAt("/rollouts/ro-9/attempts/at-9/v1");
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([UPSTREAM_MODEL]);
    const before = h.recorder.calls.length;
    await client.completions.create({ model: UPSTREAM_MODEL, prompt: "Once upon" });
    const [call] = await newCalls(before, 1);
    expect(call).toMatchObject({ kind: "completion", rolloutId: "ro-9", attemptId: "at-9" });
  });
});

describe("errors in OpenAI's shape", () => {
  it("rejects malformed JSON, missing messages, bad roles, images and bad params with 400 and param; records nothing", async () => {
    const before = h.recorder.calls.length;
    const malformed = await rawPost("/v1/chat/completions", '{"model": "x", "messages": [');
    expect(malformed.status).toBe(400);
    expectOpenAIError(malformed.json);
    expect(malformed.json.error.message).toMatch(/could not parse the JSON body/);
    expect(malformed.json.error.type).toBe("invalid_request_error");

    const cases: [unknown, string][] = [
      [{ model: UPSTREAM_MODEL }, "messages"],
      [{ model: UPSTREAM_MODEL, messages: [] }, "messages"],
      [{ model: UPSTREAM_MODEL, messages: [{ role: "wizard", content: "x" }] }, "messages[0].role"],
      [
        {
          model: UPSTREAM_MODEL,
          messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://x/y.png" } }] }],
        },
        "messages[0].content[0].type",
      ],
      [{ model: UPSTREAM_MODEL, messages: [{ role: "tool", content: "r" }] }, "messages[0].tool_call_id"],
      [{ model: UPSTREAM_MODEL, messages: [{ role: "user", content: "x" }], temperature: 2.5 }, "temperature"],
      [
        { model: UPSTREAM_MODEL, messages: [{ role: "user", content: "x" }], top_logprobs: 30, logprobs: true },
        "top_logprobs",
      ],
      [{ model: UPSTREAM_MODEL, messages: [{ role: "user", content: "x" }], stop: ["a", "b", "c", "d", "e"] }, "stop"],
      [{ messages: [{ role: "user", content: "x" }] }, "model"],
    ];
    for (const [body, param] of cases) {
      const res = await rawPost("/v1/chat/completions", JSON.stringify(body));
      expect(res.status, param).toBe(400);
      expectOpenAIError(res.json);
      expect(res.json.error.param).toBe(param);
      expect(res.json.error.message).toContain(param);
    }
    // Through the SDK the same errors surface as BadRequestError with param.
    const err = await h.client.chat.completions
      .create({ model: UPSTREAM_MODEL, messages: [{ role: "robot" as "user", content: "x" }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as APIError).param).toBe("messages[0].role");
    await new Promise((r) => setTimeout(r, 20));
    expect(h.recorder.calls.length).toBe(before);
  });

  it("answers 404 model_not_found for an unknown model and for an unknown URL; records nothing", async () => {
    const before = h.recorder.calls.length;
    const err = (await h.client.chat.completions
      .create({ model: "gpt-17", messages: [{ role: "user", content: "x" }] })
      .catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect(err.code).toBe("model_not_found");
    expect(err.param).toBe("model");
    const url = await rawPost("/v2/nothing", "{}");
    expect(url.status).toBe(404);
    expectOpenAIError(url.json);
    expect(url.json.error.message).toContain("/v2/nothing");
    expect(h.recorder.calls.length).toBe(before);
  });

  it("answers 413 for a body over the limit; records nothing", async () => {
    const before = h.recorder.calls.length;
    const big = JSON.stringify({ model: UPSTREAM_MODEL, messages: [{ role: "user", content: "x".repeat(100_000) }] });
    const res = await rawPost("/v1/chat/completions", big);
    expect(res.status).toBe(413);
    expectOpenAIError(res.json);
    const viaSdk = (await h.client.chat.completions
      .create({ model: UPSTREAM_MODEL, messages: [{ role: "user", content: "y".repeat(100_000) }] })
      .catch((e: unknown) => e)) as APIError;
    expect(viaSdk.status).toBe(413);
    expect(h.recorder.calls.length).toBe(before);
  });

  it("passes context_length_exceeded from the backend as a 400, streaming or not, and records the failure once", async () => {
    const before = h.recorder.calls.length;
    const request = { model: UPSTREAM_MODEL, messages: [{ role: "user" as const, content: "x" }], max_tokens: 10_000 };
    const err = (await h.client.chat.completions.create(request).catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.code).toBe("context_length_exceeded");
    expect(err.message).toMatch(/maximum context length is 4096/);
    const streamErr = (await h.client.chat.completions
      .create({ ...request, stream: true })
      .catch((e: unknown) => e)) as APIError;
    expect(streamErr).toBeInstanceOf(OpenAI.BadRequestError);
    expect(streamErr.code).toBe("context_length_exceeded");
    const calls = await newCalls(before, 2);
    expect(calls).toHaveLength(2);
    for (const call of calls) {
      expect(call.outcome).toBeNull();
      expect(call.error).toMatchObject({ status: 400, code: "context_length_exceeded" });
    }
  });
});

describe("recording", () => {
  it("records each completed call exactly once, under the id the client saw", async () => {
    const before = h.recorder.calls.length;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await h.client.chat.completions.create({
        model: UPSTREAM_MODEL,
        messages: [{ role: "user", content: `call ${i}` }],
      });
      ids.push(res.id);
      const stream = await h.client.chat.completions.create({
        model: UPSTREAM_MODEL,
        messages: [{ role: "user", content: `stream ${i}` }],
        stream: true,
      });
      for await (const chunk of stream) if (chunk.choices[0]?.finish_reason) ids.push(chunk.id);
    }
    const calls = await newCalls(before, 6);
    expect(calls.map((c) => c.id).sort()).toEqual([...ids].sort());
  });

  it("serves and records 100 concurrent requests", async () => {
    const before = h.recorder.calls.length;
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        i % 2 === 0
          ? h.client.chat.completions
              .create({ model: UPSTREAM_MODEL, messages: [{ role: "user", content: `req ${i}` }] })
              .then((r) => ({ id: r.id, text: r.choices[0].message.content }))
          : h.client.chat.completions
              .create({ model: UPSTREAM_MODEL, messages: [{ role: "user", content: `req ${i}` }], stream: true })
              .then(async (s) => {
                let id = "";
                let text = "";
                for await (const chunk of s) {
                  id = chunk.id;
                  text += chunk.choices[0]?.delta.content ?? "";
                }
                return { id, text };
              }),
      ),
    );
    results.forEach((r, i) => {
      expect(r.text).toBe(`You said: req ${i}`);
    });
    const calls = (await newCalls(before, 100)) as RecordedChatCall[];
    expect(calls).toHaveLength(100);
    expect(new Set(calls.map((c) => c.id))).toEqual(new Set(results.map((r) => r.id)));
    for (const call of calls) {
      const user = call.request.messages[0].content as string;
      expect(call.outcome?.choices[0].text).toBe(`You said: ${user}`);
    }
  });
});
