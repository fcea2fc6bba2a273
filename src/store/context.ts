// Shared plumbing of the libSQL store's modules (libsql.ts, queue.ts, records.ts): the
// connection, the drizzle handle, the clock, and the one way writes happen — a libSQL batch run
// as BEGIN IMMEDIATE, never an interactive transaction, so no lock is held across an `await`.
import type { Client, InArgs, InStatement } from "@libsql/client";
import type { SQL } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { LibSQLDatabase } from "drizzle-orm/libsql";
import type { SQLiteSyncDialect } from "drizzle-orm/sqlite-core";
import type * as schema from "./schema.ts";

export type Db = LibSQLDatabase<typeof schema>;

export interface StoreContext {
  client: Client;
  /** Drizzle over a client whose batches default to BEGIN IMMEDIATE. */
  db: Db;
  /** Renders drizzle SQL fragments for statements sent to the client directly. */
  dialect: SQLiteSyncDialect;
  /** Epoch ms for timestamps, heartbeats and expiry. */
  clock: () => number;
  /** Store-clock time of this client's last sweep inside a claim. */
  lastClaimSweep: number;
}

/** Rows per multi-row INSERT (SQLite allows 32766 bound parameters per statement). */
export const INSERT_CHUNK = 500;

/** Runs drizzle queries as one write transaction; returns each query's mapped result. */
export async function write(ctx: StoreContext, items: BatchItem<"sqlite">[]): Promise<unknown[]> {
  if (items.length === 0) return [];
  return (await ctx.db.batch(items as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]])) as unknown[];
}

/** A drizzle SQL fragment as a plain libSQL statement. */
export function toStatement(ctx: StoreContext, fragment: SQL): InStatement {
  const { sql, params } = ctx.dialect.sqlToQuery(fragment);
  return { sql, args: params as InArgs };
}

export function jsonOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}

export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
