// The OpenAPI 3.1 description of the store's HTTP API (served at /api/v1/openapi.json). The
// route table here is the single list of routes; routes.ts registers exactly these, and a test
// checks that every registered route is documented.
import { z } from "zod";
import {
  claimSchema,
  enqueueRolloutSchema,
  finishAttemptSchema,
  rewardInputSchema,
  spanInputSchema,
  trainingStepSchema,
  waitSchema,
} from "./inputs.ts";

export interface RouteDoc {
  method: "get" | "post";
  /** Hono path syntax (":id"). */
  path: string;
  summary: string;
  body?: z.ZodType;
  query?: string[];
  /** What a 2xx response holds. */
  returns: string;
}

const base64 = z.string().describe("base64 of little-endian 4-byte values");
const wireTransitionInput = z.object({
  rolloutId: z.string().nullish(),
  attemptId: z.string().nullish(),
  spanId: z.string().nullish(),
  promptIds: base64.describe("Uint32 token ids, base64 (a JSON number array is accepted too)"),
  responseIds: base64.describe("Uint32 token ids, base64 (a JSON number array is accepted too)"),
  responseLogprobs: base64.nullish().describe("Float32 logprobs, one per response token, base64"),
  messages: z.array(z.unknown()).optional(),
  response: z.unknown().optional(),
  model: z.string().nullish(),
  adapterVersion: z.string().nullish(),
  finishReason: z.string().nullish(),
  usage: z.object({ promptTokens: z.int(), completionTokens: z.int(), totalTokens: z.int().optional() }).nullish(),
  metadata: z.record(z.string(), z.unknown()).nullish(),
});

export const ROUTES: RouteDoc[] = [
  {
    method: "post",
    path: "/api/v1/rollouts",
    summary: "Enqueue one rollout",
    body: enqueueRolloutSchema,
    returns: "Rollout",
  },
  {
    method: "post",
    path: "/api/v1/rollouts/batch",
    summary: "Enqueue rollouts in one transaction",
    body: z.object({ rollouts: z.array(enqueueRolloutSchema) }),
    returns: "{ data: Rollout[] }",
  },
  {
    method: "get",
    path: "/api/v1/rollouts",
    summary: "List rollouts (status may repeat or be comma-separated)",
    query: ["status", "mode", "groupId", "limit", "offset", "order", "cursor"],
    returns: "{ data: Rollout[], next: cursor | null } (one page; repeat with ?cursor=next)",
  },
  {
    method: "post",
    path: "/api/v1/rollouts/claim",
    summary: "Atomically claim the oldest queued rollout, creating an attempt",
    body: claimSchema,
    returns: "{ data: { rollout, attempt, token? } | null } (token: the attempt token, when the server has an API key)",
  },
  {
    method: "post",
    path: "/api/v1/rollouts/wait",
    summary: "Long-poll until the rollouts end or a bounded wait passes",
    body: waitSchema,
    returns: "{ data: Rollout[] } (those that ended)",
  },
  { method: "get", path: "/api/v1/rollouts/:id", summary: "Get a rollout", returns: "Rollout" },
  { method: "post", path: "/api/v1/rollouts/:id/cancel", summary: "Cancel a rollout", returns: "Rollout" },
  {
    method: "get",
    path: "/api/v1/rollouts/:id/attempts",
    summary: "A rollout's attempts",
    returns: "{ data: Attempt[], next: cursor | null } (one page; repeat with ?cursor=next)",
  },
  { method: "get", path: "/api/v1/attempts/:id", summary: "Get an attempt", returns: "Attempt" },
  { method: "post", path: "/api/v1/attempts/:id/heartbeat", summary: "Heartbeat an attempt", returns: "Attempt" },
  {
    method: "post",
    path: "/api/v1/attempts/:id/finish",
    summary: "Finish an attempt (late finishes are recorded, not applied)",
    body: finishAttemptSchema,
    returns: "{ attempt, rollout, late }",
  },
  {
    method: "post",
    path: "/api/v1/spans",
    summary: "Record spans (sequence numbers assigned per attempt)",
    body: z.object({ spans: z.array(spanInputSchema) }),
    returns: "{ data: Span[] }",
  },
  {
    method: "get",
    path: "/api/v1/spans",
    summary: "Spans by rollout or attempt",
    query: ["rolloutId", "attemptId", "limit", "offset", "cursor"],
    returns: "{ data: Span[], next: cursor | null } (one page; repeat with ?cursor=next)",
  },
  {
    method: "post",
    path: "/api/v1/transitions",
    summary: "Record LLM-call transitions",
    body: z.object({ transitions: z.array(wireTransitionInput) }),
    returns: "{ data: { id, rolloutId, attemptId, late }[] }",
  },
  {
    method: "get",
    path: "/api/v1/transitions",
    summary: "Transitions by rollout, attempt, or unattributed (blobs as base64)",
    query: ["rolloutId", "attemptId", "unattributed", "limit", "offset", "cursor"],
    returns: "{ data: Transition[], next: cursor | null } (one page; repeat with ?cursor=next)",
  },
  {
    method: "post",
    path: "/api/v1/rewards",
    summary: "Record rewards",
    body: z.object({ rewards: z.array(rewardInputSchema) }),
    returns: "{ data: Reward[] }",
  },
  {
    method: "get",
    path: "/api/v1/rewards",
    summary: "Rewards by rollout or attempt",
    query: ["rolloutId", "attemptId", "limit", "offset", "cursor"],
    returns: "{ data: Reward[], next: cursor | null } (one page; repeat with ?cursor=next)",
  },
  {
    method: "post",
    path: "/api/v1/resources/:name",
    summary: "Publish the next version of a resources set",
    body: z.object({ value: z.unknown() }),
    returns: "ResourcesRecord",
  },
  {
    method: "get",
    path: "/api/v1/resources/:name",
    summary: "A resources set, latest version unless ?version=",
    query: ["version"],
    returns: "ResourcesRecord",
  },
  {
    method: "post",
    path: "/api/v1/training-steps",
    summary: "Record a training step's metrics",
    body: trainingStepSchema,
    returns: "TrainingStep",
  },
  {
    method: "get",
    path: "/api/v1/training-steps",
    summary: "List training steps",
    query: ["sinceStep", "limit", "cursor"],
    returns: "{ data: TrainingStep[], next: cursor | null } (one page; repeat with ?cursor=next)",
  },
  { method: "post", path: "/api/v1/sweep", summary: "Expire stale attempts now", returns: "SweepResult" },
  { method: "get", path: "/api/v1/openapi.json", summary: "This document", returns: "OpenAPI 3.1 document" },
];

