// What the composed server puts in front of every route: JSON answers for whatever no route
// answers (unknown path 404, wrong method 405, unexpected throw 500), the one API-key check (with
// attempt tokens) on the API paths, and request-body limits counted after decompression, checked
// after the key so that unauthenticated clients cannot make the server read large bodies.
import type { Hono } from "hono";
import { AttemptTokens, accessControl } from "./auth.ts";
import { errorResponse, jsonErrorHandler, jsonMethodNotAllowed, jsonNotFound, OTLP_TRACES_PATH } from "./fallback.ts";
import { bodyLimits } from "./limits.ts";

/** Size limits of the HTTP surface (see docs/proxy.md, "Limits and access"). */
export interface Limits {
  /** OpenAI routes' request bodies, after decompression. */
  proxyBodyBytes: number;
  /** Store API request bodies, after decompression. */
  storeBodyBytes: number;
  /** OTLP /v1/traces request bodies, after decompression. */
  otlpBodyBytes: number;
  /** One page of a store API list response; the rest follows by cursor. */
  maxResponseBytes: number;
}

export const DEFAULT_LIMITS: Limits = {
  proxyBodyBytes: 8 * 1024 * 1024,
  storeBodyBytes: 16 * 1024 * 1024,
  otlpBodyBytes: 16 * 1024 * 1024,
  maxResponseBytes: 8 * 1024 * 1024,
};

/** Defaults overridden by `limits` (and the older `maxBodyBytes`, the proxy's body limit). */
export function resolveLimits(options: { maxBodyBytes?: number; limits?: Partial<Limits> }): Limits {
  const limits: Limits = {
    ...DEFAULT_LIMITS,
    ...(options.maxBodyBytes !== undefined ? { proxyBodyBytes: options.maxBodyBytes } : {}),
    ...options.limits,
  };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value <= 0) throw new Error(`limits.${name} must be a positive integer`);
  }
  return limits;
}

/** API paths every request must authenticate for; the rest (dashboard, health) is open. */
export function needsKey(path: string): boolean {
  if (path === "/api/v1/openapi.json") return false;
  return path.startsWith("/v1/") || path.startsWith("/rollouts/") || path.startsWith("/api/v1/");
}

/**
 * Installs the guards on `app` (call before registering routes). Returns the attempt-token
 * issuer, or null without an API key (then nothing needs credentials).
 */
export function guardApp(app: Hono, options: { apiKey: string | undefined; limits: Limits }): AttemptTokens | null {
  const { apiKey, limits } = options;
  app.onError(jsonErrorHandler);
  app.notFound(jsonNotFound);
  app.use(jsonMethodNotAllowed(app));
  const tokens = apiKey ? new AttemptTokens(apiKey) : null;
  if (apiKey && tokens) {
    app.use(
      accessControl({
        apiKey,
        tokens,
        open: (path) => !needsKey(path),
        deny: (c, status, message) =>
          errorResponse(c, status, message, { code: status === 401 ? "invalid_api_key" : "permission_denied" }),
      }),
    );
  }
  app.use(
    bodyLimits({
      maxBytes: (path) =>
        path === OTLP_TRACES_PATH
          ? limits.otlpBodyBytes
          : path.startsWith("/api/v1/")
            ? limits.storeBodyBytes
            : limits.proxyBodyBytes,
      answer: (c, failure) => errorResponse(c, failure.status, failure.message, { code: failure.code }),
    }),
  );
  return tokens;
}
