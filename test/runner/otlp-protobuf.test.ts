// OTLP/HTTP protobuf at POST /v1/traces, fed by the real OpenTelemetry JS exporters over real HTTP
// to the real app: spans sent by @opentelemetry/exporter-trace-otlp-proto (plain and gzip) land in
// the store under their attempt exactly as the same spans sent by the JSON exporter
// (@opentelemetry/exporter-trace-otlp-http) do; answers are protobuf (decoded here by
// OpenTelemetry's own serializer); malformed, truncated and too-deep payloads are 400s.
import { gzipSync } from "node:zlib";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { type Resource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, serveApp } from "../../src/http/serve.ts";
import { MAX_VALUE_DEPTH } from "../../src/runner/otlp.ts";
import { decodeExportTraceServiceRequest, MAX_ANY_VALUE_DEPTH } from "../../src/runner/otlp-protobuf.ts";
import { createApp } from "../../src/server.ts";
import { openStore } from "../../src/store/libsql.ts";
import type { Claim, Span, Store } from "../../src/store/types.ts";

let store: Store;
let server: RunningServer;

beforeAll(async () => {
  store = await openStore(":memory:");
  server = await serveApp(createApp({ store }).app);
});

afterAll(async () => {
  await server?.close();
  await store?.close();
});

async function claim(): Promise<Claim> {
  await store.enqueueRollout({ input: "otlp-proto" });
  const c = await store.claimRollout({ workerId: "otel-proto" });
  if (!c) throw new Error("nothing to claim");
  return c;
}

const resourceFor = (c: Claim) =>
  resourceFromAttributes({
    "service.name": "proto-agent",
    "fulgur.rollout_id": c.rollout.id,
    "fulgur.attempt_id": c.attempt.id,
  });

/** The same span under another resource (another attempt), so one recording feeds several exporters. */
function withResource(s: ReadableSpan, resource: Resource): ReadableSpan {
  return {
    name: s.name,
    kind: s.kind,
    spanContext: () => s.spanContext(),
    parentSpanContext: s.parentSpanContext,
    startTime: s.startTime,
    endTime: s.endTime,
    status: s.status,
    attributes: s.attributes,
    links: s.links,
    events: s.events,
    duration: s.duration,
    ended: s.ended,
    resource,
    instrumentationScope: s.instrumentationScope,
    droppedAttributesCount: s.droppedAttributesCount,
    droppedEventsCount: s.droppedEventsCount,
    droppedLinksCount: s.droppedLinksCount,
  };
}

function exportWith(exporter: SpanExporter, spans: ReadableSpan[]): Promise<void> {
  return new Promise((resolve, reject) => {
    exporter.export(spans, (result) =>
      result.code === 0 ? resolve() : reject(result.error ?? new Error("export failed")),
    );
  });
}

/** A stored span without what differs between attempts: its row id and write time, the rollout/attempt ids. */
function comparable(s: Span) {
  const { attemptId: _a, rolloutId: _r, id: _i, createdAt: _c, ...rest } = s as Span & Record<string, unknown>;
  const attributes = { ...s.attributes };
  delete attributes["fulgur.attempt_id"];
  delete attributes["fulgur.rollout_id"];
  return { ...rest, attributes };
}

const traces = `/v1/traces`;
const post = (body: Uint8Array, headers: Record<string, string>) =>
  fetch(`${server.url}${traces}`, {
    method: "POST",
    body: body as Uint8Array<ArrayBuffer>,
    headers: { "content-type": "application/x-protobuf", ...headers },
  });

/** Records an agent-like trace with the real SDK: a run span, an LLM call child, a tool child. */
async function recordSpans(target: Claim, protoGzip: ProtoExporter): Promise<ReadableSpan[]> {
  const memory = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFor(target),
    spanProcessors: [new SimpleSpanProcessor(memory), new SimpleSpanProcessor(protoGzip)],
  });
  const tracer = provider.getTracer("proto-agent-tracer", "1.2.3");
  const run = tracer.startSpan("agent.run", {
    kind: SpanKind.INTERNAL,
    attributes: {
      steps: 3,
      score: 0.5,
      ok: true,
      delta: -7,
      tags: ["a", "b"],
      weights: [1.5, 2.5],
      note: "héllo 日本",
    },
  });
  run.addEvent("thinking", { note: "hmm", depth: 2 });
  run.setStatus({ code: SpanStatusCode.OK });
  const inRun = trace.setSpan(context.active(), run);
  const chat = tracer.startSpan(
    "chat tiny",
    { kind: SpanKind.CLIENT, attributes: { "gen_ai.operation.name": "chat", "gen_ai.request.model": "tiny" } },
    inRun,
  );
  chat.setStatus({ code: SpanStatusCode.ERROR, message: "rate limited" });
  chat.end();
  const tool = tracer.startSpan("execute_tool calculator", { attributes: { "gen_ai.tool.name": "calculator" } }, inRun);
  tool.end();
  run.end();
  await provider.forceFlush();
  const spans = memory.getFinishedSpans();
  await provider.shutdown();
  return spans;
}