const errorSchema = {
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: {
        message: { type: "string" },
        type: { type: "string" },
        param: { type: ["string", "null"] },
        code: { type: "string" },
      },
      required: ["message", "type", "param", "code"],
    },
  },
  required: ["error"],
};

function jsonSchema(schema: z.ZodType): unknown {
  // Typed-array validators have no JSON Schema form; they are documented as "any".
  return z.toJSONSchema(schema, { io: "input", unrepresentable: "any" });
}

/** Builds the OpenAPI 3.1 document for the routes in ROUTES. */
export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of ROUTES) {
    const openApiPath = route.path.replace(/:([A-Za-z]+)/g, "{$1}");
    const parameters = [
      ...[...route.path.matchAll(/:([A-Za-z]+)/g)].map((m) => ({
        name: m[1],
        in: "path",
        required: true,
        schema: { type: "string" },
      })),
      ...(route.query ?? []).map((name) => ({ name, in: "query", required: false, schema: { type: "string" } })),
    ];
    paths[openApiPath] ??= {};
    paths[openApiPath][route.method] = {
      summary: route.summary,
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(route.body
        ? { requestBody: { required: true, content: { "application/json": { schema: jsonSchema(route.body) } } } }
        : {}),
      responses: {
        "200": { description: route.returns },
        "400": { description: "Invalid input", content: { "application/json": { schema: errorSchema } } },
        "404": { description: "Not found", content: { "application/json": { schema: errorSchema } } },
        "409": {
          description: "Conflict with the entity's state",
          content: { "application/json": { schema: errorSchema } },
        },
      },
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Fulgur LightningStore",
      version: "1",
      description: "Rollout queue and trace store for agent RL. Errors: {error:{message,type,param,code}}.",
    },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    paths,
  };
}
