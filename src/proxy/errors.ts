// Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with the HTTP status
// OpenAI would use. `ProxyError` is what every layer of the proxy throws (validation, backends,
// the upstream client); the Hono `onError`/`notFound` pair turns anything thrown into that body,
// so a client never sees an HTML page or a stack trace.
import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";

/** OpenAI's error `type` values (plus the ones vLLM and proxies use). */
export type OpenAIErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error"
  | "upstream_error"
  | "service_unavailable";

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** An error that knows its HTTP status and OpenAI error fields. */
export class ProxyError extends Error {
  readonly status: ContentfulStatusCode;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;

  constructor(
    status: ContentfulStatusCode,
    message: string,
    fields: { type?: string; param?: string | null; code?: string | null } = {},
  ) {
    super(message);
    this.name = "ProxyError";
    this.status = status;
    this.type = fields.type ?? defaultType(status);
    this.param = fields.param ?? null;
    this.code = fields.code ?? null;
  }

  /** The JSON body OpenAI would send. */
  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

function defaultType(status: number): OpenAIErrorType {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "invalid_request_error";
  if (status === 429) return "rate_limit_error";
  if (status === 502) return "upstream_error";
  if (status === 503) return "service_unavailable";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** 400: the request is wrong; `param` names the offending field ("messages[0].role"). */
export function invalidRequest(message: string, param: string | null = null, code: string | null = null): ProxyError {
  return new ProxyError(400, message, { param, code });
}

/** 401: missing or wrong API key. */
export function unauthorized(message = "Incorrect API key provided."): ProxyError {
  return new ProxyError(401, message, { code: "invalid_api_key" });
}

/** 404 for a model this server does not serve (OpenAI's wording and code). */
export function modelNotFound(model: string, available: string[] = []): ProxyError {
  const hint = available.length > 0 ? ` Available models: ${available.join(", ")}.` : "";
  return new ProxyError(404, `The model \`${model}\` does not exist or you do not have access to it.${hint}`, {
    param: "model",
    code: "model_not_found",
  });
}

/** 413: body over the configured limit. */
export function payloadTooLarge(limitBytes: number): ProxyError {
  return new ProxyError(413, `Request body too large: the limit is ${limitBytes} bytes.`, {
    code: "request_too_large",
  });
}

/**
 * 400 with code `context_length_exceeded`, as OpenAI answers a prompt plus `max_tokens` that do
 * not fit the model's context window.
 */
export function contextLengthExceeded(maxContext: number, requested: number, param = "messages"): ProxyError {
  return new ProxyError(
    400,
    `This model's maximum context length is ${maxContext} tokens. However, you requested ${requested} tokens. ` +
      "Please reduce the length of the messages or completion.",
    { param, code: "context_length_exceeded" },
  );
}

/** 500: a bug or an engine failure; the message says what broke. */
export function serverError(message: string, code: string | null = null): ProxyError {
  return new ProxyError(500, message, { code });
}

/** 502: the upstream server could not be reached or answered garbage. */
export function badGateway(message: string): ProxyError {
  return new ProxyError(502, message, { code: "upstream_unavailable" });
}

/** 504: the upstream server did not answer (or went silent mid-answer) within the time limit. */
export function gatewayTimeout(message: string): ProxyError {
  return new ProxyError(504, message, { type: "upstream_error", code: "upstream_timeout" });
}

/** 503: overloaded or not ready (model still loading). */
export function serviceUnavailable(message: string): ProxyError {
  return new ProxyError(503, message, { code: "service_unavailable" });
}

/** Formats a zod issue path the way OpenAI names params: `messages[0].content[1].type`. */
export function formatParamPath(path: readonly PropertyKey[]): string | null {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out === "" ? null : out;
}

type Issue = z.core.$ZodIssue;

/**
 * Picks the most telling issue: for a union (e.g. `content: string | parts[]`) the branch whose
 * type matched and failed deeper says more than "Invalid input".
 */
function explainIssue(issue: Issue): { path: PropertyKey[]; message: string; missing: boolean } {
  if (issue.code === "invalid_union" && issue.errors.length > 0) {
    const nested = issue.errors.flat();
    const matched = nested.find((i) => i.code !== "invalid_type" || i.path.length > 0);
    if (matched) {
      const inner = explainIssue(matched);
      return { ...inner, path: [...issue.path, ...inner.path] };
    }
    const missing = nested.some((i) => /received undefined/.test(i.message));
    const expected = [...new Set(nested.map((i) => (i.code === "invalid_type" ? i.expected : null)).filter(Boolean))];
    return { path: [...issue.path], message: `expected ${expected.join(" or ")}`, missing };
  }
  const missing = issue.code === "invalid_type" && /received undefined/.test(issue.message);
  return { path: [...issue.path], message: issue.message, missing };
}

/** 400 from a failed zod parse: the first issue's message, `param` pointing at its field. */
export function fromZodError(error: z.ZodError): ProxyError {
  const first = error.issues[0];
  if (!first) return invalidRequest("Invalid request body.");
  const issue = explainIssue(first);
  const param = formatParamPath(issue.path);
  let message: string;
  if (issue.missing) message = `Missing required parameter: '${param}'.`;
  else if (param) message = `Invalid value for '${param}': ${issue.message}`;
  else message = issue.message;
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more problem(s))` : "";
  return invalidRequest(message + more, param);
}

/**
 * Reads a JSON object body; malformed JSON or a non-object body is a 400 that says so.
 * Reads as text first so the error can quote where parsing failed.
 */
export async function readJsonBody(c: Context): Promise<Record<string, unknown>> {
  const text = await c.req.text();
  if (text.trim() === "") {
    throw invalidRequest("The request body is empty: expected a JSON object.");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw invalidRequest(
      `We could not parse the JSON body of your request (${(err as Error).message}). ` +
        "Expected a JSON object with Content-Type: application/json.",
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalidRequest(
      `The request body must be a JSON object, got ${Array.isArray(value) ? "an array" : typeof value}.`,
    );
  }
  return value as Record<string, unknown>;
}

/** Converts anything thrown into a ProxyError (unknown errors become 500 with their message). */
export function toProxyError(err: unknown): ProxyError {
  if (err instanceof ProxyError) return err;
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    if (status === 413) return new ProxyError(413, err.message || "Request body too large.");
    return new ProxyError(status, err.message || `HTTP ${status}`);
  }
  if (err instanceof Error) return serverError(`Internal error: ${err.message}`);
  return serverError(`Internal error: ${String(err)}`);
}

/** Hono `onError`: every thrown error answers in OpenAI's shape with its status. */
export const openAIErrorHandler: ErrorHandler = (err, c) => {
  const proxyError = toProxyError(err);
  if (proxyError.status >= 500 && !(err instanceof ProxyError)) {
    // Unexpected failures are bugs: keep the stack on the server side.
    console.error("fulgur proxy: unexpected error", err);
  }
  return c.json(proxyError.toBody(), proxyError.status);
};

/** Hono `notFound`: OpenAI's wording for an unknown URL. */
export const openAINotFoundHandler: NotFoundHandler = (c) => {
  const error = new ProxyError(404, `Unknown request URL: ${c.req.method} ${new URL(c.req.url).pathname}.`, {
    code: "unknown_url",
  });
  return c.json(error.toBody(), 404);
};

const OPENAI_TYPES = new Set<string>([
  "invalid_request_error",
  "authentication_error",
  "permission_error",
  "not_found_error",
  "rate_limit_error",
]);

/**
 * Maps an upstream's error answer to ours. 4xx passes through with the upstream's message, param
 * and code (the client's request was at fault); a context-window complaint gets OpenAI's
 * `context_length_exceeded` code even from servers that don't set it (vLLM). 5xx becomes 502: the
 * proxy is fine, its upstream is not.
 */
export function fromUpstreamError(status: number, bodyText: string, upstreamUrl: string): ProxyError {
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(bodyText);
  } catch {
    // Not JSON: quote the text.
  }
  // OpenAI: {"error": {...}}; older vLLM: {"object": "error", "message", "type", "code": 400}.
  const fields = ((parsed as { error?: unknown } | null)?.error ?? parsed) as Record<string, unknown> | null;
  const message =
    (typeof fields === "object" && fields && typeof fields.message === "string" ? fields.message : null) ??
    (bodyText.trim().slice(0, 500) || `HTTP ${status}`);
  if (status >= 400 && status < 500) {
    let code = typeof fields?.code === "string" ? fields.code : null;
    if (!code && /maximum context length|context length|context window|too many tokens/i.test(message)) {
      code = "context_length_exceeded";
    }
    const type = typeof fields?.type === "string" && OPENAI_TYPES.has(fields.type) ? fields.type : undefined;
    const param = typeof fields?.param === "string" ? fields.param : null;
    return new ProxyError(status as ContentfulStatusCode, message, { type, param, code });
  }
  return badGateway(`Upstream ${upstreamUrl} failed with HTTP ${status}: ${message}`);
}
