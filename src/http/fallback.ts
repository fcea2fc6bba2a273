// The composed app's last word on a request: unknown paths (404), known paths asked with the
// wrong method (405 with Allow), and anything thrown that no route's own handler answered (500).
// Every answer is JSON in the shape of the route family: OpenAI's `{"error": {...}}` for /v1,
// /rollouts/… and the store API (which uses the same shape), a google.rpc.Status-like
// `{"code", "message"}` for OTLP intake. Stacks stay in the server's log, never in a response.
import type { Context, ErrorHandler, Hono, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { methodNotAllowed } from "hono/method-not-allowed";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ProxyError } from "../proxy/errors.ts";
import { anthropicErrorBody } from "../proxy/messages-wire.ts";
import { encodeRpcStatus, OTLP_PROTOBUF_CONTENT_TYPE } from "../runner/otlp-protobuf.ts";
import { StoreError } from "../store/errors.ts";

export const OTLP_TRACES_PATH = "/v1/traces";

/** gRPC status codes OTLP/HTTP bodies carry, by HTTP status. */
function grpcCode(status: number): number {
  if (status === 401) return 16; // UNAUTHENTICATED
  if (status === 403) return 7; // PERMISSION_DENIED
  if (status === 404) return 5; // NOT_FOUND
  if (status === 413 || status === 429) return 8; // RESOURCE_EXHAUSTED
  if (status >= 500) return status === 503 ? 14 : 13; // UNAVAILABLE : INTERNAL
  return 3; // INVALID_ARGUMENT
}

function defaultType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 503) return "service_unavailable";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

export interface ErrorFields {
  type?: string;
  code?: string | null;
  param?: string | null;
  headers?: Record<string, string>;
}

/** An error response in the shape of the route `c` is on. */
export function errorResponse(c: Context, status: number, message: string, fields: ErrorFields = {}): Response {
  const s = status as ContentfulStatusCode;
  if (c.req.path === OTLP_TRACES_PATH) {
    // A collector answers in the encoding it was sent: protobuf clients get a google.rpc.Status.
    const type = (c.req.header("content-type") ?? "").split(";")[0].trim().toLowerCase();
    if (type === OTLP_PROTOBUF_CONTENT_TYPE) {
      return new Response(encodeRpcStatus(grpcCode(status), message), {
        status,
        headers: { ...fields.headers, "content-type": OTLP_PROTOBUF_CONTENT_TYPE },
      });
    }
    return c.json({ code: grpcCode(status), message }, s, fields.headers);
  }
  // Anthropic SDKs read their own error shape (a 401 from the key check included).
  if (c.req.path.endsWith("/v1/messages")) {
    return c.json(anthropicErrorBody(new ProxyError(s, message, fields)), s, fields.headers);
  }
  const body = {
    error: {
      message,
      type: fields.type ?? defaultType(status),
      param: fields.param ?? null,
      code: fields.code ?? null,
    },
  };
  return c.json(body, s, fields.headers);
}

/** onError for the composed app: thrown errors keep their status; the unexpected become 500. */
export const jsonErrorHandler: ErrorHandler = (err, c) => {
  if (err instanceof ProxyError) {
    return errorResponse(c, err.status, err.message, { type: err.type, code: err.code, param: err.param });
  }
  if (err instanceof StoreError) {
    return errorResponse(c, err.status, err.message, { type: err.type, code: err.code, param: err.param });
  }
  if (err instanceof HTTPException) {
    return errorResponse(c, err.status, err.message || `HTTP ${err.status}`);
  }
  console.error(`fulgur: unexpected error on ${c.req.method} ${c.req.path}`, err);
  const message = err instanceof Error ? err.message : String(err);
  return errorResponse(c, 500, `Internal error: ${message}`, { code: "internal_error" });
};

/** notFound for the composed app. */
export const jsonNotFound: NotFoundHandler = (c) =>
  c.req.path.startsWith("/api/v1/")
    ? errorResponse(c, 404, `no route ${c.req.method} ${c.req.path}`, {
        type: "not_found_error",
        code: "route_not_found",
      })
    : errorResponse(c, 404, `Unknown request URL: ${c.req.method} ${c.req.path}.`, {
        type: "invalid_request_error",
        code: "unknown_url",
      });

/** Middleware answering 405 (JSON, with Allow) for a known path asked with another method. */
export function jsonMethodNotAllowed(app: Hono) {
  return methodNotAllowed({
    app,
    onMethodNotAllowed: (c, methods) =>
      errorResponse(c, 405, `Method ${c.req.method} is not allowed on ${c.req.path}; use ${methods.join(", ")}.`, {
        type: "invalid_request_error",
        code: "method_not_allowed",
        headers: { Allow: methods.join(", ") },
      }),
  });
}
