// Who may call what: the one API-key check every route shares, and attempt-scoped tokens. The
// admin key (`--api-key`) may call everything. An attempt token, handed to the agent of one
// attempt, may only make LLM calls, write spans/traces and rewards for that attempt; everything
// else is 403. Tokens are `fat_<payload>.<mac>`: the payload names the rollout and attempt, the
// MAC is an HMAC-SHA256 of it under a secret derived from the admin key, so any server holding
// the same key verifies them (across restarts too) and nobody without it can mint one. Every
// comparison is constant-time.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import type { Store } from "../store/types.ts";

export const TOKEN_PREFIX = "fat_";

/** What an authenticated request may do. */
export type Principal = { kind: "admin" } | { kind: "attempt"; rolloutId: string; attemptId: string };

/** An attempt's scope: the ids its token names. */
export interface AttemptScope {
  rolloutId: string;
  attemptId: string;
}

const SCOPE_KEY = "fulgur.attemptScope";

/** The attempt a request is limited to, or null for the admin (or when auth is off). */
export function attemptScopeOf(c: Context): AttemptScope | null {
  return ((c.get as (key: string) => unknown)(SCOPE_KEY) as AttemptScope | undefined) ?? null;
}

function setAttemptScope(c: Context, scope: AttemptScope): void {
  (c.set as (key: string, value: unknown) => void)(SCOPE_KEY, scope);
}

/** Constant-time equality of two strings of any lengths (compares their SHA-256 digests). */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

const b64url = (buf: Buffer) => buf.toString("base64url");

/** Issues and verifies attempt tokens under a secret derived from the admin key. */
export class AttemptTokens {
  readonly #secret: Buffer;

  constructor(adminKey: string) {
    if (typeof adminKey !== "string" || adminKey.length === 0) {
      throw new Error("AttemptTokens: the admin key must be a non-empty string");
    }
    // A derived secret: a token's MAC never reveals anything usable against the admin key itself.
    this.#secret = createHmac("sha256", adminKey).update("fulgur attempt token v1").digest();
  }

  #mac(payload: string): Buffer {
    return createHmac("sha256", this.#secret).update(payload).digest();
  }

  /** The token for one attempt. */
  issue(rolloutId: string, attemptId: string): string {
    const payload = b64url(Buffer.from(JSON.stringify([rolloutId, attemptId])));
    return `${TOKEN_PREFIX}${payload}.${b64url(this.#mac(payload))}`;
  }

  /** The ids a token names, or null when it is not one of ours. */
  verify(token: string): AttemptScope | null {
    if (!token.startsWith(TOKEN_PREFIX)) return null;
    const dot = token.indexOf(".", TOKEN_PREFIX.length);
    if (dot < 0) return null;
    const payload = token.slice(TOKEN_PREFIX.length, dot);
    const given = Buffer.from(token.slice(dot + 1), "base64url");
    const expected = this.#mac(payload);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    try {
      const ids = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as unknown;
      if (!Array.isArray(ids) || ids.length !== 2 || !ids.every((id) => typeof id === "string" && id !== "")) {
        return null;
      }
      return { rolloutId: ids[0], attemptId: ids[1] };
    } catch {
      return null;
    }
  }
}

/**
 * The credential a request carries: `Authorization: Bearer <key>` (scheme case-insensitive) or
 * `x-api-key: <key>` (Anthropic clients). A bare `Authorization: <key>` is not accepted anywhere.
 */
export function presentedKey(c: Context): string | null {
  const header = c.req.header("authorization");
  if (header !== undefined) {
    const match = /^bearer +(\S+) *$/i.exec(header);
    return match ? match[1] : null;
  }
  const apiKey = c.req.header("x-api-key");
  return apiKey === undefined || apiKey === "" ? null : apiKey.trim();
}

export interface AccessOptions {
  apiKey: string;
  tokens: AttemptTokens;
  /** Paths anyone may call (exact match). */
  open?: (path: string) => boolean;
  /** Answers 401/403 in the error shape of the route. */
  deny: (c: Context, status: 401 | 403, message: string) => Response;
}

const ATTEMPT_PROXY = /^\/rollouts\/([^/]+)\/attempts\/([^/]+)\/v1(\/.*)?$/;

/**
 * What an attempt token may reach, decided on the path alone: its own attempt's OpenAI base URL,
 * the root OpenAI routes (attributed to its attempt; other attribution headers are refused), OTLP
 * traces, and posting spans and rewards (whose bodies the handlers check against the scope).
 */
function attemptMayCall(c: Context, scope: AttemptScope): string | null {
  const path = c.req.path;
  const method = c.req.method;
  const own = ATTEMPT_PROXY.exec(path);
  if (own) {
    const [, rollout, attempt] = own.map((p) => (p === undefined ? p : safeDecode(p)));
    if (rollout === scope.rolloutId && attempt === scope.attemptId) return null;
    return "this token belongs to another attempt";
  }
  if (method === "POST" && (path === "/api/v1/spans" || path === "/api/v1/rewards")) return null;
  if (path === "/v1/traces") return null;
  if (path.startsWith("/v1/")) {
    for (const [header, id] of [
      ["x-fulgur-rollout-id", scope.rolloutId],
      ["x-fulgur-attempt-id", scope.attemptId],
    ] as const) {
      const given = c.req.header(header)?.trim();
      if (given && given !== id) return "this token belongs to another attempt";
    }
    return null;
  }
  return "an attempt token may only make LLM calls and write spans and rewards for its own attempt";
}

function safeDecode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** Hono middleware: the one key check for every route it is mounted on. */
export function accessControl(options: AccessOptions): MiddlewareHandler {
  const { apiKey, tokens, deny } = options;
  return async (c, next) => {
    if (options.open?.(c.req.path)) return next();
    const key = presentedKey(c);
    if (key === null) {
      return deny(c, 401, "Missing API key: send Authorization: Bearer <key> (or x-api-key: <key>).");
    }
    // Both checks always run, so the time taken does not say which kind of key was close.
    const isAdmin = sameSecret(key, apiKey);
    const scope = tokens.verify(key);
    if (isAdmin) return next();
    if (!scope) return deny(c, 401, "Incorrect API key provided.");
    const refusal = attemptMayCall(c, scope);
    if (refusal) return deny(c, 403, `Permission denied: ${refusal}.`);
    setAttemptScope(c, scope);
    return next();
  };
}

/** Refuses an empty key: `--api-key=` must not silently turn authentication off. */
export function checkApiKey(apiKey: string | undefined, where: string): string | undefined {
  if (apiKey === undefined) return undefined;
  if (apiKey.trim() === "") {
    throw new Error(`${where} is empty: give a non-empty key, or leave it out to run without authentication`);
  }
  if (/\s/.test(apiKey)) throw new Error(`${where} must not contain whitespace`);
  return apiKey;
}

/**
 * A Store whose claims carry the attempt's token (`claim.token`): what the HTTP claim route
 * answers a worker, and what an in-process runner of a keyed server hands its agent.
 */
export function withAttemptTokens(store: Store, tokens: AttemptTokens): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === "claimRollout") {
        return async (...args: Parameters<Store["claimRollout"]>) => {
          const claim = await target.claimRollout(...args);
          return claim && { ...claim, token: tokens.issue(claim.rollout.id, claim.attempt.id) };
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
