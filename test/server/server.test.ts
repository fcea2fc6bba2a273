// The whole server as agents see it: a tiny model on the GPU behind the OpenAI-compatible API,
// real clients (the official openai SDK, LangChain.js, the AI SDK) pointed at an attributed base
// URL, and every call checked in the libSQL store as a transition under the right attempt.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createOpenAI } from "@ai-sdk/openai";
import { ChatOpenAI } from "@langchain/openai";
import { generateText } from "ai";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { type FulgurServer, startServer } from "../../src/server.ts";

let dir: string;
let server: FulgurServer;
const MODEL = "tiny";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-server-"));
  await writeTinyModel(join(dir, MODEL), { hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48, seed: 4 });
  server = await startServer({
    modelDir: join(dir, MODEL),
    storeUrl: `file:${join(dir, "store.db")}`,
    port: 0,
    maxSeqLen: 512,
  });
});

afterAll(async () => {
  await server?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

async function newAttempt(): Promise<{ rolloutId: string; attemptId: string; baseURL: string }> {
  const rollout = await server.store.enqueueRollout({ input: { task: "test" } });
  const claim = await server.store.claimRollout({ workerId: "test-worker" });
  expect(claim?.rollout.id).toBe(rollout.id);
  const attemptId = claim!.attempt.id;
  return { rolloutId: rollout.id, attemptId, baseURL: `${server.url}/rollouts/${rollout.id}/attempts/${attemptId}/v1` };
}

async function transitionsOf(attemptId: string) {
  await server.recorder.flush();
  return server.store.getTransitions({ attemptId });
}

const decode = (ids: ArrayLike<number>) => server.model!.tokenizer.decode(Array.from(ids), { skipSpecialTokens: true });

describe("OpenAI-compatible API on the local engine", () => {
  it("serves the openai SDK and records the exact tokens under the attempt", async () => {
    const { attemptId, rolloutId, baseURL } = await newAttempt();
    const client = new OpenAI({ baseURL, apiKey: "unused" });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
    const res = await client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "What is 2 + 3?" },
      ],
      max_tokens: 12,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
    });
    const choice = res.choices[0];
    expect(res.object).toBe("chat.completion");
    expect(res.usage?.completion_tokens).toBeGreaterThan(0);
    expect(choice.logprobs?.content?.length).toBe(res.usage?.completion_tokens);
    expect(choice.logprobs?.content?.[0].top_logprobs.length).toBe(2);
    const [t] = await transitionsOf(attemptId);
    expect(t.rolloutId).toBe(rolloutId);
    expect(t.responseIds.length).toBe(res.usage?.completion_tokens);
    expect(decode(t.responseIds)).toBe(choice.message.content ?? "");
    expect(Array.from(t.responseLogprobs!)).toEqual(choice.logprobs!.content!.map((l) => Math.fround(l.logprob)));
    const prompt = server.model!.tokenizer.decode(Array.from(t.promptIds));
    expect(prompt).toContain("What is 2 + 3?");
    expect(prompt.endsWith("<|im_start|>assistant\n")).toBe(true);
    expect(t.adapterVersion).toBeNull();
    expect((t.messages as { role: string }[]).map((m) => m.role)).toEqual(["system", "user"]);
    const spans = await server.store.getSpans({ attemptId });
    expect(spans.map((s) => s.kind)).toEqual(["llm"]);
  });

  it("streams with the SDK; the assembled text equals the recorded tokens", async () => {
    const { attemptId, baseURL } = await newAttempt();
    const client = new OpenAI({ baseURL, apiKey: "unused" });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Tell me a story" }],
      max_tokens: 16,
      temperature: 0.8,
      seed: 3,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    const [t] = await transitionsOf(attemptId);
    expect(decode(t.responseIds)).toBe(text);
    expect(usage?.completion_tokens).toBe(t.responseIds.length);
  });

  it("renders tools into the prompt the HF way and attributes by header too", async () => {
    const { attemptId, rolloutId } = await newAttempt();
    const client = new OpenAI({
      baseURL: `${server.url}/v1`,
      apiKey: "unused",
      defaultHeaders: { "x-fulgur-rollout-id": rolloutId, "x-fulgur-attempt-id": attemptId },
    });
    const res = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "What is 17 * 23?" }],
      tools: [
        {
          type: "function",
          function: {
            name: "calculator",
            description: "Evaluates an arithmetic expression",
            parameters: { type: "object", properties: { expression: { type: "string" } }, required: ["expression"] },
          },
        },
      ],
      max_tokens: 8,
      temperature: 0,
    });
    expect(["stop", "length", "tool_calls"]).toContain(res.choices[0].finish_reason);
    const [t] = await transitionsOf(attemptId);
    const prompt = server.model!.tokenizer.decode(Array.from(t.promptIds));
    expect(prompt).toContain("<tools>");
    expect(prompt).toContain('"name": "calculator"');
  });

  it("works unchanged with LangChain.js and the AI SDK", async () => {
    const lc = await newAttempt();
    const chat = new ChatOpenAI({
      model: MODEL,
      apiKey: "unused",
      configuration: { baseURL: lc.baseURL },
      maxTokens: 6,
      temperature: 0,
    });
    const msg = await chat.invoke("Hello from LangChain");
    expect(typeof msg.content).toBe("string");
    const [lt] = await transitionsOf(lc.attemptId);
    expect(decode(lt.responseIds)).toBe(msg.content);

    const ai = await newAttempt();
    const provider = createOpenAI({ baseURL: ai.baseURL, apiKey: "unused" });
    const out = await generateText({
      model: provider.chat(MODEL),
      prompt: "Hello from the AI SDK",
      maxOutputTokens: 6,
      temperature: 0,
    });
    const [at] = await transitionsOf(ai.attemptId);
    expect(decode(at.responseIds)).toBe(out.text);
  });
});

