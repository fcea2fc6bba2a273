// The rollout/attempt state machine as SQL statements. Each runs inside one write transaction
// (BEGIN IMMEDIATE via a libSQL batch), so a claim, a finish or a sweep is atomic with respect to
// every other client of the same database, in this process or any other.
import type { InValue } from "@libsql/client";
import { type SQL, sql } from "drizzle-orm";
import type { FinishStatus, RolloutMode } from "./types.ts";

/** Attempt statuses in which an attempt still runs. */
const ACTIVE = sql.raw(`('preparing', 'running')`);

/** The attempt's final reward: the last on-time reward recorded on it, in insertion order. */
const LAST_REWARD = sql.raw(
  `(SELECT rw.value FROM rewards rw WHERE rw.attempt_id = attempts.id AND rw.late = 0 ORDER BY rw.rowid DESC LIMIT 1)`,
);

function list(values: readonly string[]): SQL {
  return sql.join(
    values.map((v) => sql`${v}`),
    sql`, `,
  );
}

/** Attempts running longer than their rollout's timeout → "timeout". */
export function expireTimedOut(now: number): SQL {
  return sql`UPDATE attempts SET status = 'timeout', ended_at = ${now}, reward = ${LAST_REWARD},
    error = COALESCE(error, json_object('message', 'attempt ran longer than its rollout timeout', 'type', 'timeout'))
    WHERE status IN ${ACTIVE} AND EXISTS (SELECT 1 FROM rollouts ro WHERE ro.id = attempts.rollout_id
      AND ro.timeout_ms IS NOT NULL AND attempts.started_at + ro.timeout_ms < ${now})`;
}

/** Attempts whose last heartbeat/write is older than the rollout's unresponsive timeout → "unresponsive". */
export function expireUnresponsive(now: number): SQL {
  return sql`UPDATE attempts SET status = 'unresponsive', ended_at = ${now}, reward = ${LAST_REWARD},
    error = COALESCE(error, json_object('message', 'no heartbeat within the unresponsive timeout', 'type', 'unresponsive'))
    WHERE status IN ${ACTIVE} AND EXISTS (SELECT 1 FROM rollouts ro WHERE ro.id = attempts.rollout_id
      AND ro.unresponsive_timeout_ms IS NOT NULL AND attempts.heartbeat_at + ro.unresponsive_timeout_ms < ${now})`;
}

/**
 * Active rollouts whose current attempt has ended → succeeded, requeuing (a retryable outcome
 * with attempts left) or failed. Idempotent; returns the new statuses. `attemptId` limits it to
 * the rollout currently run by that attempt.
 */
export function resolveRollouts(now: number, attemptId?: string): SQL {
  const final = sql.raw(`(a.status = 'succeeded' OR rollouts.attempt_count >= rollouts.max_attempts
    OR NOT EXISTS (SELECT 1 FROM json_each(rollouts.retry_on) WHERE json_each.value = a.status))`);
  const only = attemptId === undefined ? sql`` : sql` AND rollouts.current_attempt_id = ${attemptId}`;
  return sql`UPDATE rollouts SET
      status = CASE WHEN a.status = 'succeeded' THEN 'succeeded' WHEN ${final} THEN 'failed' ELSE 'requeuing' END,
      final_reward = CASE WHEN ${final} THEN a.reward ELSE NULL END,
      ended_at = CASE WHEN ${final} THEN ${now} ELSE NULL END,
      updated_at = ${now}
    FROM attempts AS a
    WHERE a.id = rollouts.current_attempt_id AND rollouts.status IN ${ACTIVE} AND a.status NOT IN ${ACTIVE}${only}
    RETURNING rollouts.status AS status`;
}

/**
 * Takes the oldest queuing/requeuing rollout (enqueue time, then insertion order; a requeued
 * rollout keeps its place) and points it at a new attempt id. Uses the partial queue indexes.
 * Resolves the resources version now unless the enqueuer pinned one. Returns the rollout row.
 * Does nothing when `attemptId` already exists: a claim re-sent after its first send committed
 * (remote store, connection lost before the answer) takes no second rollout.
 */
