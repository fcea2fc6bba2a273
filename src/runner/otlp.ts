// OTLP/HTTP JSON trace intake: `POST /v1/traces` takes an ExportTraceServiceRequest from any
// OpenTelemetry SDK and stores its spans under the attempt named by the resource or span attribute
// `fulgur.attempt_id` (and optionally `fulgur.rollout_id`), so agents already instrumented with
// OpenTelemetry send their traces unchanged. Answers like a collector: 200 with `partialSuccess`
// naming spans it could not attribute, 400 for malformed payloads (also values nested deeper than
// MAX_VALUE_DEPTH), 413 past the body limit (counted after gzip inflation), 415 for protobuf, 403
// when an attempt token sends spans of another attempt.
import { Hono } from "hono";
import { attemptScopeOf } from "../http/auth.ts";
import { bodyLimits } from "../http/limits.ts";
import { NotFoundError, StoreValidationError } from "../store/errors.ts";
import type { JsonValue, SpanInput, SpanKind, Store } from "../store/types.ts";

export const ROLLOUT_ID_ATTRIBUTE = "fulgur.rollout_id";
export const ATTEMPT_ID_ATTRIBUTE = "fulgur.attempt_id";
const MAX_BODY_BYTES = 16 * 1024 * 1024;
/** Deepest AnyValue nesting (arrays/kvlists) accepted; real attributes are a few levels deep. */
export const MAX_VALUE_DEPTH = 64;
const OTEL_SPAN_KINDS = ["unspecified", "internal", "server", "client", "producer", "consumer"];

/** Malformed OTLP payload; answered with HTTP 400. */
export class OtlpFormatError extends Error {
  override name = "OtlpFormatError";
}

type OtlpAnyValue = Record<string, unknown>;
interface OtlpKeyValue {
  key: string;
  value?: OtlpAnyValue;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function arrayAt(parent: Record<string, unknown>, key: string, where: string): unknown[] {
  const value = parent[key];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new OtlpFormatError(`${where}.${key} must be an array`);
  return value;
}

/** Decodes an OTLP AnyValue (`{ stringValue }`, `{ intValue: "42" }`, arrays, kvlists, bytes). */
export function anyValueToJson(value: unknown, where: string, depth = 0): JsonValue {
  if (value === undefined || value === null) return null;
  if (depth > MAX_VALUE_DEPTH) {
    // Refused before recursing further: 20,000 levels would overflow the stack (a 500).
    throw new OtlpFormatError(`${where.slice(0, 200)}…: values nested deeper than ${MAX_VALUE_DEPTH} levels`);
  }
  if (!isObject(value)) throw new OtlpFormatError(`${where} must be an AnyValue object`);
  if ("stringValue" in value) return String(value.stringValue);
  if ("boolValue" in value) return Boolean(value.boolValue);
  if ("intValue" in value) {
    const n = Number(value.intValue);
    if (!Number.isFinite(n))
      throw new OtlpFormatError(`${where}.intValue must be an integer, got ${String(value.intValue)}`);
    // int64 beyond 2^53 keeps its exact digits as a string.
    return Number.isSafeInteger(n) ? n : String(value.intValue);
  }
  if ("doubleValue" in value) {
    const n = Number(value.doubleValue);
    return Number.isFinite(n) ? n : String(value.doubleValue);
  }
  if ("arrayValue" in value) {
    const arr = isObject(value.arrayValue) ? value.arrayValue : {};
    return arrayAt(arr, "values", `${where}.arrayValue`).map((v, i) =>
      anyValueToJson(v, `${where}.arrayValue.values[${i}]`, depth + 1),
    );
  }
  if ("kvlistValue" in value) {
    const kv = isObject(value.kvlistValue) ? value.kvlistValue : {};
    return attributesToJson(arrayAt(kv, "values", `${where}.kvlistValue`), `${where}.kvlistValue.values`, depth + 1);
  }
  if ("bytesValue" in value) return String(value.bytesValue);
  return null;
}

/** Decodes an OTLP attribute list into a plain object. */
export function attributesToJson(list: unknown[], where: string, depth = 0): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  list.forEach((item, i) => {
    if (!isObject(item) || typeof item.key !== "string") {
      throw new OtlpFormatError(`${where}[${i}] must be { key: string, value: AnyValue }`);
    }
    out[item.key] = anyValueToJson((item as unknown as OtlpKeyValue).value, `${where}[${i}].value`, depth);
  });
  return out;
}

/**
 * Trace/span ids: OTLP JSON carries them as hex; some older exporters sent base64 of the bytes,
 * which is converted so ids match those of other spans in the trace.
 */
