// One API-key check for every route (issue 15 item 9): the same header forms are accepted on the
// proxy, the attempt-scoped proxy, OTLP intake and the store API; the comparison is constant-time;
// an empty key is refused instead of silently turning auth off.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWorker } from "../../src/commands/worker.ts";
import { createApp, parseServerArgs } from "../../src/server.ts";
import { HttpStore } from "../../src/store/http-client.ts";
import { openStore } from "../../src/store/libsql.ts";
import { type AppHarness, openAIError, startApp, TOY_MODEL } from "./limits-access-harness.ts";

const KEY = "s3cret-key";

describe("an empty API key is refused", () => {
  it("rejects --api-key= and an empty FULGUR_API_KEY at the command line", () => {
    expect(() => parseServerArgs(["--api-key="])).toThrow(/--api-key.*empty/);
    expect(() => parseServerArgs(["--api-key", ""])).toThrow(/--api-key.*empty/);
    const saved = process.env.FULGUR_API_KEY;
    process.env.FULGUR_API_KEY = "";
    try {
      expect(() => parseServerArgs([])).toThrow(/FULGUR_API_KEY.*empty/);
    } finally {
      if (saved === undefined) delete process.env.FULGUR_API_KEY;
      else process.env.FULGUR_API_KEY = saved;
    }
    expect(parseServerArgs(["--api-key", KEY]).apiKey).toBe(KEY);
  });

  it("the worker refuses an empty --api-key before contacting any server", async () => {
    await expect(
      runWorker(["--server", "http://127.0.0.1:9", "--agent", "test/runner/fixtures/worker-agent.ts", "--api-key="]),
    ).rejects.toThrow(/--api-key.*empty/);
  });

  it("rejects an empty key in createApp too", async () => {
    const store = await openStore(":memory:");
    try {
      expect(() => createApp({ store, apiKey: "" })).toThrow(/apiKey.*empty/);
    } finally {
      await store.close();
    }
  });
});

describe("the same key check on every route", () => {
  let h: AppHarness;
  beforeAll(async () => {
    h = await startApp({ upstream: true, apiKey: KEY });
  });
  afterAll(async () => {
    await h.close();
  });

  const routes: { name: string; path: string; init?: RequestInit }[] = [
    { name: "proxy", path: "/v1/models" },
    { name: "attempt proxy", path: "/rollouts/ro-a/attempts/at-a/v1/models" },
    { name: "store", path: "/api/v1/rollouts" },
    {
      name: "otlp",
      path: "/v1/traces",
      init: {
        method: "POST",
        body: JSON.stringify({ resourceSpans: [] }),
        headers: { "content-type": "application/json" },
      },
    },
  ];
  const call = (route: (typeof routes)[number], auth: Record<string, string>) =>
    fetch(`${h.url}${route.path}`, {
      ...route.init,
      headers: { ...((route.init?.headers as Record<string, string>) ?? {}), ...auth },
    });

  it.each(routes)("accepts Authorization: Bearer and x-api-key on the $name route", async (route) => {
    const forms: Record<string, string>[] = [
      { authorization: `Bearer ${KEY}` },
      { authorization: `bearer ${KEY}` },
      { "x-api-key": KEY },
    ];
    for (const auth of forms) {
      const res = await call(route, auth);
      expect(res.status, JSON.stringify(auth)).toBe(200);
      await res.body?.cancel();
    }
  });

  it.each(routes)("refuses a missing, wrong or malformed key on the $name route with 401", async (route) => {
    const forms: Record<string, string>[] = [
      {},
      { authorization: KEY },
      { authorization: `Bearer ${KEY}x` },
      { authorization: `Bearer ${KEY.slice(0, -1)}` },
      { authorization: "Bearer " },
      { "x-api-key": "nope" },
      { authorization: `Basic ${KEY}` },
    ];
    for (const auth of forms) {
      const res = await call(route, auth);
      expect(res.status, `${route.path} ${JSON.stringify(auth)}`).toBe(401);
      if (route.name === "otlp") {
        // OTLP/HTTP answers carry a google.rpc.Status: 16 = UNAUTHENTICATED.
        expect(await res.json()).toMatchObject({ code: 16 });
      } else {
        expect((await openAIError(res)).type).toBe("authentication_error");
      }
    }
  });

  it("leaves /health, the dashboard page and the OpenAPI document open", async () => {
    for (const path of ["/health", "/", "/api/v1/openapi.json"]) {
      const res = await fetch(`${h.url}${path}`);
      expect(res.status, path).toBe(200);
      await res.body?.cancel();
    }
  });

  it("works with the real openai client and HttpStore given the key, and not without", async () => {
    const good = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const answer = await good.chat.completions.create({
      model: TOY_MODEL,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(answer.choices[0].message.content).toMatch(/hi/);
    const bad = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: "wrong", maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect(Array.isArray(await new HttpStore(h.url, { apiKey: KEY }).listRollouts())).toBe(true);
    await expect(new HttpStore(h.url, { apiKey: "wrong" }).listRollouts()).rejects.toMatchObject({ status: 401 });
  });
});