export function claimOldest(now: number, attemptId: string, mode: RolloutMode | undefined): SQL {
  const modeFilter = mode === undefined ? sql`` : sql` AND mode = ${mode}`;
  return sql`UPDATE rollouts SET status = 'preparing', attempt_count = attempt_count + 1,
      current_attempt_id = ${attemptId}, started_at = COALESCE(started_at, ${now}), updated_at = ${now},
      resources_version = CASE WHEN resources_pinned = 1 OR resources_name IS NULL THEN resources_version
        ELSE (SELECT MAX(r.version) FROM resources r WHERE r.name = rollouts.resources_name) END
    WHERE id = (SELECT id FROM rollouts WHERE status IN ('queuing', 'requeuing')${modeFilter}
      ORDER BY created_at, rowid LIMIT 1)
      AND NOT EXISTS (SELECT 1 FROM attempts WHERE id = ${attemptId})
    RETURNING *`;
}

/**
 * Creates the attempt row for the rollout `claimOldest` just pointed at `attemptId` (nothing if
 * the attempt exists: a re-sent claim). The claim reads both rows back by the attempt id.
 */
export function insertClaimedAttempt(now: number, attemptId: string, workerId: string): SQL {
  return sql`INSERT INTO attempts (id, rollout_id, attempt_no, worker_id, status, resources_version, started_at, heartbeat_at)
    SELECT ${attemptId}, id, attempt_count, ${workerId}, 'preparing', resources_version, ${now}, ${now}
    FROM rollouts WHERE current_attempt_id = ${attemptId}
      AND NOT EXISTS (SELECT 1 FROM attempts WHERE id = ${attemptId})`;
}

/** Heartbeat/activity: active attempts become "running" with a fresh heartbeat. */
export function touchAttempts(now: number, attemptIds: readonly string[]): SQL {
  return sql`UPDATE attempts SET heartbeat_at = ${now}, status = 'running'
    WHERE id IN (${list(attemptIds)}) AND status IN ${ACTIVE}`;
}

/** Rollouts whose current attempt just showed activity move from "preparing" to "running". */
export function markRolloutsRunning(now: number, attemptIds: readonly string[]): SQL {
  return sql`UPDATE rollouts SET status = 'running', updated_at = ${now}
    WHERE status = 'preparing' AND current_attempt_id IN (${list(attemptIds)})`;
}

/** 1 if the attempt has ended (a write to it is late), else 0; 0 for an unknown attempt. */
export function lateFlag(attemptId: string | null): SQL {
  if (attemptId === null) return sql`0`;
  return sql`COALESCE((SELECT a.status NOT IN ${ACTIVE} FROM attempts a WHERE a.id = ${attemptId}), 0)`;
}

/** The explicit reward of a finish, as a reward row (late if the attempt has already ended). */
export function insertFinishReward(now: number, rewardId: string, attemptId: string, value: number): SQL {
  return sql`INSERT INTO rewards (id, rollout_id, attempt_id, value, late, created_at)
    SELECT ${rewardId}, a.rollout_id, a.id, ${value}, a.status NOT IN ${ACTIVE}, ${now} FROM attempts a WHERE a.id = ${attemptId}
    ON CONFLICT (id) DO NOTHING`;
}

/**
 * Ends an active attempt; its reward is the last on-time reward recorded (finishAttempt records
 * an explicit one first). Returns the attempt row, or nothing if it was not active.
 */
export function finishActiveAttempt(now: number, attemptId: string, status: FinishStatus, error: string | null): SQL {
  return sql`UPDATE attempts SET status = ${status}, ended_at = ${now}, heartbeat_at = ${now}, error = ${error},
      reward = ${LAST_REWARD}
    WHERE id = ${attemptId} AND status IN ${ACTIVE}
    RETURNING *`;
}

/**
 * Records a finish that arrived after the attempt had ended, without touching its status. Returns
 * the row if so. A finish re-sent after its first send committed (same `now` and status: the
 * statements are re-sent unchanged) is the same finish, not a late one: it matches nothing.
 */
export function recordLateFinish(now: number, attemptId: string, status: FinishStatus, error: string | null): SQL {
  return sql`UPDATE attempts SET late_status = ${status}, late_error = ${error}, late_at = ${now}
    WHERE id = ${attemptId} AND status NOT IN ${ACTIVE} AND NOT (status = ${status} AND ended_at IS ${now})
    RETURNING *`;
}

export interface SpanRow {
  id: string;
  attemptId: string;
  traceId: string | null;
  spanId: string;
  parentSpanId: string | null;
  name: string;
  kind: string;
  startTime: number;
  endTime: number | null;
  attributes: string;
  events: string;
  status: string | null;
}

