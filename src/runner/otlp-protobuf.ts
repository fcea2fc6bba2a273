// OTLP/HTTP protobuf (`Content-Type: application/x-protobuf`, the OpenTelemetry SDKs' default
// transport) for `POST /v1/traces`: a hand-written protobuf wire decoder for
// ExportTraceServiceRequest that yields the same object the OTLP/HTTP JSON encoding would (ids as
// hex, int64 and nanosecond times as decimal strings, bytes as base64), so both transports go
// through one converter and store spans identically; and the encoders of the protobuf answers
// (ExportTraceServiceResponse, google.rpc.Status for errors). Field numbers follow
// opentelemetry/proto/{collector/trace/v1,trace/v1,common/v1,resource/v1}/*.proto.
import { gunzipSync } from "node:zlib";
import type { Context } from "hono";
import type { Store } from "../store/types.ts";
import { convertTraces, MAX_VALUE_DEPTH, OtlpFormatError, scopeViolation, storeTraces } from "./otlp.ts";

export const OTLP_PROTOBUF_CONTENT_TYPE = "application/x-protobuf";
/**
 * AnyValue arrays/kvlists nest at most this deep; deeper input is a 400, never a stack overflow.
 * The JSON encoding's limit itself, so both transports accept the same spans.
 */
export { MAX_VALUE_DEPTH as MAX_ANY_VALUE_DEPTH };

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;
const WIRE_NAMES = ["varint", "fixed64", "length-delimited", "group start", "group end", "fixed32"];

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Reads protobuf fields from one message's bytes; every read is bounds-checked. */
class WireReader {
  pos: number;
  constructor(
    private readonly buf: Uint8Array,
    private readonly view: DataView,
    start: number,
    readonly end: number,
    private readonly where: string,
  ) {
    this.pos = start;
  }

  static of(bytes: Uint8Array, where: string): WireReader {
    return new WireReader(
      bytes,
      new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      0,
      bytes.length,
      where,
    );
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  private fail(message: string): never {
    throw new OtlpFormatError(`protobuf ${this.where}: ${message} (at byte ${this.pos})`);
  }

  /** An unsigned varint as a bigint (up to 64 bits). */
  varintBig(): bigint {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.end) this.fail("truncated varint");
      const b = this.buf[this.pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, result);
    }
    return this.fail("varint longer than 10 bytes");
  }

  /** A varint that must fit a JS number (tags, lengths, enums, counts). */
  varint(): number {
    let result = 0;
    let factor = 1;
    const start = this.pos;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) this.fail("truncated varint");
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * factor;
      if (b < 0x80) return result;
      factor *= 128;
    }
    this.pos = start;
    // Negative enums are 10-byte two's complement varints.
    return Number(BigInt.asIntN(64, this.varintBig()));
  }

  /** The next field's number and wire type; null at the end of the message. */
  tag(): { field: number; wire: number } | null {
    if (this.done) return null;
    const key = this.varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (field === 0) this.fail("field number 0");
    return { field, wire };
  }

  private take(n: number): number {
    if (n > this.end - this.pos) this.fail(`field runs past the end of its message (${n} bytes wanted)`);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  bytes(): Uint8Array {
    const n = this.varint();
    const at = this.take(n);
    return this.buf.subarray(at, at + n);
  }

  string(): string {
    const bytes = this.bytes();
    try {
      return utf8.decode(bytes);
    } catch {
      return this.fail("string field is not valid UTF-8");
    }
  }

  /** A length-delimited sub-message. */
  message(where: string): WireReader {
    const n = this.varint();
    const at = this.take(n);
    return new WireReader(this.buf, this.view, at, at + n, where);
  }

  fixed64(): bigint {
    return this.view.getBigUint64(this.take(8), true);
  }

  double(): number {
    return this.view.getFloat64(this.take(8), true);
  }

  /** Skips a field this decoder does not read (links, dropped counts, fields added later). */
  skip(wire: number): void {
    if (wire === WIRE_VARINT) this.varintBig();
    else if (wire === WIRE_FIXED64) this.take(8);
    else if (wire === WIRE_LEN) this.take(this.varint());
    else if (wire === WIRE_FIXED32) this.take(4);
    else this.fail(`unsupported wire type ${wire} (${WIRE_NAMES[wire] ?? "unknown"})`);
  }

  /** Checks a known field arrived with the wire type its .proto declares. */
  expect(wire: number, want: number, name: string): void {
    if (wire !== want)
      this.fail(`field ${name} has wire type ${WIRE_NAMES[wire] ?? wire}, expected ${WIRE_NAMES[want]}`);
  }
}