describe("POST /v1/traces with OTLP protobuf", () => {
  it("stores spans from the real protobuf exporter (gzip and plain) exactly as from the JSON exporter", async () => {
    const viaProtoGzip = await claim();
    const viaProto = await claim();
    const viaJson = await claim();
    const url = `${server.url}${traces}`;
    const protoGzip = new ProtoExporter({ url, compression: "gzip" as never });
    const spans = await recordSpans(viaProtoGzip, protoGzip);
    expect(spans.map((s) => s.name)).toEqual(["chat tiny", "execute_tool calculator", "agent.run"]);
    await exportWith(
      new ProtoExporter({ url }),
      spans.map((s) => withResource(s, resourceFor(viaProto))),
    );
    await exportWith(
      new JsonExporter({ url }),
      spans.map((s) => withResource(s, resourceFor(viaJson))),
    );

    const gz = await store.getSpans({ attemptId: viaProtoGzip.attempt.id });
    const plain = await store.getSpans({ attemptId: viaProto.attempt.id });
    const json = await store.getSpans({ attemptId: viaJson.attempt.id });
    expect(gz.length).toBe(3);
    expect(gz.map(comparable)).toEqual(json.map(comparable));
    expect(plain.map(comparable)).toEqual(json.map(comparable));

    // And what they agree on is right: ids, times, typed attributes, events, status, kinds.
    const byName = new Map(gz.map((s) => [s.name, s]));
    const run = byName.get("agent.run")!;
    const sdkRun = spans.find((s) => s.name === "agent.run")!;
    expect(run.rolloutId).toBe(viaProtoGzip.rollout.id);
    expect(run.traceId).toBe(sdkRun.spanContext().traceId);
    expect(run.spanId).toBe(sdkRun.spanContext().spanId);
    expect(run.parentSpanId).toBeNull();
    expect(byName.get("chat tiny")!.parentSpanId).toBe(run.spanId);
    expect(run.startTime).toBe(sdkRun.startTime[0] * 1000 + sdkRun.startTime[1] / 1e6);
    expect(run.attributes).toMatchObject({
      "service.name": "proto-agent",
      steps: 3,
      score: 0.5,
      ok: true,
      delta: -7,
      tags: ["a", "b"],
      weights: [1.5, 2.5],
      note: "héllo 日本",
      "otel.span_kind": "internal",
      "otel.scope.name": "proto-agent-tracer",
    });
    expect(run.events).toEqual([expect.objectContaining({ name: "thinking", attributes: { note: "hmm", depth: 2 } })]);
    expect(run.status).toEqual({ code: "ok" });
    expect(byName.get("chat tiny")!.status).toEqual({ code: "error", message: "rate limited" });
    expect(byName.get("chat tiny")!.attributes["otel.span_kind"]).toBe("client");
    expect(gz.map((s) => s.kind).sort()).toEqual(["custom", "llm", "tool"]);
  });

  it("answers a protobuf ExportTraceServiceResponse, with partial_success for spans it cannot attribute", async () => {
    const known = await claim();
    const memory = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ "service.name": "half-attributed" }),
      spanProcessors: [new SimpleSpanProcessor(memory)],
    });
    const tracer = provider.getTracer("t");
    tracer.startSpan("attributed", { attributes: { "fulgur.attempt_id": known.attempt.id } }).end();
    tracer.startSpan("orphan").end();
    const body = ProtobufTraceSerializer.serializeRequest(memory.getFinishedSpans());
    expect(body).toBeDefined();

    const res = await post(gzipSync(body as Uint8Array), { "content-encoding": "gzip" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-protobuf");
    const answer = ProtobufTraceSerializer.deserializeResponse(new Uint8Array(await res.arrayBuffer()));
    expect(Number(answer.partialSuccess?.rejectedSpans)).toBe(1);
    expect(answer.partialSuccess?.errorMessage).toContain("fulgur.attempt_id");
    expect((await store.getSpans({ attemptId: known.attempt.id })).map((s) => s.name)).toEqual(["attributed"]);

    // All accepted: the empty message.
    memory.reset();
    tracer.startSpan("attributed too", { attributes: { "fulgur.attempt_id": known.attempt.id } }).end();
    const again = await post(ProtobufTraceSerializer.serializeRequest(memory.getFinishedSpans()) as Uint8Array, {});
    expect(again.status).toBe(200);
    expect((await again.arrayBuffer()).byteLength).toBe(0);
    await provider.shutdown();
  });
});