/**
 * Inserts one span with the attempt's next sequence number, computed inside the write
 * transaction (the unique (attempt_id, seq) index backs the guarantee).
 */
export function insertSpan(now: number, row: SpanRow, defaultTraceId: string): SQL {
  return sql`INSERT INTO spans (id, rollout_id, attempt_id, seq, trace_id, span_id, parent_span_id, name, kind,
      start_time, end_time, attributes, events, status, late, created_at)
    SELECT ${row.id}, a.rollout_id, a.id, (SELECT COALESCE(MAX(s.seq), 0) + 1 FROM spans s WHERE s.attempt_id = a.id),
      ${row.traceId ?? defaultTraceId}, ${row.spanId}, ${row.parentSpanId}, ${row.name}, ${row.kind},
      ${row.startTime}, ${row.endTime}, ${row.attributes}, ${row.events}, ${row.status},
      CASE WHEN a.status IN ${ACTIVE} THEN 0 ELSE 1 END, ${now}
    FROM attempts a WHERE a.id = ${row.attemptId}
    ON CONFLICT (id) DO NOTHING`;
}

/** Publishes the next version of a resources set (1 for a new name). */
export function insertResourcesVersion(now: number, name: string, value: string): SQL {
  return sql`INSERT INTO resources (name, version, value, created_at)
    SELECT ${name}, COALESCE(MAX(version), 0) + 1, ${value}, ${now} FROM resources WHERE name = ${name}
    RETURNING version`;
}

export interface TransitionRow {
  id: string;
  rolloutId: string | null;
  attemptId: string | null;
  spanId: string | null;
  promptIds: Uint8Array;
  responseIds: Uint8Array;
  responseLogprobs: Uint8Array | null;
  /** JSON text. */
  messages: string;
  response: string | null;
  model: string | null;
  adapterVersion: string | null;
  finishReason: string | null;
  usage: string | null;
  metadata: string | null;
}

const TRANSITION_COLUMNS =
  "id, rollout_id, attempt_id, span_id, prompt_ids, response_ids, response_logprobs, messages, response, " +
  "model, adapter_version, finish_reason, usage, metadata, created_at, late";
const TRANSITION_ROW = `(${new Array(15).fill("?").join(", ")})`;

/**
 * One multi-row INSERT of transitions as a plain statement. `late` is decided inside the write
 * transaction from the attempts' current status: one uncorrelated subquery, not one per row,
 * because statement preparation dominates the cost of wide inserts.
 */
export function insertTransitions(
  now: number,
  rows: readonly TransitionRow[],
  attemptIds: readonly string[],
): { sql: string; args: InValue[] } {
  // Positional parameters bind in text order: the subquery's ids come before the VALUES rows.
  const args: InValue[] = [...attemptIds];
  for (const r of rows) {
    args.push(
      r.id,
      r.rolloutId,
      r.attemptId,
      r.spanId,
      r.promptIds,
      r.responseIds,
      r.responseLogprobs,
      r.messages,
      r.response,
      r.model,
      r.adapterVersion,
      r.finishReason,
      r.usage,
      r.metadata,
      now,
    );
  }
  const values = new Array(rows.length).fill(TRANSITION_ROW).join(", ");
  const ended =
    attemptIds.length === 0
      ? "0"
      : `CASE WHEN column3 IN (SELECT id FROM attempts WHERE status NOT IN ('preparing', 'running') AND id IN (${attemptIds.map(() => "?").join(", ")})) THEN 1 ELSE 0 END`;
  const columns = Array.from({ length: 15 }, (_, i) => `column${i + 1}`).join(", ");
  return {
    // `WHERE true` lets SQLite parse the upsert clause after a SELECT; DO NOTHING makes a re-sent
    // batch (remote store, connection lost after commit) write nothing twice.
    sql: `INSERT INTO transitions (${TRANSITION_COLUMNS}) SELECT ${columns}, ${ended} FROM (VALUES ${values}) WHERE true ON CONFLICT (id) DO NOTHING`,
    args,
  };
}

/** Which of these attempts have ended (writes to them are late). */
export function endedAttempts(attemptIds: readonly string[]): SQL {
  return sql`SELECT id FROM attempts WHERE status NOT IN ${ACTIVE} AND id IN (${list(attemptIds)})`;
}
