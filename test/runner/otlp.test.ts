// OTLP/HTTP JSON intake at POST /v1/traces (otlpRoutes), served by the real app next to the proxy
// and store routes: spans exported the way OpenTelemetry SDKs send them are attributed to attempts through
// resource or span attributes and converted (ids, nanosecond times, attributes, events, status).
import { gzipSync } from "node:zlib";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { convertTraces, nanosToMs } from "../../src/runner/otlp.ts";
import { createApp } from "../../src/server.ts";
import { openStore } from "../../src/store/libsql.ts";
import type { Claim, Store } from "../../src/store/types.ts";

let store: Store;
let app: Hono;

beforeAll(async () => {
  store = await openStore(":memory:");
  // The real app: createApp mounts otlpRoutes next to the proxy's /v1 routes.
  app = createApp({ store }).app;
});

afterAll(async () => {
  await store?.close();
});

async function claim(): Promise<Claim> {
  await store.enqueueRollout({ input: "otlp" });
  const c = await store.claimRollout({ workerId: "otel" });
  if (!c) throw new Error("nothing to claim");
  return c;
}

const str = (key: string, value: string) => ({ key, value: { stringValue: value } });

function post(body: unknown, headers: Record<string, string> = {}) {
  return app.request("/v1/traces", {
    method: "POST",
    body: typeof body === "string" || body instanceof Uint8Array ? (body as BodyInit) : JSON.stringify(body),
    headers: { "content-type": "application/json", ...headers },
  });
}

const TRACE = "5b8efff798038103d269b633813fc60c";

