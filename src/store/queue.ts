// The rollout queue on libSQL: enqueue, atomic claim, heartbeat, finish (with the retry policy),
// cancel, expiry sweeps and waiting. Each state change is one write transaction whose SQL lives
// in sql.ts, so concurrent clients in any process see one consistent order of events.
import { and, eq, inArray, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { z } from "zod";
import { chunks, INSERT_CHUNK, jsonOrNull, type StoreContext, sleep, write } from "./context.ts";
import { ConflictError, NotFoundError } from "./errors.ts";
import { newId } from "./ids.ts";
import {
  claimSchema,
  type enqueueRolloutSchema,
  finishAttemptSchema,
  parseInput,
  validateId,
  waitSchema,
} from "./inputs.ts";
import { toAttempt, toRollout } from "./rows.ts";
import { attempts, rollouts } from "./schema.ts";
import * as q from "./sql.ts";
import {
  type Attempt,
  type Claim,
  type ClaimInput,
  FINAL_ROLLOUT_STATUSES,
  type FinishAttemptInput,
  type FinishResult,
  type Rollout,
  type SweepResult,
  type WaitOptions,
} from "./types.ts";

/** A claim also sweeps expired attempts when this client has not swept for this long (store clock, ms). */
const CLAIM_SWEEP_INTERVAL_MS = 250;

/** Inserts validated rollouts (status "queuing") in one transaction, in order. */
export async function enqueue(ctx: StoreContext, parsed: z.output<typeof enqueueRolloutSchema>[]): Promise<Rollout[]> {
  if (parsed.length === 0) return [];
  const now = ctx.clock();
  const rows = parsed.map((r) => ({
    id: newId("ro"),
    input: r.input,
    mode: r.mode,
    groupId: r.groupId ?? null,
    status: "queuing",
    resourcesName: r.resources?.name ?? null,
    resourcesVersion: r.resources?.version ?? null,
    resourcesPinned: r.resources?.version !== undefined && r.resources !== null,
    maxAttempts: r.config.maxAttempts,
    timeoutMs: r.config.timeoutMs,
    unresponsiveTimeoutMs: r.config.unresponsiveTimeoutMs,
    retryOn: [...new Set(r.config.retryOn)],
    metadata: r.metadata ?? null,
    attemptCount: 0,
    createdAt: now,
    updatedAt: now,
  }));
  // Rows are read back by id rather than RETURNING, so a batch re-sent after a lost connection
  // (remote store) answers the rollouts its first send inserted.
  const idChunks = chunks(
    rows.map((r) => r.id),
    INSERT_CHUNK,
  );
  const results = await write(ctx, [
    ...chunks(rows, INSERT_CHUNK).map((chunk) =>
      ctx.db.insert(rollouts).values(chunk).onConflictDoNothing({ target: rollouts.id }),
    ),
    ...idChunks.map((ids) => ctx.db.select().from(rollouts).where(inArray(rollouts.id, ids))),
  ]);
  const byId = new Map(
    (results.slice(-idChunks.length) as (typeof rollouts.$inferSelect)[][]).flat().map((row) => [row.id, row]),
  );
  return rows.map((r) => toRollout(byId.get(r.id)!));
}

export async function claimRollout(ctx: StoreContext, input: ClaimInput): Promise<Claim | null> {
  const { workerId, mode } = parseInput(claimSchema, input, "claim");
  const now = ctx.clock();
  const attemptId = newId("at");
  // Sweeping in the same transaction means a claim never hands out a rollout whose expired
  // attempt has not been noticed yet; throttled because expiry is coarse (seconds) while
  // claims can be hundreds per second.
  const sweep = now - ctx.lastClaimSweep >= CLAIM_SWEEP_INTERVAL_MS;
  if (sweep) ctx.lastClaimSweep = now;
  const results = await write(ctx, [
    ...(sweep
      ? [ctx.db.run(q.expireTimedOut(now)), ctx.db.run(q.expireUnresponsive(now)), ctx.db.run(q.resolveRollouts(now))]
      : []),
    ctx.db.run(q.claimOldest(now, attemptId, mode)),
    ctx.db.run(q.insertClaimedAttempt(now, attemptId, workerId)),
    // Read back by the attempt id, so a re-sent claim answers the rollout its first send took.
    ctx.db.select().from(attempts).where(eq(attempts.id, attemptId)),
    ctx.db
      .select()
      .from(rollouts)
      .where(sql`${rollouts.id} = (SELECT a.rollout_id FROM attempts a WHERE a.id = ${attemptId})`),
  ]);
  const attemptRows = results.at(-2) as (typeof attempts.$inferSelect)[];
  const rolloutRows = results.at(-1) as (typeof rollouts.$inferSelect)[];
  if (rolloutRows.length === 0 || attemptRows.length === 0) return null;
  return { rollout: toRollout(rolloutRows[0]), attempt: toAttempt(attemptRows[0]) };
}

export async function heartbeat(ctx: StoreContext, attemptId: string): Promise<Attempt> {
  const id = validateId(attemptId, "attemptId");
  const now = ctx.clock();
  const results = await write(ctx, [
    ctx.db.run(q.touchAttempts(now, [id])),
    ctx.db.run(q.markRolloutsRunning(now, [id])),
    ctx.db.select().from(attempts).where(eq(attempts.id, id)),
  ]);
  const rows = results[2] as (typeof attempts.$inferSelect)[];
  if (rows.length === 0) throw new NotFoundError(`attempt ${id} not found`, "attempt_not_found", "attemptId");
  const attempt = toAttempt(rows[0]);
  if (attempt.status !== "running") {
    throw new ConflictError(
      `attempt ${id} already ended with status "${attempt.status}"; stop working on it (its rollout may have been requeued)`,
      "attempt_finished",
      "attemptId",
    );
  }
  return attempt;
}

export async function finishAttempt(
  ctx: StoreContext,
  attemptId: string,
  input: FinishAttemptInput,
): Promise<FinishResult> {
  const id = validateId(attemptId, "attemptId");
  const finish = parseInput(finishAttemptSchema, input, "finish");
  const now = ctx.clock();
  const error = jsonOrNull(finish.error);
  const items: BatchItem<"sqlite">[] = [];
  if (finish.reward !== undefined && finish.reward !== null) {
    items.push(ctx.db.run(q.insertFinishReward(now, newId("rw"), id, finish.reward)));
  }
  // Exactly one of the next two matches an existing attempt: the late record if it had ended.
  // Neither matches when the batch is a re-send of a finish that committed (remote store, answer
  // lost): the attempt then already ended with this status at this `now`, and is read back.
  items.push(
    ctx.db.all(q.recordLateFinish(now, id, finish.status, error)),
    ctx.db.run(q.finishActiveAttempt(now, id, finish.status, error)),
    ctx.db.run(q.resolveRollouts(now, id)),
    ctx.db
      .select()
      .from(rollouts)
      .where(sql`${rollouts.id} = (SELECT a.rollout_id FROM attempts a WHERE a.id = ${id})`),
    ctx.db.select().from(attempts).where(eq(attempts.id, id)),
  );
  const results = await write(ctx, items);
  const [lateRows, , , rolloutRows, attemptRows] = results.slice(-5) as [
    Record<string, unknown>[],
    unknown,
    unknown,
    (typeof rollouts.$inferSelect)[],
    (typeof attempts.$inferSelect)[],
  ];
  if (attemptRows.length === 0 || rolloutRows.length === 0) {
    throw new NotFoundError(`attempt ${id} not found`, "attempt_not_found", "attemptId");
  }
  return { attempt: toAttempt(attemptRows[0]), rollout: toRollout(rolloutRows[0]), late: lateRows.length > 0 };
}

export async function cancelRollout(ctx: StoreContext, rolloutId: string): Promise<Rollout> {
  const id = validateId(rolloutId, "rolloutId");
  const now = ctx.clock();
  const results = await write(ctx, [
    ctx.db
      .update(rollouts)
      .set({ status: "cancelled", endedAt: now, updatedAt: now })
      .where(and(eq(rollouts.id, id), sql`${rollouts.status} NOT IN ('succeeded', 'failed', 'cancelled')`)),
    ctx.db.select().from(rollouts).where(eq(rollouts.id, id)),
  ]);
  const rows = results[1] as (typeof rollouts.$inferSelect)[];
  if (rows.length === 0) throw new NotFoundError(`rollout ${id} not found`, "rollout_not_found", "rolloutId");
  if ((results[0] as { rowsAffected: number }).rowsAffected === 0) {
    throw new ConflictError(`rollout ${id} already ended with status "${rows[0].status}"`, "rollout_finished");
  }
  return toRollout(rows[0]);
}

export async function sweep(ctx: StoreContext): Promise<SweepResult> {
  const now = ctx.clock();
  const [timedOut, unresponsive, resolved] = await write(ctx, [
    ctx.db.run(q.expireTimedOut(now)),
    ctx.db.run(q.expireUnresponsive(now)),
    ctx.db.all(q.resolveRollouts(now)),
  ]);
  const statuses = resolved as { status: string }[];
  return {
    timedOut: (timedOut as { rowsAffected: number }).rowsAffected,
    unresponsive: (unresponsive as { rowsAffected: number }).rowsAffected,
    requeued: statuses.filter((r) => r.status === "requeuing").length,
    failed: statuses.filter((r) => r.status === "failed").length,
  };
}

export async function waitForRollouts(ctx: StoreContext, ids: string[], options: WaitOptions): Promise<Rollout[]> {
  const { ids: wanted, timeoutMs, pollMs } = parseInput(waitSchema, { ...options, ids }, "wait");
  const deadline = Date.now() + timeoutMs;
  const unique = [...new Set(wanted)];
  for (;;) {
    const rows = new Map<string, Rollout>();
    for (const chunk of chunks(unique, INSERT_CHUNK)) {
      for (const row of await ctx.db.select().from(rollouts).where(inArray(rollouts.id, chunk))) {
        rows.set(row.id, toRollout(row));
      }
    }
    const missing = unique.find((id) => !rows.has(id));
    if (missing) throw new NotFoundError(`rollout ${missing} not found`, "rollout_not_found", "ids");
    const ended = wanted
      .map((id) => rows.get(id)!)
      .filter((r) => (FINAL_ROLLOUT_STATUSES as readonly string[]).includes(r.status));
    const remaining = deadline - Date.now();
    if (ended.length === wanted.length || remaining <= 0) return ended;
    await sleep(Math.min(pollMs, remaining));
  }
}