describe("bad input and load", () => {
  const post = (path: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${server.url}${path}`, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", ...headers },
    });

  it("answers malformed requests in OpenAI's error shape and records nothing for them", async () => {
    await server.recorder.flush();
    const before = (await server.store.getTransitions({ unattributed: true })).length;
    const cases: [string, number, RegExp][] = [
      ["{not json", 400, /JSON/i],
      [JSON.stringify({ model: MODEL }), 400, /messages/],
      [JSON.stringify({ model: "gpt-9", messages: [{ role: "user", content: "hi" }] }), 404, /gpt-9/],
      [JSON.stringify({ model: MODEL, messages: [{ role: "wizard", content: "hi" }] }), 400, /role/],
    ];
    for (const [body, status, message] of cases) {
      const res = await post("/v1/chat/completions", body);
      expect(res.status, body).toBe(status);
      const json = (await res.json()) as { error: { message: string; type: string } };
      expect(json.error.message).toMatch(message);
      expect(typeof json.error.type).toBe("string");
    }
    await server.recorder.flush();
    expect((await server.store.getTransitions({ unattributed: true })).length).toBe(before);
  });

  it("rejects requests past the context window with context_length_exceeded", async () => {
    const res = await post(
      "/v1/chat/completions",
      JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 100000 }),
    );
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: { code: string } };
    expect(json.error.code).toBe("context_length_exceeded");
  });

  it("completes and records 100 concurrent requests", async () => {
    await server.recorder.flush();
    const before = (await server.store.getTransitions({ unattributed: true })).length;
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        client.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: `request ${i}` }],
          max_tokens: 4,
          temperature: 1,
          seed: i,
        }),
      ),
    );
    expect(results.every((r) => r.choices.length === 1)).toBe(true);
    await server.recorder.flush();
    const after = await server.store.getTransitions({ unattributed: true });
    expect(after.length - before).toBe(100);
  });
});

describe("security", () => {
  it("requires the bearer key on the proxy and store routes when one is set", async () => {
    const { createApp } = await import("../../src/server.ts");
    const { openStore } = await import("../../src/store/libsql.ts");
    const store = await openStore(":memory:");
    const { app } = createApp({ store, apiKey: "s3cret" });
    const chat = {
      method: "POST",
      body: JSON.stringify({ model: "x", messages: [] }),
      headers: { "content-type": "application/json" },
    };
    const denied = await app.request("/v1/chat/completions", chat);
    expect(denied.status).toBe(401);
    expect(((await denied.json()) as { error: { type: string } }).error.type).toBeTruthy();
    expect((await app.request("/api/v1/rollouts")).status).toBe(401);
    expect((await app.request("/api/v1/rollouts", { headers: { authorization: "Bearer s3cret" } })).status).toBe(200);
    // With the key but no model loaded, the proxy says so instead of failing obscurely.
    const noModel = await app.request("/v1/chat/completions", {
      ...chat,
      body: JSON.stringify({ model: "x", messages: [{ role: "user", content: "hi" }] }),
      headers: { ...chat.headers, authorization: "Bearer s3cret" },
    });
    expect([404, 503]).toContain(noModel.status);
    expect((await app.request("/health")).status).toBe(200);
    await store.close();
  });
});
