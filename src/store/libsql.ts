// The Store on libSQL: a local SQLite file (WAL) by default, `:memory:` for tests, or a remote
// libSQL server (`libsql://`, `http://` sqld, Turso) shared by many machines. openStore connects
// and migrates; LibsqlStore holds the connection and answers the Store interface, with the queue
// in queue.ts and attempt records in records.ts. Every write is one libSQL batch run as BEGIN
// IMMEDIATE: clients in one process cannot deadlock each other, and clients in other processes
// wait on the busy timeout instead of failing.
import { fileURLToPath } from "node:url";
import { type Client, createClient } from "@libsql/client";
import { and, asc, desc, eq, inArray, type SQL, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";
import { SQLiteSyncDialect } from "drizzle-orm/sqlite-core";
import { type Db, type StoreContext, sleep, write } from "./context.ts";
import { NotFoundError, StoreValidationError } from "./errors.ts";
import {
  enqueueRolloutSchema,
  listRolloutsSchema,
  parseInput,
  resourcesNameSchema,
  resourcesValueSchema,
  resourcesVersionSchema,
  trainingStepQuerySchema,
  trainingStepSchema,
  validateId,
} from "./inputs.ts";
import * as queue from "./queue.ts";
import * as records from "./records.ts";
import { type RemoteRetryOptions, retryingClient } from "./remote.ts";
import { toAttempt, toResources, toRollout, toTrainingStep } from "./rows.ts";
import * as schema from "./schema.ts";
import { attempts, resources, rollouts, trainingSteps } from "./schema.ts";
import * as q from "./sql.ts";
import type {
  Attempt,
  Claim,
  ClaimInput,
  EnqueueRolloutInput,
  FinishAttemptInput,
  FinishResult,
  JsonValue,
  ListRolloutsQuery,
  ResourcesRecord,
  Reward,
  RewardInput,
  RewardQuery,
  Rollout,
  Span,
  SpanInput,
  SpanQuery,
  Store,
  SweepResult,
  TrainingStep,
  TrainingStepInput,
  TrainingStepQuery,
  Transition,
  TransitionInput,
  TransitionQuery,
  TransitionReceipt,
  WaitOptions,
} from "./types.ts";

/** Resolved relative to this module, so opening a store works from any working directory. */
const MIGRATIONS_FOLDER = fileURLToPath(new URL("./migrations", import.meta.url));

export interface OpenStoreOptions extends RemoteRetryOptions {
  /** Auth token for remote libSQL servers (Turso, sqld with JWT auth); default `FULGUR_STORE_TOKEN`. */
  authToken?: string;
  /** How long a local connection waits for another writer's lock, ms (default 10 s). */
  busyTimeoutMs?: number;
  /** Time source for timestamps, heartbeats and expiry (epoch ms); tests pass a manual clock. */
  clock?: () => number;
}

/**
 * A client whose batches default to BEGIN IMMEDIATE: drizzle's `db.batch` passes no mode, and a
 * deferred transaction that upgrades to a writer can fail with SQLITE_BUSY_SNAPSHOT instead of
 * waiting for the lock.
 */
function immediateBatches(client: Client): Client {
  return new Proxy(client, {
    get(target, prop) {
      if (prop === "batch") {
        return (stmts: Parameters<Client["batch"]>[0], mode?: Parameters<Client["batch"]>[1]) =>
          target.batch(stmts, mode ?? "write");
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** Applies the checked-in migrations; retries when another process is migrating the same file at once. */
async function applyMigrations(db: Db): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await migrate(db, { migrationsFolder: MIGRATIONS_FOLDER });
      return;
    } catch (error) {
      if (attempt >= 8) throw error;
      await sleep(20 * attempt + Math.random() * 50);
    }
  }
}

/**
 * Opens (creating and migrating if needed) a store. `url`: "file:path.db" (default
 * "file:fulgur.db"), ":memory:", or a remote libSQL URL with `authToken`.
 */
export async function openStore(url = "file:fulgur.db", options: OpenStoreOptions = {}): Promise<Store> {
  if (typeof url !== "string" || url.length === 0) {
    throw new StoreValidationError(`store url must be a non-empty string such as "file:fulgur.db", got ${url}`, "url");
  }
  const local = url === ":memory:" || url.startsWith("file:");
  const created = createClient({
    url,
    authToken: local ? undefined : (options.authToken ?? (process.env.FULGUR_STORE_TOKEN || undefined)),
    // Local statements are synchronous, so one connection serves the whole client and keeps its
    // per-connection pragmas (synchronous=NORMAL) for the store's lifetime.
    ...(local ? { concurrency: 1, timeout: options.busyTimeoutMs ?? 10_000 } : {}),
  });
  const client = local ? created : retryingClient(created, options, url);
  try {
    if (url.startsWith("file:")) {
      await client.execute("PRAGMA journal_mode = WAL");
      await client.execute("PRAGMA synchronous = NORMAL");
    }
    if (local) await client.execute("PRAGMA foreign_keys = ON");
    const db = drizzle({ client: immediateBatches(client), schema });
    await applyMigrations(db);
    return new LibsqlStore({
      client,
      db,
      dialect: new SQLiteSyncDialect(),
      clock: options.clock ?? Date.now,
      lastClaimSweep: Number.NEGATIVE_INFINITY,
    });
  } catch (error) {
    client.close();
    if (local) throw error;
    // Drizzle wraps the server's answer in "Failed query: <migration SQL>"; say what failed.
    const cause = (error as { cause?: unknown }).cause ?? error;
    throw new Error(`cannot open the store at ${url}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause: error,
    });
  }
}

/** The Store on a libSQL database; create with `openStore`. */
export class LibsqlStore implements Store {
  readonly #ctx: StoreContext;

  constructor(ctx: StoreContext) {
    this.#ctx = ctx;
  }

  async enqueueRollout(input: EnqueueRolloutInput): Promise<Rollout> {
    const [rollout] = await queue.enqueue(this.#ctx, [parseInput(enqueueRolloutSchema, input, "rollout")]);
    return rollout;
  }

  async enqueueRollouts(inputs: EnqueueRolloutInput[]): Promise<Rollout[]> {
    if (!Array.isArray(inputs)) throw new StoreValidationError("rollouts must be an array", "rollouts");
    const parsed = inputs.map((input, i) => parseInput(enqueueRolloutSchema, input, "rollout", `rollouts[${i}]`));
    return queue.enqueue(this.#ctx, parsed);
  }

  claimRollout(input: ClaimInput): Promise<Claim | null> {
    return queue.claimRollout(this.#ctx, input);
  }

  heartbeat(attemptId: string): Promise<Attempt> {
    return queue.heartbeat(this.#ctx, attemptId);
  }

  finishAttempt(attemptId: string, input: FinishAttemptInput): Promise<FinishResult> {
    return queue.finishAttempt(this.#ctx, attemptId, input);
  }

  cancelRollout(rolloutId: string): Promise<Rollout> {
    return queue.cancelRollout(this.#ctx, rolloutId);
  }

  sweep(): Promise<SweepResult> {
    return queue.sweep(this.#ctx);
  }

  waitForRollouts(ids: string[], options: WaitOptions): Promise<Rollout[]> {
    return queue.waitForRollouts(this.#ctx, ids, options);
  }

  addSpans(spans: SpanInput[]): Promise<Span[]> {
    return records.addSpans(this.#ctx, spans);
  }

  addTransitions(transitions: TransitionInput[]): Promise<TransitionReceipt[]> {
    return records.addTransitions(this.#ctx, transitions);
  }

  addRewards(rewards: RewardInput[]): Promise<Reward[]> {
    return records.addRewards(this.#ctx, rewards);
  }

  getSpans(query: SpanQuery): Promise<Span[]> {
    return records.getSpans(this.#ctx, query);
  }

  getTransitions(query: TransitionQuery): Promise<Transition[]> {
    return records.getTransitions(this.#ctx, query);
  }

  getRewards(query: RewardQuery): Promise<Reward[]> {
    return records.getRewards(this.#ctx, query);
  }

  async getRollout(rolloutId: string): Promise<Rollout> {
    const id = validateId(rolloutId, "rolloutId");
    const rows = await this.#ctx.db.select().from(rollouts).where(eq(rollouts.id, id));
    if (rows.length === 0) throw new NotFoundError(`rollout ${id} not found`, "rollout_not_found", "rolloutId");
    return toRollout(rows[0]);
  }

  async listRollouts(query: ListRolloutsQuery = {}): Promise<Rollout[]> {
    const { status, mode, groupId, limit, offset, order } = parseInput(listRolloutsSchema, query, "rollout query");
    const conditions: SQL[] = [];
    if (status !== undefined) conditions.push(inArray(rollouts.status, Array.isArray(status) ? status : [status]));
    if (mode !== undefined) conditions.push(eq(rollouts.mode, mode));
    if (groupId !== undefined) conditions.push(eq(rollouts.groupId, groupId));
    const rows = await this.#ctx.db
      .select()
      .from(rollouts)
      .where(and(...conditions))
      .orderBy(order === "asc" ? sql`rowid` : sql`rowid DESC`)
      .limit(limit)
      .offset(offset);
    return rows.map(toRollout);
  }

  async getAttempt(attemptId: string): Promise<Attempt> {
    const id = validateId(attemptId, "attemptId");
    const rows = await this.#ctx.db.select().from(attempts).where(eq(attempts.id, id));
    if (rows.length === 0) throw new NotFoundError(`attempt ${id} not found`, "attempt_not_found", "attemptId");
    return toAttempt(rows[0]);
  }

  async listAttempts(rolloutId: string): Promise<Attempt[]> {
    const rollout = await this.getRollout(rolloutId);
    const rows = await this.#ctx.db
      .select()
      .from(attempts)
      .where(eq(attempts.rolloutId, rollout.id))
      .orderBy(asc(attempts.attemptNo));
    return rows.map(toAttempt);
  }

  async addResources(name: string, value: JsonValue): Promise<ResourcesRecord> {
    const parsedName = parseInput(resourcesNameSchema, name, "resources name", "name");
    if (value === undefined) throw new StoreValidationError("resources value is required (any JSON value)", "value");
    const parsedValue = parseInput(resourcesValueSchema, value, "resources value", "value");
    const now = this.#ctx.clock();
    const [inserted] = await write(this.#ctx, [
      this.#ctx.db.all(q.insertResourcesVersion(now, parsedName, JSON.stringify(parsedValue))),
    ]);
    const version = Number((inserted as { version: number }[])[0].version);
    return { name: parsedName, version, value: parsedValue, createdAt: now };
  }

  async getResources(name: string, version?: number): Promise<ResourcesRecord> {
    const parsedName = parseInput(resourcesNameSchema, name, "resources name", "name");
    const parsedVersion = parseInput(resourcesVersionSchema, version, "resources version", "version");
    const rows = await this.#ctx.db
      .select()
      .from(resources)
      .where(
        parsedVersion === undefined
          ? eq(resources.name, parsedName)
          : and(eq(resources.name, parsedName), eq(resources.version, parsedVersion)),
      )
      .orderBy(desc(resources.version))
      .limit(1);
    if (rows.length === 0) {
      const which = parsedVersion === undefined ? "any version" : `version ${parsedVersion}`;
      throw new NotFoundError(`resources "${parsedName}" has no ${which}`, "resources_not_found", "name");
    }
    return toResources(rows[0]);
  }

  async addTrainingStep(input: TrainingStepInput): Promise<TrainingStep> {
    const { step, metrics } = parseInput(trainingStepSchema, input, "training step");
    const now = this.#ctx.clock();
    const [rows] = await write(this.#ctx, [
      this.#ctx.db.insert(trainingSteps).values({ step, metrics, createdAt: now }).returning(),
    ]);
    return toTrainingStep((rows as (typeof trainingSteps.$inferSelect)[])[0]);
  }

  async listTrainingSteps(query: TrainingStepQuery = {}): Promise<TrainingStep[]> {
    const { sinceStep, limit } = parseInput(trainingStepQuerySchema, query, "training step query");
    const rows = await this.#ctx.db
      .select()
      .from(trainingSteps)
      .where(sinceStep === undefined ? undefined : sql`${trainingSteps.step} >= ${sinceStep}`)
      .orderBy(asc(trainingSteps.step), asc(trainingSteps.id))
      .limit(limit);
    return rows.map(toTrainingStep);
  }

  async close(): Promise<void> {
    this.#ctx.client.close();
  }
}