type Json = Record<string, unknown>;

/** Reads every field of `r`, handing known ones to `on` (which returns false for unknown fields). */
function eachField(r: WireReader, on: (field: number, wire: number) => boolean): void {
  for (let t = r.tag(); t; t = r.tag()) {
    if (!on(t.field, t.wire)) r.skip(t.wire);
  }
}

function idHex(bytes: Uint8Array, length: 8 | 16, where: string): string | undefined {
  if (bytes.length === 0) return undefined;
  if (bytes.length !== length) {
    throw new OtlpFormatError(`protobuf ${where}: an id must be ${length} bytes, got ${bytes.length}`);
  }
  return Buffer.from(bytes).toString("hex");
}

/** common.v1.AnyValue → its OTLP JSON form ({stringValue}, {intValue: "42"}, {kvlistValue}, …). */
function anyValue(r: WireReader, depth: number): Json {
  if (depth > MAX_VALUE_DEPTH) {
    throw new OtlpFormatError(`protobuf AnyValue nests deeper than ${MAX_VALUE_DEPTH} levels`);
  }
  let out: Json = {};
  eachField(r, (field, wire) => {
    switch (field) {
      case 1:
        r.expect(wire, WIRE_LEN, "AnyValue.string_value");
        out = { stringValue: r.string() };
        return true;
      case 2:
        r.expect(wire, WIRE_VARINT, "AnyValue.bool_value");
        out = { boolValue: r.varintBig() !== 0n };
        return true;
      case 3:
        r.expect(wire, WIRE_VARINT, "AnyValue.int_value");
        out = { intValue: BigInt.asIntN(64, r.varintBig()).toString() };
        return true;
      case 4:
        r.expect(wire, WIRE_FIXED64, "AnyValue.double_value");
        out = { doubleValue: r.double() };
        return true;
      case 5: {
        r.expect(wire, WIRE_LEN, "AnyValue.array_value");
        const arr = r.message("ArrayValue");
        const values: Json[] = [];
        eachField(arr, (f, w) => {
          if (f !== 1) return false;
          arr.expect(w, WIRE_LEN, "ArrayValue.values");
          values.push(anyValue(arr.message("AnyValue"), depth + 1));
          return true;
        });
        out = { arrayValue: { values } };
        return true;
      }
      case 6: {
        r.expect(wire, WIRE_LEN, "AnyValue.kvlist_value");
        const kv = r.message("KeyValueList");
        const values: Json[] = [];
        eachField(kv, (f, w) => {
          if (f !== 1) return false;
          kv.expect(w, WIRE_LEN, "KeyValueList.values");
          values.push(keyValue(kv.message("KeyValue"), depth + 1));
          return true;
        });
        out = { kvlistValue: { values } };
        return true;
      }
      case 7:
        r.expect(wire, WIRE_LEN, "AnyValue.bytes_value");
        out = { bytesValue: Buffer.from(r.bytes()).toString("base64") };
        return true;
      default:
        return false;
    }
  });
  return out;
}

/** common.v1.KeyValue. */
function keyValue(r: WireReader, depth: number): Json {
  const out: Json = { key: "" };
  eachField(r, (field, wire) => {
    if (field === 1) {
      r.expect(wire, WIRE_LEN, "KeyValue.key");
      out.key = r.string();
    } else if (field === 2) {
      r.expect(wire, WIRE_LEN, "KeyValue.value");
      out.value = anyValue(r.message("AnyValue"), depth);
    } else return false;
    return true;
  });
  return out;
}

/** Collects a repeated KeyValue field (`attributes`) into `list`. */
function attribute(r: WireReader, wire: number, list: Json[], owner: string): void {
  r.expect(wire, WIRE_LEN, `${owner}.attributes`);
  // An attribute's value is at depth 0, as in anyValueToJson (otlp.ts).
  list.push(keyValue(r.message("KeyValue"), 0));
}

function event(r: WireReader): Json {
  const attributes: Json[] = [];
  const out: Json = { attributes };
  eachField(r, (field, wire) => {
    if (field === 1) {
      r.expect(wire, WIRE_FIXED64, "Span.Event.time_unix_nano");
      out.timeUnixNano = r.fixed64().toString();
    } else if (field === 2) {
      r.expect(wire, WIRE_LEN, "Span.Event.name");
      out.name = r.string();
    } else if (field === 3) attribute(r, wire, attributes, "Span.Event");
    else return false;
    return true;
  });
  return out;
}

