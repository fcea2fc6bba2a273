// Typed store errors. Both the libSQL store and the HTTP client throw these, and the HTTP layer
// maps them to and from OpenAI-style error bodies ({"error":{"message","type","param","code"}}),
// so callers can catch the same class whichever Store they hold.
import type { ZodError } from "zod";

/** The `type` field of an error body; one per error class. */
export type StoreErrorType =
  | "invalid_request_error"
  | "not_found_error"
  | "conflict_error"
  | "authentication_error"
  | "permission_error"
  | "server_error";

/** Base class of every error the store raises on purpose. */
export class StoreError extends Error {
  /** HTTP status the error maps to. */
  readonly status: number;
  readonly type: StoreErrorType;
  /** Machine-readable reason, e.g. "rollout_not_found", "attempt_finished". */
  readonly code: string;
  /** The offending input field ("config.maxAttempts", "[3].promptIds"), when there is one. */
  readonly param: string | null;

  constructor(message: string, opts: { status: number; type: StoreErrorType; code: string; param?: string | null }) {
    super(message);
    this.name = new.target.name;
    this.status = opts.status;
    this.type = opts.type;
    this.code = opts.code;
    this.param = opts.param ?? null;
  }

  /** The OpenAI-style JSON error body. */
  toJSON(): { error: { message: string; type: StoreErrorType; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** Input that does not match what the store expects (HTTP 400). */
export class StoreValidationError extends StoreError {
  constructor(message: string, param: string | null = null, code = "invalid_input") {
    super(message, { status: 400, type: "invalid_request_error", code, param });
  }
}

/** A referenced rollout, attempt or resource does not exist (HTTP 404). */
export class NotFoundError extends StoreError {
  constructor(message: string, code: string, param: string | null = null) {
    super(message, { status: 404, type: "not_found_error", code, param });
  }
}

/** The request is valid but the entity's state forbids it, e.g. heartbeat of an ended attempt (HTTP 409). */
export class ConflictError extends StoreError {
  constructor(message: string, code: string, param: string | null = null) {
    super(message, { status: 409, type: "conflict_error", code, param });
  }
}

/** Missing or wrong API key on the HTTP API (HTTP 401). */
export class AuthenticationError extends StoreError {
  constructor(message: string) {
    super(message, { status: 401, type: "authentication_error", code: "invalid_api_key" });
  }
}

/** Authenticated, but the credential may not do this, e.g. an attempt token reading rollouts (HTTP 403). */
export class PermissionError extends StoreError {
  constructor(message: string) {
    super(message, { status: 403, type: "permission_error", code: "permission_denied" });
  }
}

/** Formats a zod path as a parameter name: ["config","maxAttempts"] → "config.maxAttempts", [3,"x"] → "[3].x". */
export function formatParam(path: readonly PropertyKey[], prefix = ""): string | null {
  let out = prefix;
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out === "" ? null : out;
}

/** Turns a zod failure into a StoreValidationError naming every bad field (the first as `param`). */
export function fromZodError(error: ZodError, what: string, prefix = ""): StoreValidationError {
  const issues = error.issues.slice(0, 5).map((issue) => {
    const param = formatParam(issue.path, prefix);
    return param ? `${param}: ${issue.message}` : issue.message;
  });
  const more = error.issues.length > 5 ? ` (and ${error.issues.length - 5} more)` : "";
  const first = error.issues[0];
  return new StoreValidationError(
    `invalid ${what}: ${issues.join("; ")}${more}`,
    first ? formatParam(first.path, prefix) : null,
  );
}

/** Rebuilds the typed error from an error body received over HTTP. */
export function errorFromBody(
  status: number,
  body: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } | undefined,
): StoreError {
  const message = typeof body?.message === "string" ? body.message : `store request failed with HTTP ${status}`;
  const code = typeof body?.code === "string" ? body.code : "unknown";
  const param = typeof body?.param === "string" ? body.param : null;
  switch (body?.type) {
    case "invalid_request_error":
      return new StoreValidationError(message, param, code);
    case "not_found_error":
      return new NotFoundError(message, code, param);
    case "conflict_error":
      return new ConflictError(message, code, param);
    case "authentication_error":
      return new AuthenticationError(message);
    case "permission_error":
      return new PermissionError(message);
    default:
      return new StoreError(message, { status, type: "server_error", code, param });
  }
}
