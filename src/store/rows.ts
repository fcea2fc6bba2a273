// Database rows (as drizzle selects them) → the records the Store API returns.
import { getTableColumns, type Table } from "drizzle-orm";
import { decodeLogprobs, decodeTokenIds } from "./blobs.ts";
import type { attempts, resources, rewards, rollouts, spans, trainingSteps, transitions } from "./schema.ts";
import type {
  Attempt,
  AttemptStatus,
  FinishStatus,
  JsonValue,
  ResourcesRecord,
  RetryableStatus,
  Reward,
  Rollout,
  RolloutMode,
  RolloutStatus,
  Span,
  SpanEvent,
  SpanKind,
  SpanStatus,
  TrainingStep,
  Transition,
} from "./types.ts";

/**
 * A raw row from hand-written SQL (`RETURNING *`: snake_case names, driver values) → the shape
 * drizzle's selects give, using each column's own decoder (JSON text, booleans).
 */
export function fromRaw<T extends Table>(table: T, raw: Record<string, unknown>): T["$inferSelect"] {
  const out: Record<string, unknown> = {};
  for (const [key, column] of Object.entries(getTableColumns(table))) {
    const value = raw[column.name];
    out[key] = value === null || value === undefined ? null : column.mapFromDriverValue(value);
  }
  return out as T["$inferSelect"];
}

export function toRollout(row: typeof rollouts.$inferSelect): Rollout {
  return {
    id: row.id,
    input: row.input as JsonValue,
    mode: row.mode as RolloutMode,
    groupId: row.groupId,
    status: row.status as RolloutStatus,
    resourcesName: row.resourcesName,
    resourcesVersion: row.resourcesVersion,
    config: {
      maxAttempts: row.maxAttempts,
      timeoutMs: row.timeoutMs,
      unresponsiveTimeoutMs: row.unresponsiveTimeoutMs,
      retryOn: row.retryOn as RetryableStatus[],
    },
    metadata: (row.metadata as Record<string, JsonValue> | null) ?? null,
    attemptCount: row.attemptCount,
    currentAttemptId: row.currentAttemptId,
    finalReward: row.finalReward,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    startedAt: row.startedAt,
    endedAt: row.endedAt,
  };
}

export function toAttempt(row: typeof attempts.$inferSelect): Attempt {
  return {
    id: row.id,
    rolloutId: row.rolloutId,
    attemptNo: row.attemptNo,
    workerId: row.workerId,
    status: row.status as AttemptStatus,
    resourcesVersion: row.resourcesVersion,
    startedAt: row.startedAt,
    heartbeatAt: row.heartbeatAt,
    endedAt: row.endedAt,
    error: row.error ?? null,
    reward: row.reward,
    lateFinish:
      row.lateStatus === null
        ? null
        : { status: row.lateStatus as FinishStatus, error: row.lateError ?? null, at: row.lateAt ?? 0 },
  };
}

export function toSpan(row: typeof spans.$inferSelect): Span {
  return {
    id: row.id,
    rolloutId: row.rolloutId,
    attemptId: row.attemptId,
    seq: row.seq,
    traceId: row.traceId,
    spanId: row.spanId,
    parentSpanId: row.parentSpanId,
    name: row.name,
    kind: row.kind as SpanKind,
    startTime: row.startTime,
    endTime: row.endTime,
    attributes: row.attributes as Record<string, JsonValue>,
    events: row.events as SpanEvent[],
    status: (row.status as SpanStatus | null) ?? null,
    late: row.late,
    createdAt: row.createdAt,
  };
}

export function toTransition(row: typeof transitions.$inferSelect): Transition {
  return {
    id: row.id,
    rolloutId: row.rolloutId,
    attemptId: row.attemptId,
    spanId: row.spanId,
    promptIds: decodeTokenIds(row.promptIds),
    responseIds: decodeTokenIds(row.responseIds),
    responseLogprobs: row.responseLogprobs === null ? null : decodeLogprobs(row.responseLogprobs),
    messages: row.messages as JsonValue[],
    response: (row.response as JsonValue | null) ?? null,
    model: row.model,
    adapterVersion: row.adapterVersion,
    finishReason: row.finishReason,
    usage: row.usage ?? null,
    metadata: (row.metadata as Record<string, JsonValue> | null) ?? null,
    late: row.late,
    createdAt: row.createdAt,
  };
}

export function toReward(row: typeof rewards.$inferSelect): Reward {
  return {
    id: row.id,
    rolloutId: row.rolloutId,
    attemptId: row.attemptId,
    spanId: row.spanId,
    value: row.value,
    dimensions: row.dimensions ?? null,
    late: row.late,
    createdAt: row.createdAt,
  };
}

export function toResources(row: typeof resources.$inferSelect): ResourcesRecord {
  return { name: row.name, version: row.version, value: row.value as JsonValue, createdAt: row.createdAt };
}

export function toTrainingStep(row: typeof trainingSteps.$inferSelect): TrainingStep {
  return { id: row.id, step: row.step, metrics: row.metrics, createdAt: row.createdAt };
}
