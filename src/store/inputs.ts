// zod schemas for every Store input, with the input types derived from them. The libSQL store
// validates with them, the HTTP client checks requests with them before sending, and the OpenAPI
// document is generated from them, so a request is judged the same way everywhere.
import { z } from "zod";
import { fromZodError, StoreValidationError } from "./errors.ts";
import {
  FINISH_STATUSES,
  type JsonValue,
  RETRYABLE_STATUSES,
  ROLLOUT_MODES,
  ROLLOUT_STATUSES,
  SPAN_KINDS,
} from "./types.ts";

const MAX_JSON_DEPTH = 64;

/**
 * True for plain JSON: null, booleans, finite numbers, strings, arrays and plain objects of
 * those. Object properties set to `undefined` are allowed and dropped when stored, as
 * JSON.stringify does (SDK objects often carry them). Hand-written rather than z.json(): it runs
 * on every message of every recorded LLM call.
 */
export function isJsonValue(value: unknown, depth = 0): value is JsonValue {
  if (value === null || typeof value === "string" || typeof value === "boolean") return true;
  if (typeof value === "number") return Number.isFinite(value);
  if (typeof value !== "object" || depth >= MAX_JSON_DEPTH) return false;
  if (Array.isArray(value)) {
    for (const item of value) if (!isJsonValue(item, depth + 1)) return false;
    return true;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  for (const key in value) {
    const field = (value as Record<string, unknown>)[key];
    if (field !== undefined && !isJsonValue(field, depth + 1)) return false;
  }
  return true;
}

const json = z.custom<JsonValue>(
  (value) => isJsonValue(value),
  "expected a JSON value (null, boolean, finite number, string, array or plain object)",
);
const id = z.string().min(1).max(200);
const finite = z.number().refine(Number.isFinite, "expected a finite number");
const jsonRecord = z.record(z.string(), json);

/** True when every element is an integer token id in [0, 2^32). */
function isTokenIdArray(value: unknown): value is ArrayLike<number> {
  if (value instanceof Uint32Array) return true;
  if (!Array.isArray(value)) return false;
  for (const v of value) if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) return false;
  return true;
}

function isLogprobArray(value: unknown): value is ArrayLike<number> {
  if (value instanceof Float32Array || value instanceof Float64Array) {
    for (const v of value) if (Number.isNaN(v)) return false;
    return true;
  }
  if (!Array.isArray(value)) return false;
  for (const v of value) if (typeof v !== "number" || Number.isNaN(v)) return false;
  return true;
}

export const tokenIdsSchema = z.custom<ArrayLike<number>>(
  isTokenIdArray,
  "expected an array (or Uint32Array) of integer token ids in [0, 2^32)",
);
export const logprobsSchema = z.custom<ArrayLike<number>>(
  isLogprobArray,
  "expected an array (or Float32Array) of numbers (logprobs), none NaN",
);

export const rolloutConfigSchema = z.strictObject({
  maxAttempts: z.int().min(1).max(100).default(3),
  timeoutMs: z.int().positive().nullable().default(null),
  unresponsiveTimeoutMs: z.int().positive().nullable().default(120_000),
  retryOn: z.array(z.enum(RETRYABLE_STATUSES)).default([...RETRYABLE_STATUSES]),
});

export const enqueueRolloutSchema = z.strictObject({
  input: json,
  mode: z.enum(ROLLOUT_MODES).default("train"),
  groupId: id.nullish(),
  /** Run with resources `name`, at `version` if given, else the latest version when claimed. */
  resources: z.strictObject({ name: id, version: z.int().positive().optional() }).nullish(),
  config: rolloutConfigSchema.prefault({}),
  metadata: jsonRecord.nullish(),
});
export type EnqueueRolloutInput = z.input<typeof enqueueRolloutSchema>;

export const claimSchema = z.strictObject({ workerId: id, mode: z.enum(ROLLOUT_MODES).optional() });
export type ClaimInput = z.input<typeof claimSchema>;

const attemptErrorSchema = z.union([
  z.string().transform((message) => ({ message })),
  z.strictObject({ message: z.string(), type: z.string().optional(), stack: z.string().optional() }),
]);

export const finishAttemptSchema = z.strictObject({
  status: z.enum(FINISH_STATUSES),
  error: attemptErrorSchema.nullish(),
  /** The attempt's final reward; recorded as a reward row. Omit to use the last reward recorded. */
  reward: finite.nullish(),
});
export type FinishAttemptInput = z.input<typeof finishAttemptSchema>;

export const spanInputSchema = z.strictObject({
  attemptId: id,
  /** Optional check: must be the attempt's rollout. */
  rolloutId: id.optional(),
  /** Defaults to a trace id derived from the attempt id, so an attempt's spans share one trace. */
  traceId: z.string().min(1).max(64).optional(),
  /** OpenTelemetry span id; random if omitted. */
  spanId: z.string().min(1).max(64).optional(),
  parentSpanId: z.string().min(1).max(64).nullish(),
  name: z.string().min(1).max(1000),
  kind: z.enum(SPAN_KINDS).default("custom"),
  startTime: z.number().nonnegative(),
  endTime: z.number().nonnegative().nullish(),
  attributes: jsonRecord.default({}),
  events: z
    .array(z.strictObject({ name: z.string(), time: z.number().nonnegative(), attributes: jsonRecord.optional() }))
    .default([]),
  status: z.strictObject({ code: z.enum(["unset", "ok", "error"]), message: z.string().optional() }).nullish(),
});
export type SpanInput = z.input<typeof spanInputSchema>;

