// Riding out a remote libSQL server's restarts and lock contention. A store on `http://` or
// `libsql://` talks to sqld over HTTP; while the server restarts, requests fail with connection
// errors, and when many clients write at once sqld answers SQLITE_BUSY instead of waiting for
// the lock (a local file waits on its busy timeout). The client is wrapped so that `execute` and
// `batch` retry both with backoff for a bounded time instead of failing the caller (a trainer, a
// recorder flushing LLM calls, a claim). A BUSY batch did nothing: BEGIN IMMEDIATE failed first.
//
// A retried batch is re-sent unchanged. When the connection broke after the server received it,
// the first send may have committed: record inserts (rollouts, spans, transitions, rewards) carry
// client-made ids with ON CONFLICT(id) DO NOTHING and read their rows back by id, so the re-send
// writes nothing twice; a claim finds the attempt id its first send created, and a finish the
// status and time its first send wrote. See docs/store.md ("A server restart mid-run").
import type { Client } from "@libsql/client";
import { sleep } from "./context.ts";

export interface RemoteRetryOptions {
  /** How long one call keeps retrying connection failures before it throws, ms (default 60 s). */
  retryForMs?: number;
  /** Called before each retry (for logs). */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
]);

/**
 * Whether `error` says the server could not be reached or dropped the connection (worth
 * retrying), as opposed to an answer about the statements (a constraint, a syntax error, auth).
 */
export function isConnectionError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    const { code, message, cause } = e as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof code === "string" && CONNECTION_CODES.has(code)) return true;
    // undici reports "fetch failed" with the socket error as its cause; sqld behind a proxy
    // answers 502-504 while it is down; a restarted sqld answers 404 for a Hrana stream it no
    // longer knows (nothing ran on it).
    if (code === "SERVER_ERROR" && typeof message === "string" && /status (404|502|503|504)\b/.test(message))
      return true;
    e = cause;
  }
  return false;
}

/** Whether `error` is SQLite's "database is locked" (another writer holds the lock; nothing ran). */
export function isBusyError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "SQLITE_BUSY" || code === "SQLITE_LOCKED";
}

/**
 * Write batches in flight per server URL in this process, as a chain: each runs after the one
 * before has settled. sqld (0.24.32) was seen to wedge for good, writes hanging while reads still
 * answered, with 16 write transactions contending at once; SQLite runs one writer at a time
 * anyway, so queueing them here costs little and keeps the contention at sqld to one writer per
 * process.
 */
const writeChains = new Map<string, Promise<void>>();

function oneWriteAtATime<R>(key: string, run: () => Promise<R>): Promise<R> {
  const result = (writeChains.get(key) ?? Promise.resolve()).then(run);
  const settled = result.then(
    () => undefined,
    () => undefined,
  );
  writeChains.set(key, settled);
  void settled.then(() => {
    if (writeChains.get(key) === settled) writeChains.delete(key);
  });
  return result;
}

/**
 * `client` with `execute` and `batch` retried on connection errors (exponential backoff, capped
 * at 2 s) and on lock contention (short random waits, so contending writers spread out). Write
 * batches to the same `url` from this process run one at a time.
 */
export function retryingClient(client: Client, options: RemoteRetryOptions = {}, url = ""): Client {
  const retryForMs = options.retryForMs ?? 60_000;
  const withRetry =
    <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const deadline = Date.now() + retryForMs;
      for (let attempt = 1; ; attempt++) {
        try {
          return await call(...args);
        } catch (error) {
          const busy = isBusyError(error);
          const delayMs = busy ? 2 + Math.random() * Math.min(100, 5 * attempt) : Math.min(2_000, 25 * 2 ** attempt);
          if (!(busy || isConnectionError(error)) || Date.now() + delayMs > deadline) throw error;
          options.onRetry?.(error, attempt, delayMs);
          await sleep(delayMs);
        }
      }
    };
  const execute = withRetry(client.execute.bind(client) as (...args: unknown[]) => Promise<unknown>);
  const retriedBatch = withRetry(client.batch.bind(client) as (...args: unknown[]) => Promise<unknown>);
  const batch = (...args: unknown[]) =>
    args[1] === "read" ? retriedBatch(...args) : oneWriteAtATime(url, () => retriedBatch(...args));
  return new Proxy(client, {
    get(target, prop) {
      if (prop === "execute") return execute;
      if (prop === "batch") return batch;
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
