// The LightningStore's tables (drizzle-orm, SQLite dialect, served by libSQL). Migrations in
// ./migrations are generated from this file with `npx drizzle-kit generate` and applied on open.
// Timestamps are epoch milliseconds; JSON columns hold plain JSON; token ids and logprobs are
// little-endian Uint32 / Float32 BLOBs (see blobs.ts). Tables keep SQLite's implicit rowid, which
// gives insertion order (claim order, span/transition order) independent of machine clocks.
import { sql } from "drizzle-orm";
import { blob, index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/** JSON value as stored in a JSON text column. */
type Json = unknown;

export const rollouts = sqliteTable(
  "rollouts",
  {
    id: text("id").primaryKey(),
    input: text("input", { mode: "json" }).$type<Json>().notNull(),
    mode: text("mode").notNull(),
    groupId: text("group_id"),
    status: text("status").notNull(),
    resourcesName: text("resources_name"),
    resourcesVersion: integer("resources_version"),
    // 1 when the enqueuer asked for one version; otherwise each claim takes the latest.
    resourcesPinned: integer("resources_pinned", { mode: "boolean" }).notNull().default(false),
    maxAttempts: integer("max_attempts").notNull(),
    timeoutMs: integer("timeout_ms"),
    unresponsiveTimeoutMs: integer("unresponsive_timeout_ms"),
    // JSON array of attempt statuses that earn a retry (SQL reads it with json_each).
    retryOn: text("retry_on", { mode: "json" }).$type<string[]>().notNull(),
    metadata: text("metadata", { mode: "json" }).$type<Record<string, Json>>(),
    attemptCount: integer("attempt_count").notNull().default(0),
    currentAttemptId: text("current_attempt_id"),
    finalReward: real("final_reward"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    startedAt: integer("started_at"),
    endedAt: integer("ended_at"),
  },
  (t) => [
    index("rollouts_status_mode").on(t.status, t.mode),
    index("rollouts_group").on(t.groupId),
    index("rollouts_current_attempt").on(t.currentAttemptId),
    // The queue: only waiting rollouts, in claim order, so a claim reads one index entry instead
    // of sorting every queued row. The WHERE must match the claim query's term exactly.
    index("rollouts_queue").on(t.createdAt).where(sql`status IN ('queuing', 'requeuing')`),
    index("rollouts_queue_mode").on(t.mode, t.createdAt).where(sql`status IN ('queuing', 'requeuing')`),
  ],
);

export const attempts = sqliteTable(
  "attempts",
  {
    id: text("id").primaryKey(),
    rolloutId: text("rollout_id")
      .notNull()
      .references(() => rollouts.id),
    attemptNo: integer("attempt_no").notNull(),
    workerId: text("worker_id").notNull(),
    status: text("status").notNull(),
    resourcesVersion: integer("resources_version"),
    startedAt: integer("started_at").notNull(),
    heartbeatAt: integer("heartbeat_at").notNull(),
    endedAt: integer("ended_at"),
    error: text("error", { mode: "json" }).$type<{ message: string; type?: string; stack?: string }>(),
    reward: real("reward"),
    // A finish reported after the attempt had already ended (e.g. after it was declared
    // unresponsive): kept here, never applied to the rollout.
    lateStatus: text("late_status"),
    lateError: text("late_error", { mode: "json" }).$type<{ message: string; type?: string; stack?: string }>(),
    lateAt: integer("late_at"),
  },
  (t) => [uniqueIndex("attempts_rollout_no").on(t.rolloutId, t.attemptNo), index("attempts_status").on(t.status)],
);

export const spans = sqliteTable(
  "spans",
  {
    id: text("id").primaryKey(),
    rolloutId: text("rollout_id")
      .notNull()
      .references(() => rollouts.id),
    attemptId: text("attempt_id")
      .notNull()
      .references(() => attempts.id),
    seq: integer("seq").notNull(),
    traceId: text("trace_id").notNull(),
    spanId: text("span_id").notNull(),
    parentSpanId: text("parent_span_id"),
    name: text("name").notNull(),
    kind: text("kind").notNull(),
    startTime: real("start_time").notNull(),
    endTime: real("end_time"),
    attributes: text("attributes", { mode: "json" }).$type<Record<string, Json>>().notNull(),
    events: text("events", { mode: "json" }).$type<Json[]>().notNull(),
    status: text("status", { mode: "json" }).$type<{ code: string; message?: string }>(),
    late: integer("late", { mode: "boolean" }).notNull().default(false),
    createdAt: integer("created_at").notNull(),
  },
  // The unique (attempt, seq) pair is the guarantee that concurrent writers never collide.
  (t) => [uniqueIndex("spans_attempt_seq").on(t.attemptId, t.seq), index("spans_rollout").on(t.rolloutId)],
);

export const transitions = sqliteTable(
  "transitions",
  {
    id: text("id").primaryKey(),
    rolloutId: text("rollout_id").references(() => rollouts.id),
    attemptId: text("attempt_id").references(() => attempts.id),
    spanId: text("span_id"),
    promptIds: blob("prompt_ids", { mode: "buffer" }).notNull(),
    responseIds: blob("response_ids", { mode: "buffer" }).notNull(),
    responseLogprobs: blob("response_logprobs", { mode: "buffer" }),
    messages: text("messages", { mode: "json" }).$type<Json[]>().notNull(),
    response: text("response", { mode: "json" }).$type<Json>(),
    model: text("model"),
    // Text: the proxy names adapters freely ("3", "policy@3"); resources versions are one such name.
    adapterVersion: text("adapter_version"),
    finishReason: text("finish_reason"),
    usage: text("usage", { mode: "json" }).$type<{
      promptTokens: number;
      completionTokens: number;
      totalTokens?: number;
    }>(),
    metadata: text("metadata", { mode: "json" }).$type<Record<string, Json>>(),
    late: integer("late", { mode: "boolean" }).notNull().default(false),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("transitions_attempt").on(t.attemptId), index("transitions_rollout").on(t.rolloutId)],
);

export const rewards = sqliteTable(
  "rewards",
  {
    id: text("id").primaryKey(),
    rolloutId: text("rollout_id")
      .notNull()
      .references(() => rollouts.id),
    attemptId: text("attempt_id")
      .notNull()
      .references(() => attempts.id),
    spanId: text("span_id"),
    value: real("value").notNull(),
    dimensions: text("dimensions", { mode: "json" }).$type<Record<string, number>>(),
    late: integer("late", { mode: "boolean" }).notNull().default(false),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("rewards_attempt").on(t.attemptId), index("rewards_rollout").on(t.rolloutId)],
);

export const resources = sqliteTable(
  "resources",
  {
    name: text("name").notNull(),
    version: integer("version").notNull(),
    value: text("value", { mode: "json" }).$type<Json>().notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.name, t.version] })],
);

export const trainingSteps = sqliteTable(
  "training_steps",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    step: integer("step").notNull(),
    metrics: text("metrics", { mode: "json" }).$type<Record<string, number>>().notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("training_steps_step").on(t.step)],
);
