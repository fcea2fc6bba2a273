// What happened inside attempts, on libSQL: spans (with per-attempt sequence numbers),
// transitions (token blobs) and rewards — written in batches, flagged late when their attempt had
// already ended, and read back by rollout or attempt.
import type { InStatement } from "@libsql/client";
import { and, asc, eq, inArray, isNull, type SQL, sql } from "drizzle-orm";
import type { AnySQLiteColumn } from "drizzle-orm/sqlite-core";
import { encodeLogprobs, encodeTokenIds } from "./blobs.ts";
import { chunks, INSERT_CHUNK, jsonOrNull, type StoreContext, toStatement, write } from "./context.ts";
import { NotFoundError, StoreValidationError } from "./errors.ts";
import { newId, newOtelSpanId, traceIdForAttempt } from "./ids.ts";
import {
  parseInput,
  rewardInputSchema,
  rewardQuerySchema,
  spanInputSchema,
  spanQuerySchema,
  transitionInputSchema,
  transitionQuerySchema,
} from "./inputs.ts";
import { toReward, toSpan, toTransition } from "./rows.ts";
import { attempts, rewards, rollouts, spans, transitions } from "./schema.ts";
import * as q from "./sql.ts";
import type {
  Reward,
  RewardInput,
  RewardQuery,
  Span,
  SpanInput,
  SpanQuery,
  Transition,
  TransitionInput,
  TransitionQuery,
  TransitionReceipt,
} from "./types.ts";

/** Looks up the attempts writes refer to; checks that given rollout ids match. Returns attempt → rollout. */
async function attributions(
  ctx: StoreContext,
  refs: { attemptId?: string | null; rolloutId?: string | null }[],
  what: string,
): Promise<Map<string, string>> {
  const attemptIds = [...new Set(refs.flatMap((r) => (r.attemptId ? [r.attemptId] : [])))];
  const owners = new Map<string, string>();
  for (const chunk of chunks(attemptIds, INSERT_CHUNK)) {
    const rows = await ctx.db
      .select({ id: attempts.id, rolloutId: attempts.rolloutId })
      .from(attempts)
      .where(inArray(attempts.id, chunk));
    for (const row of rows) owners.set(row.id, row.rolloutId);
  }
  const orphanRollouts = new Set<string>();
  refs.forEach((ref, i) => {
    if (ref.attemptId) {
      const owner = owners.get(ref.attemptId);
      if (owner === undefined) {
        throw new NotFoundError(`attempt ${ref.attemptId} not found`, "attempt_not_found", `${what}[${i}].attemptId`);
      }
      if (ref.rolloutId && ref.rolloutId !== owner) {
        throw new StoreValidationError(
          `${what}[${i}]: attempt ${ref.attemptId} belongs to rollout ${owner}, not ${ref.rolloutId}`,
          `${what}[${i}].rolloutId`,
        );
      }
    } else if (ref.rolloutId) orphanRollouts.add(ref.rolloutId);
  });
  if (orphanRollouts.size > 0) {
    const ids = [...orphanRollouts];
    const found = new Set(
      (await ctx.db.select({ id: rollouts.id }).from(rollouts).where(inArray(rollouts.id, ids))).map((r) => r.id),
    );
    const index = refs.findIndex((ref) => !ref.attemptId && ref.rolloutId && !found.has(ref.rolloutId));
    if (index >= 0) {
      const param = `${what}[${index}].rolloutId`;
      throw new NotFoundError(`rollout ${refs[index].rolloutId} not found`, "rollout_not_found", param);
    }
  }
  return owners;
}

/** Statements that count writes as attempt activity (heartbeat, preparing → running). */
function activity(now: number, attemptIds: string[]): SQL[] {
  if (attemptIds.length === 0) return [];
  return [q.touchAttempts(now, attemptIds), q.markRolloutsRunning(now, attemptIds)];
}

