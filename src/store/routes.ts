// The Store over HTTP: a Hono sub-app serving every Store method under /api/v1 as JSON. Inputs
// are validated by the store's own zod schemas; failures become OpenAI-style error bodies
// ({"error":{"message","type","param","code"}}) with 400/401/403/404/405/409/413 statuses. HttpStore
// (http-client.ts) is the matching client. Routes are registered from the table in openapi.ts.
// Request bodies are size-limited while they stream in; list responses come in pages of at most
// `maxResponseBytes` with a `next` cursor. Requests made with an attempt token (see http/auth.ts)
// may only post spans and rewards of their own attempt.
import { type Context, Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { attemptScopeOf, presentedKey, sameSecret } from "../http/auth.ts";
import { bodyLimits } from "../http/limits.ts";
import { AuthenticationError, NotFoundError, PermissionError, StoreError, StoreValidationError } from "./errors.ts";
import { openApiDocument, ROUTES } from "./openapi.ts";
import { type Page, pageOf } from "./pages.ts";
import type { Store } from "./types.ts";
import { transitionInputFromWire, transitionToWire } from "./wire.ts";

export interface StoreRoutesOptions {
  /** When set, every request needs `Authorization: Bearer <apiKey>` (the OpenAPI document excepted). */
  apiKey?: string;
  /** Longest a single /rollouts/wait request holds the connection, ms (default 20 s); clients re-poll. */
  maxWaitMs?: number;
  /** Largest request body, bytes after decompression (default 16 MiB); larger → 413. */
  maxBodyBytes?: number;
  /** Largest list page, bytes (default 8 MiB); the rest follows with `?cursor=<next>`. */
  maxResponseBytes?: number;
}

type Handler = (c: Context) => Promise<Response> | Response;

async function jsonBody(c: Context): Promise<Record<string, unknown>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw new StoreValidationError("request body must be a JSON object", null, "invalid_json");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new StoreValidationError("request body must be a JSON object", null, "invalid_json");
  }
  return body as Record<string, unknown>;
}

/** An integer query parameter, or undefined when absent. */
function intQuery(c: Context, name: string): number | undefined {
  const raw = c.req.query(name);
  if (raw === undefined || raw === "") return undefined;
  if (!/^-?\d+$/.test(raw)) throw new StoreValidationError(`${name} must be an integer, got "${raw}"`, name);
  return Number(raw);
}

function stringQuery(c: Context, name: string): string | undefined {
  const raw = c.req.query(name);
  return raw === undefined || raw === "" ? undefined : raw;
}

function boolQuery(c: Context, name: string): boolean | undefined {
  const raw = stringQuery(c, name);
  if (raw === undefined) return undefined;
  if (raw !== "true" && raw !== "false") throw new StoreValidationError(`${name} must be true or false`, name);
  return raw === "true";
}

/** Drops undefined fields so the store's strict schemas see only what the client sent. */
function defined<T extends Record<string, unknown>>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function arrayField(body: Record<string, unknown>, field: string): unknown[] {
  const value = body[field];
  if (!Array.isArray(value)) throw new StoreValidationError(`body.${field} must be an array`, field);
  return value;
}

/** With an attempt token, every posted span/reward must belong to that attempt (else 403, nothing stored). */
function checkScope(c: Context, items: unknown[], what: string): void {
  const scope = attemptScopeOf(c);
  if (!scope) return;
  for (const item of items) {
    const { attemptId, rolloutId } = (item ?? {}) as { attemptId?: unknown; rolloutId?: unknown };
    if (attemptId !== scope.attemptId || (rolloutId != null && rolloutId !== scope.rolloutId)) {
      throw new PermissionError(`Permission denied: this token may only write ${what} of attempt ${scope.attemptId}.`);
    }
  }
}