export function otlpId(value: unknown, bytes: 8 | 16, where: string): string | null {
  if (value === undefined || value === null || value === "") return null;
  if (typeof value !== "string") throw new OtlpFormatError(`${where} must be a hex string`);
  if (new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`).test(value)) return value.toLowerCase();
  const decoded = /^[A-Za-z0-9+/]+=*$/.test(value) ? Buffer.from(value, "base64") : null;
  if (decoded && decoded.length === bytes) return decoded.toString("hex");
  throw new OtlpFormatError(`${where} must be ${bytes * 2} hex digits, got "${value}"`);
}

/** Nanoseconds since the epoch (string or number) → milliseconds, keeping sub-ms precision. */
export function nanosToMs(value: unknown, where: string): number | null {
  if (value === undefined || value === null || value === "" || value === "0" || value === 0) return null;
  if (typeof value === "number") {
    // Past 2^53 a JSON number has lost its last nanosecond digits: round to microseconds.
    if (!Number.isFinite(value) || value < 0) throw new OtlpFormatError(`${where} must be a non-negative timestamp`);
    return Math.round(value / 1000) / 1000;
  }
  if (isObject(value) && typeof value.low === "number" && typeof value.high === "number") {
    // Long-style { low, high } from older OpenTelemetry JS exporters.
    return nanosToMs(((BigInt(value.high >>> 0) << 32n) | BigInt(value.low >>> 0)).toString(), where);
  }
  if (typeof value !== "string") throw new OtlpFormatError(`${where} must be a nanosecond timestamp`);
  let nanos: bigint;
  try {
    nanos = BigInt(value);
  } catch {
    throw new OtlpFormatError(`${where} must be an integer nanosecond timestamp, got ${String(value)}`);
  }
  if (nanos < 0n) throw new OtlpFormatError(`${where} must not be negative`);
  return Number(nanos / 1000n) / 1000;
}

function statusOf(raw: unknown): SpanInput["status"] {
  if (!isObject(raw)) return null;
  const code = raw.code;
  const name =
    code === 1 || code === "STATUS_CODE_OK" ? "ok" : code === 2 || code === "STATUS_CODE_ERROR" ? "error" : "unset";
  return typeof raw.message === "string" && raw.message ? { code: name, message: raw.message } : { code: name };
}

/** Fulgur's span kind from GenAI semantic conventions: LLM calls and tool executions stand out. */
function kindOf(name: string, attributes: Record<string, JsonValue>): SpanKind {
  const explicit = attributes["fulgur.span.kind"];
  if (typeof explicit === "string" && ["llm", "tool", "reward", "message", "exception", "custom"].includes(explicit)) {
    return explicit as SpanKind;
  }
  const op = attributes["gen_ai.operation.name"];
  if (op === "execute_tool" || "gen_ai.tool.name" in attributes) return "tool";
  if (typeof op === "string" || "gen_ai.system" in attributes || "gen_ai.request.model" in attributes) return "llm";
  return name.startsWith("execute_tool") ? "tool" : "custom";
}

export interface ConvertedTraces {
  /** Spans grouped by the attempt they belong to. */
  byAttempt: Map<string, SpanInput[]>;
  /** Spans with no `fulgur.attempt_id` in their resource or own attributes. */
  unattributed: number;
}

/** Converts an ExportTraceServiceRequest (JSON) into store spans; throws OtlpFormatError when malformed. */
export function convertTraces(body: unknown): ConvertedTraces {
  if (!isObject(body)) throw new OtlpFormatError("body must be an ExportTraceServiceRequest JSON object");
  const byAttempt = new Map<string, SpanInput[]>();
  let unattributed = 0;
  arrayAt(body, "resourceSpans", "request").forEach((rs, ri) => {
    const rw = `resourceSpans[${ri}]`;
    if (!isObject(rs)) throw new OtlpFormatError(`${rw} must be an object`);
    const resource = isObject(rs.resource) ? rs.resource : {};
    const resourceAttrs = attributesToJson(
      arrayAt(resource, "attributes", `${rw}.resource`),
      `${rw}.resource.attributes`,
    );
    arrayAt(rs, "scopeSpans", rw).forEach((ss, si) => {
      const sw = `${rw}.scopeSpans[${si}]`;
      if (!isObject(ss)) throw new OtlpFormatError(`${sw} must be an object`);
      const scope = isObject(ss.scope) ? ss.scope : {};
      arrayAt(ss, "spans", sw).forEach((raw, pi) => {
        const where = `${sw}.spans[${pi}]`;
        if (!isObject(raw)) throw new OtlpFormatError(`${where} must be an object`);
        if (typeof raw.name !== "string" || raw.name.length === 0)
          throw new OtlpFormatError(`${where}.name must be a non-empty string`);
        const spanId = otlpId(raw.spanId, 8, `${where}.spanId`);
        if (!spanId) throw new OtlpFormatError(`${where}.spanId is required`);
        const traceId = otlpId(raw.traceId, 16, `${where}.traceId`);
        const startTime = nanosToMs(raw.startTimeUnixNano, `${where}.startTimeUnixNano`);
        if (startTime === null) throw new OtlpFormatError(`${where}.startTimeUnixNano is required`);
        const own = attributesToJson(arrayAt(raw, "attributes", where), `${where}.attributes`);
        const attemptId = own[ATTEMPT_ID_ATTRIBUTE] ?? resourceAttrs[ATTEMPT_ID_ATTRIBUTE];
        const rolloutId = own[ROLLOUT_ID_ATTRIBUTE] ?? resourceAttrs[ROLLOUT_ID_ATTRIBUTE];
        const events = arrayAt(raw, "events", where).map((ev, ei) => {
          const ew = `${where}.events[${ei}]`;
          if (!isObject(ev)) throw new OtlpFormatError(`${ew} must be an object`);
          return {
            name: typeof ev.name === "string" ? ev.name : "",
            time: nanosToMs(ev.timeUnixNano, `${ew}.timeUnixNano`) ?? startTime,
            attributes: attributesToJson(arrayAt(ev, "attributes", ew), `${ew}.attributes`),
          };
        });
        if (typeof attemptId !== "string" || attemptId.length === 0) {
          unattributed++;
          return;
        }
        const attributes: Record<string, JsonValue> = { ...resourceAttrs, ...own };
        if (typeof raw.kind === "number" && OTEL_SPAN_KINDS[raw.kind])
          attributes["otel.span_kind"] = OTEL_SPAN_KINDS[raw.kind];
        if (typeof scope.name === "string" && scope.name) attributes["otel.scope.name"] = scope.name;
        const span: SpanInput = {
          attemptId,
          ...(typeof rolloutId === "string" && rolloutId ? { rolloutId } : {}),
          ...(traceId ? { traceId } : {}),
          spanId,
          parentSpanId: otlpId(raw.parentSpanId, 8, `${where}.parentSpanId`),
          name: raw.name,
          kind: kindOf(raw.name, attributes),
          startTime,
          endTime: nanosToMs(raw.endTimeUnixNano, `${where}.endTimeUnixNano`),
          attributes,
          events,
          status: statusOf(raw.status),
        };
        const list = byAttempt.get(attemptId) ?? [];
        list.push(span);
        byAttempt.set(attemptId, list);
      });
    });
  });
  return { byAttempt, unattributed };
}

/**
 * Hono routes serving `POST /v1/traces` (OTLP/HTTP JSON) into `store`. Mount with
 * `app.route("/", otlpRoutes(store))`. Spans are written per attempt in the order sent; spans of
 * unknown attempts or with no attribution are reported as rejected, as a collector does.
 */
export function otlpRoutes(store: Store, options: { maxBodyBytes?: number } = {}): Hono {
  const app = new Hono();
  const maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
  app.use(
    "/v1/traces",
    bodyLimits({
      maxBytes: maxBodyBytes,
      answer: (c, failure) =>
        c.json({ code: failure.status === 413 ? 8 : 3, message: failure.message }, failure.status),
    }),
  );
  app.post("/v1/traces", async (c) => {
    const type = (c.req.header("content-type") ?? "").split(";")[0].trim().toLowerCase();
    if (type !== "application/json") {
      return c.json(
        {
          code: 3,
          message: `only OTLP/HTTP JSON is accepted (content-type application/json), got "${type || "none"}"`,
        },
        415,
      );
    }
    // The body-limit middleware has already inflated gzip/deflate and counted every byte.
    let body: unknown;
    try {
      body = JSON.parse(await c.req.text());
    } catch (error) {
      return c.json({ code: 3, message: `body is not valid (gzipped) JSON: ${(error as Error).message}` }, 400);
    }
    let converted: ConvertedTraces;
    try {
      converted = convertTraces(body);
    } catch (error) {
      if (error instanceof OtlpFormatError) return c.json({ code: 3, message: error.message }, 400);
      throw error;
    }
    const scope = attemptScopeOf(c);
    if (scope) {
      for (const [attemptId, spans] of converted.byAttempt) {
        const foreign =
          attemptId !== scope.attemptId || spans.some((s) => s.rolloutId && s.rolloutId !== scope.rolloutId);
        if (foreign) {
          return c.json({ code: 7, message: `this token may only send spans of attempt ${scope.attemptId}` }, 403);
        }
      }
    }
    let rejected = converted.unattributed;
    const problems: string[] = [];
    if (converted.unattributed > 0) {
      problems.push(`${converted.unattributed} span(s) carry no ${ATTEMPT_ID_ATTRIBUTE} resource or span attribute`);
    }
    for (const [attemptId, spans] of converted.byAttempt) {
      try {
        await store.addSpans(spans);
      } catch (error) {
        if (!(error instanceof NotFoundError || error instanceof StoreValidationError)) throw error;
        rejected += spans.length;
        problems.push(`attempt ${attemptId}: ${error.message}`);
      }
    }
    return c.json(
      rejected > 0
        ? { partialSuccess: { rejectedSpans: String(rejected), errorMessage: problems.join("; ") } }
        : { partialSuccess: {} },
      200,
    );
  });
  return app;
}