describe("POST /v1/traces", () => {
  it("stores spans attributed by resource attributes, converting ids, times, attributes, events and status", async () => {
    const { rollout, attempt } = await claim();
    const res = await post({
      resourceSpans: [
        {
          resource: {
            attributes: [
              str("service.name", "my-agent"),
              str("fulgur.rollout_id", rollout.id),
              str("fulgur.attempt_id", attempt.id),
            ],
          },
          scopeSpans: [
            {
              scope: { name: "my-agent-tracer", version: "1.0" },
              spans: [
                {
                  traceId: TRACE,
                  spanId: "eee19b7ec3c1b174",
                  name: "agent.run",
                  kind: 1,
                  startTimeUnixNano: "1700000000000000000",
                  endTimeUnixNano: "1700000000250500000",
                  attributes: [
                    { key: "steps", value: { intValue: "3" } },
                    { key: "score", value: { doubleValue: 0.5 } },
                    { key: "ok", value: { boolValue: true } },
                    { key: "tags", value: { arrayValue: { values: [{ stringValue: "a" }, { intValue: 2 }] } } },
                    { key: "meta", value: { kvlistValue: { values: [str("k", "v")] } } },
                  ],
                  events: [{ timeUnixNano: "1700000000100000000", name: "thinking", attributes: [str("note", "hmm")] }],
                  status: { code: 1 },
                },
                {
                  traceId: TRACE,
                  spanId: "eee19b7ec3c1b175",
                  parentSpanId: "eee19b7ec3c1b174",
                  name: "chat gpt-x",
                  kind: 3,
                  startTimeUnixNano: "1700000000010000000",
                  endTimeUnixNano: "1700000000200000000",
                  attributes: [str("gen_ai.operation.name", "chat"), str("gen_ai.request.model", "tiny")],
                  status: { code: 2, message: "rate limited" },
                },
                {
                  traceId: TRACE,
                  spanId: "eee19b7ec3c1b176",
                  parentSpanId: "eee19b7ec3c1b174",
                  name: "execute_tool calculator",
                  startTimeUnixNano: 1700000000210000000,
                  endTimeUnixNano: "1700000000220000000",
                  attributes: [str("gen_ai.tool.name", "calculator")],
                },
              ],
            },
          ],
        },
      ],
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ partialSuccess: {} });
    const spans = await store.getSpans({ attemptId: attempt.id });
    expect(spans.map((s) => [s.seq, s.name, s.kind])).toEqual([
      [1, "agent.run", "custom"],
      [2, "chat gpt-x", "llm"],
      [3, "execute_tool calculator", "tool"],
    ]);
    const [run, chat, tool] = spans;
    expect(run.rolloutId).toBe(rollout.id);
    expect(run.traceId).toBe(TRACE);
    expect(run.spanId).toBe("eee19b7ec3c1b174");
    expect(run.parentSpanId).toBeNull();
    expect(chat.parentSpanId).toBe(run.spanId);
    expect(run.startTime).toBe(1_700_000_000_000);
    expect(run.endTime).toBe(1_700_000_000_250.5);
    expect(run.attributes).toMatchObject({
      "service.name": "my-agent",
      steps: 3,
      score: 0.5,
      ok: true,
      tags: ["a", 2],
      meta: { k: "v" },
      "otel.span_kind": "internal",
      "otel.scope.name": "my-agent-tracer",
    });
    expect(run.events).toEqual([{ name: "thinking", time: 1_700_000_000_100, attributes: { note: "hmm" } }]);
    expect(run.status).toEqual({ code: "ok" });
    expect(chat.status).toEqual({ code: "error", message: "rate limited" });
    expect(chat.attributes["otel.span_kind"]).toBe("client");
    expect(tool.startTime).toBe(1_700_000_000_210);
  });

  it("attributes by span attributes too, accepts base64 ids and gzip, and rejects unattributed spans like a collector", async () => {
    const a = await claim();
    const b = await claim();
    const traceB64 = Buffer.from(TRACE, "hex").toString("base64");
    const spanB64 = Buffer.from("0102030405060708", "hex").toString("base64");
    const span = (id: string, attemptId: string | null) => ({
      traceId: traceB64,
      spanId: id,
      name: `step ${id}`,
      startTimeUnixNano: "1700000000000000000",
      endTimeUnixNano: "1700000001000000000",
      attributes: attemptId ? [str("fulgur.attempt_id", attemptId)] : [],
    });
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [str("service.name", "mixed")] },
          scopeSpans: [
            {
              spans: [
                span(spanB64, a.attempt.id),
                span("1111111111111111", b.attempt.id),
                span("2222222222222222", null),
              ],
            },
          ],
        },
        {
          resource: { attributes: [str("fulgur.attempt_id", "at-does-not-exist")] },
          scopeSpans: [{ spans: [span("3333333333333333", null)] }],
        },
      ],
    };
    const res = await post(gzipSync(JSON.stringify(body)), { "content-encoding": "gzip" });
    expect(res.status).toBe(200);
    const json = (await res.json()) as { partialSuccess: { rejectedSpans: string; errorMessage: string } };
    expect(json.partialSuccess.rejectedSpans).toBe("2");
    expect(json.partialSuccess.errorMessage).toMatch(/fulgur\.attempt_id/);
    expect(json.partialSuccess.errorMessage).toMatch(/at-does-not-exist/);
    const [sa] = await store.getSpans({ attemptId: a.attempt.id });
    expect(sa.spanId).toBe("0102030405060708");
    expect(sa.traceId).toBe(TRACE);
    expect(sa.rolloutId).toBe(a.rollout.id);
    expect((await store.getSpans({ attemptId: b.attempt.id })).map((s) => s.spanId)).toEqual(["1111111111111111"]);
    // A span write is a sign of life: the attempt moved to running.
    expect((await store.getAttempt(b.attempt.id)).status).toBe("running");
  });

  it("answers 400 for malformed payloads and 415 for other content types, storing nothing", async () => {
    const { attempt } = await claim();
    const good = (over: Record<string, unknown>) => ({
      resourceSpans: [
        {
          resource: { attributes: [str("fulgur.attempt_id", attempt.id)] },
          scopeSpans: [
            {
              spans: [
                {
                  traceId: TRACE,
                  spanId: "aaaaaaaaaaaaaaaa",
                  name: "x",
                  startTimeUnixNano: "1700000000000000000",
                  ...over,
                },
              ],
            },
          ],
        },
      ],
    });
    const cases: [unknown, RegExp][] = [
      ["{not json", /not valid/],
      [[1, 2], /ExportTraceServiceRequest/],
      [{ resourceSpans: {} }, /resourceSpans must be an array/],
      [good({ spanId: "xyz" }), /spanId must be 16 hex digits/],
      [good({ spanId: undefined }), /spanId is required/],
      [good({ name: "" }), /name must be a non-empty string/],
      [good({ startTimeUnixNano: "soon" }), /startTimeUnixNano/],
      [good({ attributes: [{ value: { stringValue: "no key" } }] }), /attributes\[0\]/],
    ];
    for (const [body, message] of cases) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as { message: string }).message).toMatch(message);
    }
    // Protobuf is served (test/runner/otlp-protobuf.test.ts); anything else is a 415.
    const other = await post("<spans/>", { "content-type": "application/xml" });
    expect(other.status).toBe(415);
    expect(await store.getSpans({ attemptId: attempt.id })).toEqual([]);
    // The same payload, well formed, is accepted: the cases above failed for the stated reason.
    expect((await post(good({}))).status).toBe(200);
    expect((await store.getSpans({ attemptId: attempt.id })).length).toBe(1);
  });

  it("converts nanosecond timestamps exactly to fractional milliseconds", () => {
    expect(nanosToMs("1700000000123456789", "t")).toBe(1_700_000_000_123.456);
    expect(nanosToMs(undefined, "t")).toBeNull();
    expect(nanosToMs({ low: 1_700_000_000, high: 0 }, "t")).toBe(1700);
    const big = 1_700_000_000_123_456_789n;
    const long = { low: Number(big & 0xffffffffn) | 0, high: Number(big >> 32n) };
    expect(nanosToMs(long, "t")).toBe(1_700_000_000_123.456);
    expect(() => nanosToMs("-5", "t")).toThrow(/negative/);
    expect(convertTraces({}).byAttempt.size).toBe(0);
  });
});