/** Builds the Hono app serving `store` under /api/v1 (mount with `app.route("/", storeRoutes(store))`). */
export function storeRoutes(store: Store, options: StoreRoutesOptions = {}): Hono {
  const maxWaitMs = options.maxWaitMs ?? 20_000;
  const maxResponseBytes = options.maxResponseBytes ?? 8 * 1024 * 1024;
  const app = new Hono();
  /** A list as one page of JSON: `{"data": [...], "next": cursor | null}`. */
  const page = async (c: Context, fetchRows: Page) =>
    c.body(await pageOf(fetchRows, stringQuery(c, "cursor"), maxResponseBytes), 200, {
      "content-type": "application/json",
    });
  const errorBody = (c: Context, status: number, message: string, code: string) =>
    c.json({ error: { message, type: "invalid_request_error", param: null, code } }, status as ContentfulStatusCode);

  app.onError((error, c) => {
    if (error instanceof StoreError) return c.json(error.toJSON(), error.status as ContentfulStatusCode);
    console.error(`fulgur store: unexpected error on ${c.req.method} ${c.req.path}`, error);
    const message = error instanceof Error ? error.message : String(error);
    return c.json({ error: { message, type: "server_error", param: null, code: "internal_error" } }, 500);
  });

  if (options.apiKey !== undefined) {
    const apiKey = options.apiKey;
    app.use("/api/v1/*", async (c, next) => {
      if (c.req.path === "/api/v1/openapi.json") return next();
      const given = presentedKey(c);
      if (given === null || !sameSecret(given, apiKey))
        throw new AuthenticationError("missing or invalid API key (Authorization: Bearer …)");
      return next();
    });
  }
  app.use(
    "/api/v1/*",
    bodyLimits({
      maxBytes: options.maxBodyBytes ?? 16 * 1024 * 1024,
      answer: (c, failure) => errorBody(c, failure.status, failure.message, failure.code),
    }),
  );

  const handlers: Record<string, Handler> = {
    "post /api/v1/rollouts": async (c) => c.json(await store.enqueueRollout((await jsonBody(c)) as never), 201),
    "post /api/v1/rollouts/batch": async (c) => {
      const rollouts = arrayField(await jsonBody(c), "rollouts");
      return c.json({ data: await store.enqueueRollouts(rollouts as never) }, 201);
    },
    "get /api/v1/rollouts": async (c) => {
      const statuses = (c.req.queries("status") ?? []).flatMap((s) => s.split(",")).filter((s) => s !== "");
      const query = defined({
        status: statuses.length === 0 ? undefined : statuses,
        mode: stringQuery(c, "mode"),
        groupId: stringQuery(c, "groupId"),
        order: stringQuery(c, "order"),
      });
      const limit = intQuery(c, "limit");
      const offset = intQuery(c, "offset");
      return page(c, {
        limit,
        offset,
        defaultLimit: 1000,
        maxLimit: 10_000,
        fetch: (off, n) => store.listRollouts({ ...query, offset: off, limit: n } as never),
      });
    },
    "post /api/v1/rollouts/claim": async (c) =>
      c.json({ data: await store.claimRollout((await jsonBody(c)) as never) }),
    "post /api/v1/rollouts/wait": async (c) => {
      const body = await jsonBody(c);
      const timeoutMs = typeof body.timeoutMs === "number" ? Math.min(body.timeoutMs, maxWaitMs) : body.timeoutMs;
      const ended = await store.waitForRollouts(body.ids as string[], { ...body, ids: undefined, timeoutMs } as never);
      return c.json({ data: ended });
    },
    "get /api/v1/rollouts/:id": async (c) => c.json(await store.getRollout(c.req.param("id") ?? "")),
    "post /api/v1/rollouts/:id/cancel": async (c) => c.json(await store.cancelRollout(c.req.param("id") ?? "")),
    "get /api/v1/rollouts/:id/attempts": async (c) => {
      const all = await store.listAttempts(c.req.param("id") ?? "");
      return page(c, { fetch: async (off, n) => all.slice(off, off + n) });
    },
    "get /api/v1/attempts/:id": async (c) => c.json(await store.getAttempt(c.req.param("id") ?? "")),
    "post /api/v1/attempts/:id/heartbeat": async (c) => c.json(await store.heartbeat(c.req.param("id") ?? "")),
    "post /api/v1/attempts/:id/finish": async (c) =>
      c.json(await store.finishAttempt(c.req.param("id") ?? "", (await jsonBody(c)) as never)),
    "post /api/v1/spans": async (c) => {
      const spans = arrayField(await jsonBody(c), "spans");
      checkScope(c, spans, "spans");
      return c.json({ data: await store.addSpans(spans as never) }, 201);
    },
    "get /api/v1/spans": async (c) => {
      const query = defined({ rolloutId: stringQuery(c, "rolloutId"), attemptId: stringQuery(c, "attemptId") });
      return page(c, {
        limit: intQuery(c, "limit"),
        offset: intQuery(c, "offset"),
        maxLimit: 100_000,
        fetch: (off, n) => store.getSpans({ ...query, offset: off, limit: n }),
      });
    },
    "post /api/v1/transitions": async (c) => {
      const transitions = arrayField(await jsonBody(c), "transitions").map(transitionInputFromWire);
      return c.json({ data: await store.addTransitions(transitions as never) }, 201);
    },
    "get /api/v1/transitions": async (c) => {
      const query = defined({
        rolloutId: stringQuery(c, "rolloutId"),
        attemptId: stringQuery(c, "attemptId"),
        unattributed: boolQuery(c, "unattributed"),
      });
      return page(c, {
        limit: intQuery(c, "limit"),
        offset: intQuery(c, "offset"),
        defaultLimit: 10_000,
        maxLimit: 100_000,
        fetch: async (off, n) =>
          (await store.getTransitions({ ...query, offset: off, limit: n })).map(transitionToWire),
      });
    },
    "post /api/v1/rewards": async (c) => {
      const rewards = arrayField(await jsonBody(c), "rewards");
      checkScope(c, rewards, "rewards");
      return c.json({ data: await store.addRewards(rewards as never) }, 201);
    },
    "get /api/v1/rewards": async (c) => {
      const query = defined({ rolloutId: stringQuery(c, "rolloutId"), attemptId: stringQuery(c, "attemptId") });
      return page(c, {
        limit: intQuery(c, "limit"),
        offset: intQuery(c, "offset"),
        maxLimit: 100_000,
        fetch: (off, n) => store.getRewards({ ...query, offset: off, limit: n }),
      });
    },
    "post /api/v1/resources/:name": async (c) => {
      const body = await jsonBody(c);
      return c.json(await store.addResources(c.req.param("name") ?? "", body.value as never), 201);
    },
    "get /api/v1/resources/:name": async (c) =>
      c.json(await store.getResources(c.req.param("name") ?? "", intQuery(c, "version"))),
    "post /api/v1/training-steps": async (c) => c.json(await store.addTrainingStep((await jsonBody(c)) as never), 201),
    "get /api/v1/training-steps": async (c) => {
      const query = defined({ sinceStep: intQuery(c, "sinceStep"), limit: intQuery(c, "limit") });
      const all = await store.listTrainingSteps(query);
      return page(c, { fetch: async (off, n) => all.slice(off, off + n) });
    },
    "post /api/v1/sweep": async (c) => c.json(await store.sweep()),
    "get /api/v1/openapi.json": (c) => c.json(openApiDocument()),
  };

  for (const route of ROUTES) {
    const handler = handlers[`${route.method} ${route.path}`];
    if (!handler) throw new Error(`store route ${route.method} ${route.path} is documented but has no handler`);
    app.on(route.method.toUpperCase(), route.path, handler);
  }
  // Unknown paths under the store's own prefixes get the JSON error body (405 with Allow for a
  // known path asked with another method). A catch-all route rather than app.notFound, which a
  // parent app mounting this one never consults; limited to these prefixes so it cannot shadow
  // other /api/v1 routes the parent registers after this app.
  const patterns = ROUTES.map((route) => ({
    method: route.method.toUpperCase(),
    regex: new RegExp(`^${route.path.replace(/:[^/]+/g, "[^/]+")}$`),
  }));
  const prefixes = new Set(ROUTES.map((route) => route.path.split("/")[3]));
  for (const prefix of prefixes) {
    for (const path of [`/api/v1/${prefix}`, `/api/v1/${prefix}/*`]) {
      app.all(path, (c) => {
        const allowed = [...new Set(patterns.filter((p) => p.regex.test(c.req.path)).map((p) => p.method))];
        if (allowed.length > 0) {
          if (allowed.includes("GET")) allowed.push("HEAD");
          return c.json(
            {
              error: {
                message: `Method ${c.req.method} is not allowed on ${c.req.path}; use ${allowed.join(", ")}.`,
                type: "invalid_request_error",
                param: null,
                code: "method_not_allowed",
              },
            },
            405,
            { Allow: allowed.join(", ") },
          );
        }
        throw new NotFoundError(`no route ${c.req.method} ${c.req.path}`, "route_not_found");
      });
    }
  }
  return app;
}