function status(r: WireReader): Json {
  const out: Json = {};
  eachField(r, (field, wire) => {
    if (field === 2) {
      r.expect(wire, WIRE_LEN, "Status.message");
      out.message = r.string();
    } else if (field === 3) {
      r.expect(wire, WIRE_VARINT, "Status.code");
      out.code = r.varint();
    } else return false;
    return true;
  });
  return out;
}

function span(r: WireReader): Json {
  const attributes: Json[] = [];
  const events: Json[] = [];
  const out: Json = { attributes, events };
  eachField(r, (field, wire) => {
    switch (field) {
      case 1:
        r.expect(wire, WIRE_LEN, "Span.trace_id");
        out.traceId = idHex(r.bytes(), 16, "Span.trace_id");
        return true;
      case 2:
        r.expect(wire, WIRE_LEN, "Span.span_id");
        out.spanId = idHex(r.bytes(), 8, "Span.span_id");
        return true;
      case 3:
        r.expect(wire, WIRE_LEN, "Span.trace_state");
        out.traceState = r.string();
        return true;
      case 4:
        r.expect(wire, WIRE_LEN, "Span.parent_span_id");
        out.parentSpanId = idHex(r.bytes(), 8, "Span.parent_span_id");
        return true;
      case 5:
        r.expect(wire, WIRE_LEN, "Span.name");
        out.name = r.string();
        return true;
      case 6:
        r.expect(wire, WIRE_VARINT, "Span.kind");
        out.kind = r.varint();
        return true;
      case 7:
        r.expect(wire, WIRE_FIXED64, "Span.start_time_unix_nano");
        out.startTimeUnixNano = r.fixed64().toString();
        return true;
      case 8:
        r.expect(wire, WIRE_FIXED64, "Span.end_time_unix_nano");
        out.endTimeUnixNano = r.fixed64().toString();
        return true;
      case 9:
        attribute(r, wire, attributes, "Span");
        return true;
      case 11:
        r.expect(wire, WIRE_LEN, "Span.events");
        events.push(event(r.message("Span.Event")));
        return true;
      case 15:
        r.expect(wire, WIRE_LEN, "Span.status");
        out.status = status(r.message("Status"));
        return true;
      default:
        return false;
    }
  });
  // proto3 leaves a zero-valued enum out; JSON exporters send the number.
  if (out.kind === undefined) out.kind = 0;
  return out;
}

function scopeSpans(r: WireReader): Json {
  const spans: Json[] = [];
  const out: Json = { spans };
  eachField(r, (field, wire) => {
    if (field === 1) {
      r.expect(wire, WIRE_LEN, "ScopeSpans.scope");
      const s = r.message("InstrumentationScope");
      const scope: Json = {};
      eachField(s, (f, w) => {
        if (f === 1 || f === 2) {
          s.expect(w, WIRE_LEN, f === 1 ? "InstrumentationScope.name" : "InstrumentationScope.version");
          scope[f === 1 ? "name" : "version"] = s.string();
          return true;
        }
        return false;
      });
      out.scope = scope;
    } else if (field === 2) {
      r.expect(wire, WIRE_LEN, "ScopeSpans.spans");
      spans.push(span(r.message("Span")));
    } else return false;
    return true;
  });
  return out;
}

function resourceSpans(r: WireReader): Json {
  const scopes: Json[] = [];
  const resourceAttributes: Json[] = [];
  const out: Json = { resource: { attributes: resourceAttributes }, scopeSpans: scopes };
  eachField(r, (field, wire) => {
    if (field === 1) {
      r.expect(wire, WIRE_LEN, "ResourceSpans.resource");
      const res = r.message("Resource");
      eachField(res, (f, w) => {
        if (f !== 1) return false;
        attribute(res, w, resourceAttributes, "Resource");
        return true;
      });
    } else if (field === 2) {
      r.expect(wire, WIRE_LEN, "ResourceSpans.scope_spans");
      scopes.push(scopeSpans(r.message("ScopeSpans")));
    } else return false;
    return true;
  });
  return out;
}

/**
 * Decodes a protobuf ExportTraceServiceRequest into its OTLP/HTTP JSON form (what
 * `convertTraces` reads). Unknown fields are skipped, as protobuf readers do.
 * @throws OtlpFormatError for truncated or malformed input, wrong wire types, ids of the wrong
 * length, invalid UTF-8 strings, and AnyValues nested deeper than MAX_ANY_VALUE_DEPTH.
 */