export const usageSchema = z.strictObject({
  promptTokens: z.int().nonnegative(),
  completionTokens: z.int().nonnegative(),
  totalTokens: z.int().nonnegative().optional(),
});

export const transitionInputSchema = z
  .strictObject({
    /** Both ids may be null: an unattributed call (no rollout), kept for inspection. */
    rolloutId: id.nullish(),
    attemptId: id.nullish(),
    spanId: z.string().min(1).max(64).nullish(),
    promptIds: tokenIdsSchema,
    responseIds: tokenIdsSchema,
    responseLogprobs: logprobsSchema.nullish(),
    messages: z.array(json).default([]),
    response: json.nullish(),
    model: z.string().max(500).nullish(),
    adapterVersion: z.string().min(1).max(200).nullish(),
    finishReason: z.string().max(100).nullish(),
    usage: usageSchema.nullish(),
    metadata: jsonRecord.nullish(),
  })
  .refine((t) => t.responseLogprobs == null || t.responseLogprobs.length === t.responseIds.length, {
    message: "responseLogprobs must have one entry per response token",
    path: ["responseLogprobs"],
  });
export type TransitionInput = z.input<typeof transitionInputSchema>;

export const rewardInputSchema = z.strictObject({
  attemptId: id,
  rolloutId: id.optional(),
  spanId: z.string().min(1).max(64).nullish(),
  value: finite,
  dimensions: z.record(z.string(), finite).nullish(),
});
export type RewardInput = z.input<typeof rewardInputSchema>;

const limit = (max: number, fallback: number) => z.int().min(1).max(max).default(fallback);

export const listRolloutsSchema = z.strictObject({
  status: z.union([z.enum(ROLLOUT_STATUSES), z.array(z.enum(ROLLOUT_STATUSES)).min(1)]).optional(),
  mode: z.enum(ROLLOUT_MODES).optional(),
  groupId: id.optional(),
  limit: limit(10_000, 1000),
  offset: z.int().nonnegative().default(0),
  /** Enqueue order; "desc" lists the newest first (dashboards). */
  order: z.enum(["asc", "desc"]).default("asc"),
});
export type ListRolloutsQuery = z.input<typeof listRolloutsSchema>;

export const spanQuerySchema = z.strictObject({
  rolloutId: id.optional(),
  attemptId: id.optional(),
  /** A window of the (ordered) result, for paging; default: all of it. */
  limit: z.int().min(1).max(100_000).optional(),
  offset: z.int().nonnegative().optional(),
});
export type SpanQuery = z.input<typeof spanQuerySchema>;

export const transitionQuerySchema = z
  .strictObject({
    rolloutId: id.optional(),
    attemptId: id.optional(),
    /** Only transitions recorded without a rollout. */
    unattributed: z.boolean().optional(),
    limit: limit(100_000, 10_000),
    offset: z.int().nonnegative().default(0),
  })
  .refine((q) => !(q.unattributed && (q.rolloutId || q.attemptId)), {
    message: "unattributed cannot be combined with rolloutId or attemptId",
    path: ["unattributed"],
  });
export type TransitionQuery = z.input<typeof transitionQuerySchema>;

export const rewardQuerySchema = spanQuerySchema;
export type RewardQuery = SpanQuery;

export const waitSchema = z.strictObject({
  ids: z.array(id).min(1).max(10_000),
  timeoutMs: z
    .int()
    .nonnegative()
    .max(24 * 3600_000),
  pollMs: z.int().min(1).max(60_000).default(100),
});
export type WaitOptions = Omit<z.input<typeof waitSchema>, "ids">;

export const resourcesNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9._:-]{1,200}$/, "expected 1-200 characters of letters, digits, '.', '_', ':' or '-'");
export const resourcesVersionSchema = z.int().positive().optional();
export const resourcesValueSchema = json;

export const trainingStepSchema = z.strictObject({
  step: z.int().nonnegative(),
  metrics: z.record(z.string(), finite),
});
export type TrainingStepInput = z.input<typeof trainingStepSchema>;

export const trainingStepQuerySchema = z.strictObject({
  sinceStep: z.int().nonnegative().optional(),
  limit: limit(100_000, 10_000),
});
export type TrainingStepQuery = z.input<typeof trainingStepQuerySchema>;

/**
 * Validates `value` with a zod schema, throwing StoreValidationError on failure. `prefix` names
 * the item within a batch ("spans[3]") so `param` points at it.
 */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, what: string, prefix = ""): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw fromZodError(result.error, what, prefix);
  return result.data;
}

/** Checks an id argument (non-empty string, at most 200 characters); throws StoreValidationError naming `param`. */
export function validateId(value: unknown, param: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > 200) {
    throw new StoreValidationError(
      `invalid ${param}: expected a non-empty string id of at most 200 characters, got ${JSON.stringify(value)}`,
      param,
    );
  }
  return value;
}
