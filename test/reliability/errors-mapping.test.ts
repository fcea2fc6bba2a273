// Client mistakes are 4xx in the right error shape, never a 500 (issue 15 item 8): sampling
// parameters the engine cannot take, OTLP values nested past any sane depth, unknown routes and
// wrong methods; and whatever fails inside a handler answers JSON without a stack trace.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AppHarness, jsonOf, openAIError, startApp, TOY_MODEL } from "./limits-access-harness.ts";

describe("client mistakes answer 400, not 500", () => {
  let h: AppHarness;
  let client: OpenAI;
  beforeAll(async () => {
    h = await startApp({ upstream: true });
    client = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  afterAll(async () => {
    await h.close();
  });

  const status = (e: unknown) => (e as InstanceType<typeof OpenAI.APIError>).status;

  it("rejects top_p: 0 and top_k: 1e12 with 400 naming the parameter", async () => {
    const messages = [{ role: "user" as const, content: "hi" }];
    const topP = await client.chat.completions.create({ model: TOY_MODEL, messages, top_p: 0 }).catch((e) => e);
    expect(topP).toBeInstanceOf(OpenAI.APIError);
    expect(status(topP)).toBe(400);
    expect((topP as { param?: string }).param).toBe("top_p");
    const topK = await client.chat.completions
      .create({ model: TOY_MODEL, messages, top_k: 1e12 } as never)
      .catch((e) => e);
    expect(status(topK)).toBe(400);
    expect((topK as { param?: string }).param).toBe("top_k");
    const legacy = await client.completions
      .create({ model: TOY_MODEL, prompt: "hi", top_p: 0, max_tokens: 2 })
      .catch((e) => e);
    expect(status(legacy)).toBe(400);
    expect(h.upstream?.stats.chatRequests).toBe(0);
  });

  it("rejects an OTLP kvlistValue nested 20,000 deep with 400", async () => {
    // Built as text: JSON.stringify itself overflows on such depth in some runtimes.
    let body = '{"stringValue":"leaf"}';
    for (let i = 0; i < 20_000; i++) body = `{"kvlistValue":{"values":[{"key":"k","value":${body}}]}}`;
    const payload = `{"resourceSpans":[{"resource":{"attributes":[{"key":"deep","value":${body}}]},"scopeSpans":[]}]}`;
    const res = await fetch(`${h.url}/v1/traces`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: payload,
    });
    expect(res.status).toBe(400);
    expect(((await jsonOf(res)) as { message: string }).message).toMatch(/deep|depth|nest/i);
  });
});

describe("unknown routes and wrong methods answer JSON", () => {
  let h: AppHarness;
  beforeAll(async () => {
    h = await startApp({ upstream: true });
  });
  afterAll(async () => {
    await h.close();
  });

  it("GET /v1/nonexistent is a 404 in OpenAI's shape", async () => {
    const res = await fetch(`${h.url}/v1/nonexistent`);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toMatch(/json/);
    expect((await openAIError(res)).message).toMatch(/\/v1\/nonexistent/);
  });

  it("POST /v1/models is a 405 with Allow, in OpenAI's shape (also under an attempt's base URL)", async () => {
    for (const path of ["/v1/models", "/rollouts/ro-1/attempts/at-1/v1/models"]) {
      const res = await fetch(`${h.url}${path}`, { method: "POST", body: "{}" });
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toMatch(/GET/);
      expect((await openAIError(res)).type).toBe("invalid_request_error");
    }
    const get = await fetch(`${h.url}/v1/chat/completions`);
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toMatch(/POST/);
    await openAIError(get);
  });

  it("GET /api/v1/unknown is a 404 in the store's error shape; DELETE on a store path is 405", async () => {
    const res = await fetch(`${h.url}/api/v1/unknown`);
    expect(res.status).toBe(404);
    const error = await openAIError(res);
    expect(error.type).toBe("not_found_error");
    const wrong = await fetch(`${h.url}/api/v1/rollouts`, { method: "DELETE" });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toMatch(/GET/);
    await openAIError(wrong);
  });

  it("an unknown path anywhere else is a JSON 404 too", async () => {
    const res = await fetch(`${h.url}/no/such/page`);
    expect(res.status).toBe(404);
    await openAIError(res);
  });
});

describe("failures inside handlers", () => {
  it("answer JSON 500 without a stack trace when the store itself breaks", async () => {
    const h = await startApp({});
    await h.store.close(); // every store call now fails with libSQL's own error
    try {
      const otlp = await fetch(`${h.url}/v1/traces`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          resourceSpans: [
            {
              resource: { attributes: [{ key: "fulgur.attempt_id", value: { stringValue: "at-x" } }] },
              scopeSpans: [{ spans: [{ name: "s", spanId: "0000000000000001", startTimeUnixNano: "1" }] }],
            },
          ],
        }),
      });
      expect(otlp.status).toBeGreaterThanOrEqual(500);
      const text = await otlp.text();
      expect(() => JSON.parse(text)).not.toThrow();
      expect(text).not.toMatch(/\n\s+at /);
      const list = await fetch(`${h.url}/api/v1/rollouts`);
      expect(list.status).toBeGreaterThanOrEqual(500);
      const listText = await list.text();
      expect(() => JSON.parse(listText)).not.toThrow();
      expect(listText).not.toMatch(/\n\s+at /);
    } finally {
      await h.close().catch(() => {});
    }
  });
});