export function decodeExportTraceServiceRequest(bytes: Uint8Array): Json {
  const r = WireReader.of(bytes, "ExportTraceServiceRequest");
  const list: Json[] = [];
  eachField(r, (field, wire) => {
    if (field !== 1) return false;
    r.expect(wire, WIRE_LEN, "ExportTraceServiceRequest.resource_spans");
    list.push(resourceSpans(r.message("ResourceSpans")));
    return true;
  });
  return { resourceSpans: list };
}

// ---------------------------------------------------------------------------------------------
// Answers

function pushVarint(out: number[], value: bigint | number): void {
  let v = BigInt.asUintN(64, BigInt(value));
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

function pushBytesField(out: number[], field: number, bytes: Uint8Array | number[]): void {
  pushVarint(out, field * 8 + WIRE_LEN);
  pushVarint(out, bytes.length);
  for (const b of bytes) out.push(b);
}

const utf8Encoder = new TextEncoder();

/**
 * ExportTraceServiceResponse: empty when every span was accepted, else `partial_success`
 * {rejected_spans (1), error_message (2)}.
 */
export function encodeExportTraceServiceResponse(rejectedSpans: number, errorMessage: string): Uint8Array<ArrayBuffer> {
  if (rejectedSpans === 0 && errorMessage === "") return new Uint8Array(0);
  const partial: number[] = [];
  if (rejectedSpans !== 0) {
    pushVarint(partial, 1 * 8 + WIRE_VARINT);
    pushVarint(partial, rejectedSpans);
  }
  if (errorMessage !== "") pushBytesField(partial, 2, utf8Encoder.encode(errorMessage));
  const out: number[] = [];
  pushBytesField(out, 1, partial);
  return Uint8Array.from(out);
}

/** google.rpc.Status {code (1), message (2)}: OTLP/HTTP's error body for protobuf requests. */
export function encodeRpcStatus(code: number, message: string): Uint8Array<ArrayBuffer> {
  const out: number[] = [];
  if (code !== 0) {
    pushVarint(out, 1 * 8 + WIRE_VARINT);
    pushVarint(out, code);
  }
  if (message !== "") pushBytesField(out, 2, utf8Encoder.encode(message));
  return Uint8Array.from(out);
}

/** grpc status INVALID_ARGUMENT, what OTLP/HTTP puts in the Status of a 400. */
const INVALID_ARGUMENT = 3;
const PERMISSION_DENIED = 7;

function protobufAnswer(body: Uint8Array<ArrayBuffer>, status: 200 | 400 | 403 | 413): Response {
  return new Response(body, { status, headers: { "content-type": OTLP_PROTOBUF_CONTENT_TYPE } });
}

/**
 * Answers one protobuf `POST /v1/traces` (body gzip-encoded or not): decode, convert and store as
 * the JSON path does; 200 with an ExportTraceServiceResponse, 400/413 with a google.rpc.Status.
 */
export async function protobufTraces(c: Context, store: Store, maxBodyBytes: number): Promise<Response> {
  let bytes: Uint8Array = new Uint8Array(await c.req.arrayBuffer());
  const tooLarge = () =>
    protobufAnswer(encodeRpcStatus(INVALID_ARGUMENT, `request body exceeds ${maxBodyBytes} bytes`), 413);
  if (bytes.length > maxBodyBytes) return tooLarge();
  const encoding = (c.req.header("content-encoding") ?? "").trim().toLowerCase();
  if (encoding === "gzip") {
    try {
      // Bounded, so a small gzip bomb cannot inflate without limit.
      bytes = gunzipSync(bytes, { maxOutputLength: maxBodyBytes });
    } catch (error) {
      if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") return tooLarge();
      return protobufAnswer(
        encodeRpcStatus(INVALID_ARGUMENT, `body is not valid gzip: ${(error as Error).message}`),
        400,
      );
    }
  } else if (encoding !== "" && encoding !== "identity") {
    return protobufAnswer(encodeRpcStatus(INVALID_ARGUMENT, `unsupported content-encoding "${encoding}"`), 400);
  }
  let converted: ReturnType<typeof convertTraces>;
  try {
    converted = convertTraces(decodeExportTraceServiceRequest(bytes));
  } catch (error) {
    if (error instanceof OtlpFormatError) return protobufAnswer(encodeRpcStatus(INVALID_ARGUMENT, error.message), 400);
    throw error;
  }
  const denied = scopeViolation(c, converted);
  if (denied) return protobufAnswer(encodeRpcStatus(PERMISSION_DENIED, denied), 403);
  const { rejectedSpans, errorMessage } = await storeTraces(store, converted);
  return protobufAnswer(encodeExportTraceServiceResponse(rejectedSpans, errorMessage), 200);
}