export async function addSpans(ctx: StoreContext, input: SpanInput[]): Promise<Span[]> {
  if (!Array.isArray(input)) throw new StoreValidationError("spans must be an array", "spans");
  if (input.length === 0) return [];
  const parsed = input.map((span, i) => parseInput(spanInputSchema, span, "span", `spans[${i}]`));
  const owners = await attributions(ctx, parsed, "spans");
  const now = ctx.clock();
  const ids = parsed.map(() => newId("sp"));
  const inserts = parsed.map((span, i) =>
    ctx.db.run(
      q.insertSpan(
        now,
        {
          id: ids[i],
          attemptId: span.attemptId,
          traceId: span.traceId ?? null,
          spanId: span.spanId ?? newOtelSpanId(),
          parentSpanId: span.parentSpanId ?? null,
          name: span.name,
          kind: span.kind,
          startTime: span.startTime,
          endTime: span.endTime ?? null,
          attributes: JSON.stringify(span.attributes),
          events: JSON.stringify(span.events),
          status: jsonOrNull(span.status),
        },
        traceIdForAttempt(span.attemptId),
      ),
    ),
  );
  const results = await write(ctx, [
    ...inserts,
    ...activity(now, [...owners.keys()]).map((fragment) => ctx.db.run(fragment)),
    ctx.db.select().from(spans).where(inArray(spans.id, ids)),
  ]);
  const byId = new Map((results.at(-1) as (typeof spans.$inferSelect)[]).map((row) => [row.id, toSpan(row)]));
  return ids.map((id) => byId.get(id)!);
}

export async function addTransitions(ctx: StoreContext, input: TransitionInput[]): Promise<TransitionReceipt[]> {
  if (!Array.isArray(input)) throw new StoreValidationError("transitions must be an array", "transitions");
  if (input.length === 0) return [];
  const parsed = input.map((t, i) => parseInput(transitionInputSchema, t, "transition", `transitions[${i}]`));
  const owners = await attributions(ctx, parsed, "transitions");
  const now = ctx.clock();
  const rows = parsed.map((t): q.TransitionRow => {
    const attemptId = t.attemptId ?? null;
    return {
      id: newId("tr"),
      rolloutId: attemptId ? owners.get(attemptId)! : (t.rolloutId ?? null),
      attemptId,
      spanId: t.spanId ?? null,
      promptIds: encodeTokenIds(t.promptIds),
      responseIds: encodeTokenIds(t.responseIds),
      responseLogprobs: t.responseLogprobs == null ? null : encodeLogprobs(t.responseLogprobs),
      messages: JSON.stringify(t.messages),
      response: jsonOrNull(t.response),
      model: t.model ?? null,
      adapterVersion: t.adapterVersion ?? null,
      finishReason: t.finishReason ?? null,
      usage: jsonOrNull(t.usage),
      metadata: jsonOrNull(t.metadata),
    };
  });
  // The hottest write path (every LLM call): plain parameterised SQL, because drizzle's
  // builder costs more than SQLite itself on 100-row inserts with blobs.
  const attemptIds = [...owners.keys()];
  const statements: InStatement[] = chunks(rows, INSERT_CHUNK).map((chunk) =>
    q.insertTransitions(now, chunk, attemptIds),
  );
  for (const fragment of activity(now, attemptIds)) statements.push(toStatement(ctx, fragment));
  if (attemptIds.length > 0) statements.push(toStatement(ctx, q.endedAttempts(attemptIds)));
  const results = await ctx.client.batch(statements, "write");
  // Same transaction as the insert, so this is exactly the set the insert flagged late.
  const ended = new Set(attemptIds.length ? results[results.length - 1].rows.map((row) => String(row.id)) : []);
  return rows.map((r) => ({
    id: r.id,
    rolloutId: r.rolloutId,
    attemptId: r.attemptId,
    late: r.attemptId !== null && ended.has(r.attemptId),
  }));
}