// A few protobuf encoders for payloads the SDK cannot produce (kvlists, bytes, bad input).
const varint = (n: number): number[] => {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
};
const len = (field: number, payload: number[]) => [...varint(field * 8 + 2), ...varint(payload.length), ...payload];
const str = (field: number, s: string) => len(field, Array.from(Buffer.from(s, "utf8")));
const kv = (key: string, anyValue: number[]) => [...str(1, key), ...len(2, anyValue)];
const fixed64 = (field: number, value: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(value);
  return [...varint(field * 8 + 1), ...b];
};
/** One span with the given attributes, under a resource naming `attemptId`. */
function request(attemptId: string, spanAttributes: number[][]): Uint8Array {
  const spanBytes = [
    ...len(1, Array.from(Buffer.from("5b8efff798038103d269b633813fc60c", "hex"))),
    ...len(2, Array.from(Buffer.from("eee19b7ec3c1b174", "hex"))),
    ...str(5, "hand-made"),
    ...fixed64(7, 1_700_000_000_000_000_000n),
    ...spanAttributes.flatMap((a) => len(9, a)),
    // Fields this decoder skips: a link (13) and flags (fixed32, 16).
    ...len(13, str(1, "x")),
    ...varint(16 * 8 + 5),
    1,
    0,
    0,
    0,
  ];
  const resource = len(1, len(1, kv("fulgur.attempt_id", str(1, attemptId))));
  return Uint8Array.from(len(1, [...resource, ...len(2, len(2, spanBytes))]));
}

/**
 * An AnyValue holding `depth` nested kvlists around a string. Built from the inside out as
 * prefixes (each level is a header before the level below), so thousands of levels stay linear.
 */
function nestedKvlist(depth: number): number[] {
  const leaf = str(1, "leaf");
  const prefixes: number[][] = [];
  let size = leaf.length;
  for (let i = 0; i < depth; i++) {
    // KeyValue {key "k", value <level below>} inside KeyValueList {values} inside AnyValue {kvlist_value}.
    const kvHead = [...str(1, "k"), ...varint(2 * 8 + 2), ...varint(size)];
    const kvLen = kvHead.length + size;
    const listHead = [...varint(1 * 8 + 2), ...varint(kvLen)];
    const listLen = listHead.length + kvLen;
    const anyHead = [...varint(6 * 8 + 2), ...varint(listLen)];
    prefixes.push([...anyHead, ...listHead, ...kvHead]);
    size = anyHead.length + listLen;
  }
  const out: number[] = [];
  for (let i = prefixes.length - 1; i >= 0; i--) for (const b of prefixes[i]) out.push(b);
  for (const b of leaf) out.push(b);
  return out;
}

