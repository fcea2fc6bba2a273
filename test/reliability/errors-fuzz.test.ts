// No client input makes a 500 (issue 15 item 8): every documented route of the composed server,
// store API and OpenAI proxy alike, is sent a fixed set of malformed bodies and queries; each
// answer must be a JSON error below 500 (or a success), never a stack trace.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROUTES } from "../../src/store/openapi.ts";
import { type AppHarness, startApp } from "./limits-access-harness.ts";

const BODIES = [
  "",
  "null",
  "[]",
  "{}",
  "42",
  '"text"',
  "{not json",
  '{"a":1}',
  '{"ids":"x","timeoutMs":-1}',
  '{"ids":[],"timeoutMs":1e308}',
  '{"input":null,"config":{"maxAttempts":1e308}}',
  '{"spans":[null,{"attemptId":7}]}',
  '{"transitions":[{"promptIds":"!!!","responseIds":[1e20]}]}',
  '{"rewards":[{"value":"NaN"}]}',
  '{"value":{"__proto__":{"x":1}}}',
  '{"status":"bogus","error":{"message":[]}}',
  '{"workerId":"","mode":"nope"}',
  '{"model":"toy-upstream","messages":"hi"}',
  '{"model":"toy-upstream","messages":[{"role":"user","content":[{"type":"text"}]}],"n":1e9}',
  '{"model":"toy-upstream","prompt":[[-1]],"max_tokens":1e12}',
  `${"[".repeat(10_000)}${"]".repeat(10_000)}`,
];

const QUERIES = [
  "",
  "?limit=-1",
  "?limit=abc&offset=1e400",
  "?status=bogus&order=sideways",
  "?cursor=%00",
  "?version=-5",
];

describe("no client input makes a 500", () => {
  let h: AppHarness;
  beforeAll(async () => {
    h = await startApp({ upstream: true });
  });
  afterAll(async () => {
    await h.close();
  });

  const paths = [
    ...ROUTES.map((r) => ({ method: r.method.toUpperCase(), path: r.path.replace(/:[a-zA-Z]+/g, "ro-nope") })),
    { method: "POST", path: "/v1/chat/completions" },
    { method: "POST", path: "/v1/completions" },
    { method: "POST", path: "/rollouts/ro-x/attempts/at-x/v1/chat/completions" },
    { method: "POST", path: "/v1/traces" },
    { method: "GET", path: "/v1/models" },
  ];

  it("answers every route's malformed input with JSON below 500", async () => {
    const failures: string[] = [];
    for (const { method, path } of paths) {
      const variants =
        method === "GET"
          ? QUERIES.map((q) => ({ url: `${path}${q}`, body: undefined }))
          : BODIES.map((b) => ({ url: path, body: b }));
      for (const { url, body } of variants) {
        const res = await fetch(`${h.url}${url}`, {
          method,
          headers: { "content-type": "application/json" },
          body,
        });
        const text = await res.text();
        let json = true;
        try {
          JSON.parse(text);
        } catch {
          json = false;
        }
        if (res.status >= 500 || !json) {
          failures.push(`${method} ${url} ${JSON.stringify(body)?.slice(0, 60)} → ${res.status} ${text.slice(0, 160)}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });
});