export async function addRewards(ctx: StoreContext, input: RewardInput[]): Promise<Reward[]> {
  if (!Array.isArray(input)) throw new StoreValidationError("rewards must be an array", "rewards");
  if (input.length === 0) return [];
  const parsed = input.map((r, i) => parseInput(rewardInputSchema, r, "reward", `rewards[${i}]`));
  const owners = await attributions(ctx, parsed, "rewards");
  const now = ctx.clock();
  const rows = parsed.map((r) => ({
    id: newId("rw"),
    rolloutId: owners.get(r.attemptId)!,
    attemptId: r.attemptId,
    spanId: r.spanId ?? null,
    value: r.value,
    dimensions: r.dimensions ?? null,
    late: sql`${q.lateFlag(r.attemptId)}` as unknown as boolean,
    createdAt: now,
  }));
  const ids = rows.map((r) => r.id);
  const results = await write(ctx, [
    ...chunks(rows, INSERT_CHUNK).map((chunk) => ctx.db.insert(rewards).values(chunk)),
    ...activity(now, [...owners.keys()]).map((fragment) => ctx.db.run(fragment)),
    ctx.db.select().from(rewards).where(inArray(rewards.id, ids)),
  ]);
  const byId = new Map((results.at(-1) as (typeof rewards.$inferSelect)[]).map((row) => [row.id, toReward(row)]));
  return ids.map((id) => byId.get(id)!);
}

function scope(
  query: { rolloutId?: string; attemptId?: string },
  table: { rolloutId: AnySQLiteColumn; attemptId: AnySQLiteColumn },
  what: string,
): SQL {
  const conditions: SQL[] = [];
  if (query.rolloutId) conditions.push(eq(table.rolloutId, query.rolloutId));
  if (query.attemptId) conditions.push(eq(table.attemptId, query.attemptId));
  if (conditions.length === 0) {
    throw new StoreValidationError(`${what} query needs a rolloutId or an attemptId`, "rolloutId");
  }
  return and(...conditions)!;
}

export async function getSpans(ctx: StoreContext, query: SpanQuery): Promise<Span[]> {
  const parsed = parseInput(spanQuerySchema, query, "span query");
  const rows = await ctx.db
    .select({ span: spans })
    .from(spans)
    .innerJoin(attempts, eq(attempts.id, spans.attemptId))
    .where(scope(parsed, spans, "span"))
    .orderBy(asc(attempts.attemptNo), asc(spans.seq))
    // SQLite's LIMIT -1 is "no limit".
    .limit(parsed.limit ?? -1)
    .offset(parsed.offset ?? 0);
  return rows.map((r) => toSpan(r.span));
}

export async function getTransitions(ctx: StoreContext, query: TransitionQuery): Promise<Transition[]> {
  const parsed = parseInput(transitionQuerySchema, query, "transition query");
  const conditions: SQL[] = [];
  if (parsed.rolloutId) conditions.push(eq(transitions.rolloutId, parsed.rolloutId));
  if (parsed.attemptId) conditions.push(eq(transitions.attemptId, parsed.attemptId));
  if (parsed.unattributed) conditions.push(isNull(transitions.rolloutId));
  const rows = await ctx.db
    .select()
    .from(transitions)
    .where(and(...conditions))
    .orderBy(sql`rowid`)
    .limit(parsed.limit)
    .offset(parsed.offset);
  return rows.map(toTransition);
}

export async function getRewards(ctx: StoreContext, query: RewardQuery): Promise<Reward[]> {
  const parsed = parseInput(rewardQuerySchema, query, "reward query");
  const rows = await ctx.db
    .select()
    .from(rewards)
    .where(scope(parsed, rewards, "reward"))
    .orderBy(sql`rowid`)
    .limit(parsed.limit ?? -1)
    .offset(parsed.offset ?? 0);
  return rows.map(toReward);
}