describe("OTLP protobuf decoding", () => {
  it("decodes kvlists, bytes, negative ints and skips unknown fields", async () => {
    const c = await claim();
    const body = request(c.attempt.id, [
      kv("meta", len(6, [...len(1, kv("k", str(1, "v"))), ...len(1, kv("n", [...varint(3 * 8), ...varint(5)]))])),
      kv("raw", len(7, [1, 2, 255])),
      kv("neg", [...varint(3 * 8), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
      kv("deep", nestedKvlist(MAX_ANY_VALUE_DEPTH - 1)),
    ]);
    const res = await post(body, {});
    expect(res.status, decodeStatus(new Uint8Array(await res.arrayBuffer())).message).toBe(200);
    const [span] = await store.getSpans({ attemptId: c.attempt.id });
    expect(span.name).toBe("hand-made");
    expect(span.startTime).toBe(1_700_000_000_000);
    expect(span.attributes).toMatchObject({ meta: { k: "v", n: 5 }, raw: "AQL/", neg: -1 });
  });

  it("accepts attributes nested exactly as deep as the JSON encoding does, and no deeper", async () => {
    // The same limit on both transports: a kvlist nested MAX_VALUE_DEPTH deep is stored whichever
    // exporter sends it, one level more is a 400 from both.
    expect(MAX_ANY_VALUE_DEPTH).toBe(MAX_VALUE_DEPTH);
    const jsonNested = (depth: number) => {
      let v: unknown = { stringValue: "leaf" };
      for (let i = 0; i < depth; i++) v = { kvlistValue: { values: [{ key: "k", value: v }] } };
      return v;
    };
    for (const [depth, status] of [
      [MAX_VALUE_DEPTH, 200],
      [MAX_VALUE_DEPTH + 1, 400],
    ] as const) {
      const c = await claim();
      const proto = await post(request(c.attempt.id, [kv("deep", nestedKvlist(depth))]), {});
      expect(proto.status, `protobuf, ${depth} deep`).toBe(status);
      const json = await fetch(`${server.url}${traces}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          resourceSpans: [
            {
              resource: { attributes: [{ key: "fulgur.attempt_id", value: { stringValue: c.attempt.id } }] },
              scopeSpans: [
                {
                  spans: [
                    {
                      traceId: "5b8efff798038103d269b633813fc60c",
                      spanId: "eee19b7ec3c1b175",
                      name: "json",
                      startTimeUnixNano: "1700000000000000000",
                      attributes: [{ key: "deep", value: jsonNested(depth) }],
                    },
                  ],
                },
              ],
            },
          ],
        }),
      });
      expect(json.status, `JSON, ${depth} deep`).toBe(status);
      expect((await store.getSpans({ attemptId: c.attempt.id })).length).toBe(status === 200 ? 2 : 0);
    }
  });

  it("answers 400 with a google.rpc.Status for malformed, truncated or too deeply nested payloads, storing nothing", async () => {
    const c = await claim();
    const good = request(c.attempt.id, [kv("a", str(1, "b"))]);
    const cases: [string, Uint8Array, Record<string, string>][] = [
      ["truncated", good.subarray(0, good.length - 5), {}],
      ["too deep", request(c.attempt.id, [kv("deep", nestedKvlist(MAX_ANY_VALUE_DEPTH + 5))]), {}],
      ["thousands deep", request(c.attempt.id, [kv("deep", nestedKvlist(5000))]), {}],
      ["wrong wire type", Uint8Array.from([...varint(1 * 8 + 0), 5]), {}],
      ["group wire type", Uint8Array.from([...varint(2 * 8 + 3)]), {}],
      ["bad gzip", Uint8Array.from([1, 2, 3]), { "content-encoding": "gzip" }],
      ["unknown encoding", good, { "content-encoding": "br" }],
      ["short span id", Uint8Array.from(len(1, len(2, len(2, [...len(2, [1, 2, 3]), ...str(5, "x")])))), {}],
    ];
    for (const [what, body, headers] of cases) {
      const res = await post(body, headers);
      // An encoding the server cannot decode is 415 (RFC 7694), the same on every route.
      expect(res.status, what).toBe(what === "unknown encoding" ? 415 : 400);
      expect(res.headers.get("content-type"), what).toBe("application/x-protobuf");
      const status = decodeStatus(new Uint8Array(await res.arrayBuffer()));
      expect(status.code, what).toBe(3);
      expect(status.message.length, what).toBeGreaterThan(0);
    }
    expect(await store.getSpans({ attemptId: c.attempt.id })).toEqual([]);
    const res = await fetch(`${server.url}${traces}`, {
      method: "POST",
      body: "x",
      headers: { "content-type": "text/plain" },
    });
    expect(res.status).toBe(415);
  });

  it("gives the same object as the OTLP JSON encoding of the same spans", () => {
    const memory = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ "service.name": "same" }),
      spanProcessors: [new SimpleSpanProcessor(memory)],
    });
    const span = provider.getTracer("scope", "9").startSpan("s", { kind: SpanKind.PRODUCER, attributes: { n: 1 } });
    span.addEvent("e");
    span.end();
    const decoded = decodeExportTraceServiceRequest(
      ProtobufTraceSerializer.serializeRequest(memory.getFinishedSpans()) as Uint8Array,
    );
    const rs = (decoded.resourceSpans as Record<string, unknown>[])[0];
    const ss = (rs.scopeSpans as Record<string, unknown>[])[0];
    expect(ss.scope).toEqual({ name: "scope", version: "9" });
    const s = (ss.spans as Record<string, unknown>[])[0];
    expect(s).toMatchObject({
      traceId: span.spanContext().traceId,
      spanId: span.spanContext().spanId,
      name: "s",
      kind: 4,
      attributes: [{ key: "n", value: { intValue: "1" } }],
      events: [expect.objectContaining({ name: "e", attributes: [] })],
    });
  });
});

/** google.rpc.Status {code = 1, message = 2}, read by hand. */
function decodeStatus(bytes: Uint8Array): { code: number; message: string } {
  let code = 0;
  let message = "";
  let i = 0;
  const read = () => {
    let v = 0;
    let f = 1;
    for (;;) {
      const b = bytes[i++];
      v += (b & 0x7f) * f;
      if (b < 0x80) return v;
      f *= 128;
    }
  };
  while (i < bytes.length) {
    const key = read();
    if (key === 8) code = read();
    else if (key === 18) {
      const n = read();
      message = Buffer.from(bytes.subarray(i, i + n)).toString("utf8");
      i += n;
    } else throw new Error(`unexpected key ${key}`);
  }
  return { code, message };
}
