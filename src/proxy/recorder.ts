// Records every proxied LLM call in the store, each choice as a transition with its exact token
// ids and logprobs, plus an "llm" span on the attempt's trace when the call is attributed.
//
// Durable mode (the default) is group commit: `record()` returns a promise that settles when the
// call's batch is committed, and the routes hold the response (or a stream's last chunk) until
// then, so an answered call is a stored call — a kill -9 right after a 200 loses nothing. Calls
// that arrive while a batch is being written form the next batch, so batches grow with load.
// Async mode (the previous behaviour, kept for comparison) answers first and writes within
// `intervalMs`.
//
// Nothing takes the process down and nothing is dropped silently:
// - a batch the store rejects is split call by call; a call with a bad attribution (unknown or
//   malformed rollout/attempt) is re-recorded unattributed with the requested ids in metadata;
//   a call the store still rejects is dead-lettered (kept in memory and appended to the
//   dead-letter file, counted, logged, shown in /health) and the rest of its batch is written;
// - a storage fault (read-only or deleted file, disk full, I/O error) is retried briefly, then
//   the batch's callers get the error (the routes answer 503) and `health()` reports it until a
//   write succeeds again; the batch's records go to the dead-letter file when it can take them.

import { appendFileSync } from "node:fs";
import { ConflictError, NotFoundError, StoreError, StoreValidationError } from "../store/errors.ts";
import { StorageFaultError } from "../store/file-guard.ts";
import type { JsonValue, SpanInput, Store, TransitionInput } from "../store/types.ts";
import type { RecordedCall, Recorder } from "./backend.ts";

export { StorageFaultError };

export interface StoreRecorderOptions {
  /**
   * "durable" (default): `record()` resolves once the call is committed (group commit).
   * "async": `record()` returns at once and the write happens within `intervalMs`.
   */
  mode?: "durable" | "async";
  /**
   * Most transitions in one write (default 1000). Large batches are what make recording cheap:
   * each flush is a transaction with fixed costs (attribution lookups, activity updates, the
   * commit), so per-call CPU falls as batches grow.
   */
  batchSize?: number;
  /** Async mode: flush at least this often (ms, default 250). */
  intervalMs?: number;
  /** Where dead-lettered records are appended as JSON lines (default: kept in memory only). */
  deadLetterPath?: string | null;
  /**
   * Checked before every write (e.g. that the store file is still the one opened); a throw is a
   * storage fault.
   */
  guard?: () => void;
  /** Log sink for faults and dead letters (default: console.error). */
  onError?: (message: string) => void;
}

/** What `/health` shows about recording. */
export interface RecorderHealth {
  ok: boolean;
  mode: "durable" | "async";
  /** Calls queued or being written. */
  pending: number;
  /** Calls whose records could not be stored (kept in the dead-letter list/file). */
  deadLettered: number;
  /** Writes that failed with a storage fault since start. */
  failedWrites: number;
  /** The storage fault that makes recording unhealthy now (null when the last write succeeded). */
  fault: string | null;
  deadLetterPath: string | null;
}

interface Pending {
  transitions: TransitionInput[];
  spans: SpanInput[];
}

interface Entry {
  records: Pending;
  callId: string;
  done?: { resolve: () => void; reject: (err: Error) => void };
}

/** A dead-lettered call: its records and why the store refused them. */
export interface DeadLetter {
  callId: string;
  reason: string;
  at: number;
  records: Pending;
}

const MAX_DEAD_LETTERS_IN_MEMORY = 1000;
const FAULT_RETRIES = 3;

export class StoreRecorder implements Recorder {
  private readonly store: Store;
  private readonly mode: "durable" | "async";
  private readonly batchSize: number;
  private readonly intervalMs: number;
  private readonly deadLetterPath: string | null;
  private readonly guard: (() => void) | null;
  private readonly log: (message: string) => void;
  private queue: Entry[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private flushing: Promise<void> | null = null;
  private fault: string | null = null;
  /** The most recent dead letters (all of them are in the file when there is one). */
  readonly deadLetters: DeadLetter[] = [];
  /** Calls recorded and written so far. */
  readonly stats = {
    calls: 0,
    transitions: 0,
    spans: 0,
    retries: 0,
    reattributed: 0,
    deadLettered: 0,
    failedWrites: 0,
    batches: 0,
  };

  constructor(store: Store, options: StoreRecorderOptions = {}) {
    this.store = store;
    this.mode = options.mode ?? "durable";
    this.batchSize = options.batchSize ?? 1000;
    this.intervalMs = options.intervalMs ?? 250;
    this.deadLetterPath = options.deadLetterPath ?? null;
    this.guard = options.guard ?? null;
    this.log = options.onError ?? ((message) => console.error(`[fulgur] ${message}`));
  }

  /**
   * Queues a call. Durable mode: resolves when it is committed (or dead-lettered), rejects with
   * a StorageFaultError when the store cannot take it. Async mode: resolves at once.
   */
  record(call: RecordedCall): Promise<void> {
    const entry: Entry = { records: toRecords(call), callId: call.id };
    this.stats.calls++;
    if (this.mode === "async") {
      this.queue.push(entry);
      const queued = this.queue.reduce((n, e) => n + e.records.transitions.length, 0);
      if (queued >= this.batchSize) this.kick();
      else if (!this.timer) this.timer = setTimeout(() => this.kick(), this.intervalMs);
      return Promise.resolve();
    }
    const done = new Promise<void>((resolve, reject) => {
      entry.done = { resolve, reject };
    });
    this.queue.push(entry);
    // Group commit: write now if idle; otherwise this call joins the batch after the current one.
    if (!this.flushing) this.kick();
    return done;
  }

  health(): RecorderHealth {
    let fault = this.fault;
    if (!fault && this.guard) {
      try {
        this.guard();
      } catch (err) {
        fault = errorText(err);
      }
    }
    return {
      ok: fault === null,
      mode: this.mode,
      pending: this.queue.length,
      deadLettered: this.stats.deadLettered,
      failedWrites: this.stats.failedWrites,
      fault,
      deadLetterPath: this.deadLetterPath,
    };
  }

  /** Background flush: failures are already reported to the callers and in `health()`. */
  private kick(): void {
    this.flush().catch((err) => this.log(`recording failed: ${errorText(err)}`));
  }

  /**
   * Writes everything queued; resolves when the store has it (used by graceful shutdown and
   * before finishing an attempt). Rejects with the storage fault when a batch could not be
   * written (those calls' callers were told too).
   */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    let failure: unknown = null;
    for (;;) {
      while (this.flushing) await this.flushing;
      if (this.queue.length === 0) break;
      const batch = this.takeBatch();
      this.flushing = this.write(batch)
        .catch((err) => {
          failure = err;
        })
        .finally(() => {
          this.flushing = null;
        });
      await this.flushing;
    }
    if (failure) throw failure;
  }

  private takeBatch(): Entry[] {
    let n = 0;
    let i = 0;
    while (i < this.queue.length && (i === 0 || n + this.queue[i].records.transitions.length <= this.batchSize)) {
      n += this.queue[i].records.transitions.length;
      i++;
    }
    return this.queue.splice(0, i);
  }

  /** One batch: committed → callers released; data problems → dead letters; faults → callers rejected. */
  private async write(batch: Entry[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        this.guard?.();
        await this.writeBatch(batch);
        this.stats.batches++;
        if (this.fault) this.log(`recording recovered after: ${this.fault}`);
        this.fault = null;
        for (const e of batch) e.done?.resolve();
        return;
      } catch (err) {
        if (attempt < FAULT_RETRIES && !(err instanceof StorageFaultError)) {
          this.stats.retries++;
          await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
          continue;
        }
        const fault =
          err instanceof StorageFaultError
            ? err
            : new StorageFaultError(`the store could not write call records: ${errorText(err)}`, { cause: err });
        this.fault = fault.message;
        this.stats.failedWrites++;
        this.log(`${fault.message} (${batch.length} calls not recorded; kept in the dead-letter list)`);
        for (const e of batch) if (e.records.transitions.length > 0) this.deadLetter(e, fault.message);
        for (const e of batch) e.done?.reject(fault);
        throw fault;
      }
    }
  }

  private async writeBatch(batch: Entry[]): Promise<void> {
    const all = batch.flatMap((e) => e.records.transitions);
    if (all.length > 0) {
      try {
        await this.store.addTransitions(all);
        this.stats.transitions += all.length;
        for (const e of batch) e.records.transitions = [];
      } catch (err) {
        if (!isDataError(err)) throw err;
        // One call's data (or attribution) spoils the batch: write call by call.
        for (const e of batch) await this.writeCall(e);
      }
    }
    const spans = batch.flatMap((e) => e.records.spans);
    if (spans.length === 0) return;
    try {
      await this.store.addSpans(spans);
      this.stats.spans += spans.length;
    } catch (err) {
      if (!isDataError(err)) throw err;
      // Spans need a live attempt; a span the store refuses is skipped (its transition stays).
      for (const e of batch) {
        if (e.records.spans.length === 0) continue;
        try {
          await this.store.addSpans(e.records.spans);
          this.stats.spans += e.records.spans.length;
        } catch (inner) {
          if (!isDataError(inner)) throw inner;
        }
      }
    }
    for (const e of batch) e.records.spans = [];
  }

  private async writeCall(e: Entry): Promise<void> {
    const list = e.records.transitions;
    if (list.length === 0) return;
    try {
      await this.store.addTransitions(list);
      this.stats.transitions += list.length;
      e.records.transitions = [];
      return;
    } catch (err) {
      if (!isDataError(err)) throw err;
      const attributed = list.some((t) => t.rolloutId != null || t.attemptId != null);
      if (!attributed) return this.deadLetter(e, errorText(err));
      try {
        await this.store.addTransitions(unattributed(list, err));
        this.stats.reattributed++;
        this.stats.transitions += list.length;
        e.records.transitions = [];
        e.records.spans = [];
      } catch (inner) {
        if (!isDataError(inner)) throw inner;
        this.deadLetter(e, errorText(inner));
      }
    }
  }

  /** Keeps a call the store would not take: counted, logged, in memory and in the file. */
  private deadLetter(e: Entry, reason: string): void {
    const letter: DeadLetter = { callId: e.callId, reason, at: Date.now(), records: e.records };
    this.stats.deadLettered++;
    this.deadLetters.push(letter);
    if (this.deadLetters.length > MAX_DEAD_LETTERS_IN_MEMORY) this.deadLetters.shift();
    this.log(`call ${e.callId} could not be stored and was dead-lettered: ${reason}`);
    if (this.deadLetterPath) {
      try {
        appendFileSync(this.deadLetterPath, `${JSON.stringify(letter, jsonArrays)}\n`);
      } catch (err) {
        this.log(`dead-letter file ${this.deadLetterPath} not writable: ${errorText(err)}`);
      }
    }
    e.records = { transitions: [], spans: [] };
  }
}

/** The store refused the data itself (retrying cannot help; splitting the batch can). */
function isDataError(err: unknown): boolean {
  return err instanceof StoreValidationError || err instanceof NotFoundError || err instanceof ConflictError;
}

function unattributed(list: TransitionInput[], err: unknown): TransitionInput[] {
  return list.map((t) => ({
    ...t,
    rolloutId: null,
    attemptId: null,
    metadata: {
      ...(t.metadata ?? {}),
      requestedRolloutId: typeof t.rolloutId === "string" ? t.rolloutId.slice(0, 1000) : null,
      requestedAttemptId: typeof t.attemptId === "string" ? t.attemptId.slice(0, 1000) : null,
      attributionError: errorText(err),
    },
  }));
}

function errorText(err: unknown): string {
  if (err instanceof StoreError || err instanceof Error) return err.message;
  return String(err);
}

/** Typed arrays (token ids, logprobs) as plain JSON arrays in dead-letter lines. */
function jsonArrays(_key: string, value: unknown): unknown {
  return ArrayBuffer.isView(value) ? Array.from(value as unknown as ArrayLike<number>) : value;
}

/** One call → its transitions (one per choice) and, when attributed, one span. */
export function toRecords(call: RecordedCall): Pending {
  const base = {
    rolloutId: call.rolloutId,
    attemptId: call.attemptId,
    model: call.model,
    adapterVersion: call.adapterVersion === null ? null : String(call.adapterVersion),
  };
  // Multi-agent: the named adapter that generated (its version is adapterVersion); trainers of
  // adapter "name" select the calls that carry it.
  const adapter = call.outcome?.adapter ?? null;
  const sampling = call.request.sampling as unknown as JsonValue;
  const timings = call.timings as unknown as JsonValue;
  const error = call.error as unknown as JsonValue;
  const transitions: TransitionInput[] = [];
  if (call.kind === "chat") {
    const messages = call.request.messages as unknown as JsonValue[];
    const tools = (call.request.tools ?? null) as unknown as JsonValue;
    const outcome = call.outcome;
    for (const choice of outcome?.choices ?? []) {
      transitions.push({
        ...base,
        promptIds: outcome?.promptTokenIds ?? [],
        responseIds: choice.tokenIds ?? [],
        responseLogprobs: choice.logprobs && choice.tokenIds ? choice.logprobs.map((l) => l.logprob) : null,
        messages,
        response: {
          role: "assistant",
          content: choice.content,
          ...(choice.toolCalls.length > 0 ? { tool_calls: choice.toolCalls as unknown as JsonValue } : {}),
        },
        finishReason: choice.finishReason,
        usage: { promptTokens: outcome?.usage.promptTokens ?? 0, completionTokens: choice.tokenIds?.length ?? 0 },
        metadata: {
          callId: call.id,
          kind: "chat",
          choice: choice.index,
          text: choice.text,
          // The OpenAI `user` field names the agent in multi-agent rollouts (trainer filter).
          agent: call.request.user,
          adapter,
          tools,
          sampling,
          timings,
          error,
          ...constrainedMetadata(choice),
        },
      });
    }
    if (!outcome) {
      transitions.push({
        ...base,
        promptIds: [],
        responseIds: [],
        messages,
        metadata: { callId: call.id, kind: "chat", tools, sampling, timings, error },
      });
    }
  } else {
    const outcome = call.outcome;
    for (const choice of outcome?.choices ?? []) {
      transitions.push({
        ...base,
        promptIds: outcome?.promptTokenIds[choice.promptIndex] ?? [],
        responseIds: choice.tokenIds ?? [],
        responseLogprobs: choice.logprobs && choice.tokenIds ? choice.logprobs.map((l) => l.logprob) : null,
        messages: [],
        response: choice.text,
        finishReason: choice.finishReason,
        usage: {
          promptTokens: outcome?.promptTokenIds[choice.promptIndex]?.length ?? 0,
          completionTokens: choice.tokenIds?.length ?? 0,
        },
        metadata: {
          callId: call.id,
          kind: "completion",
          choice: choice.index,
          adapter,
          sampling,
          timings,
          error,
          ...constrainedMetadata(choice),
        },
      });
    }
    if (!outcome) {
      transitions.push({
        ...base,
        promptIds: [],
        responseIds: [],
        metadata: { callId: call.id, kind: "completion", sampling, timings, error },
      });
    }
  }
  const spans: SpanInput[] = [];
  if (call.attemptId) {
    spans.push({
      attemptId: call.attemptId,
      name: call.kind === "chat" ? "llm.chat.completions" : "llm.completions",
      kind: "llm",
      startTime: call.startedAt,
      endTime: call.startedAt + call.timings.totalMs,
      attributes: {
        callId: call.id,
        model: call.model,
        choices: transitions.length,
        promptTokens: call.outcome?.usage.promptTokens ?? 0,
        completionTokens: call.outcome?.usage.completionTokens ?? 0,
      },
      status: call.error ? { code: "error", message: call.error.message } : { code: "ok" },
    });
  }
  return { transitions, spans };
}

/**
 * The store as seen by whoever finishes attempts (runners, over HTTP or in-process): finishing an
 * attempt first writes every queued call, so "rollout finished" implies "its LLM calls are in the
 * store" — the trainer reads transitions right after a rollout ends.
 */
export function flushingBeforeFinish(store: Store, recorder: StoreRecorder): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === "flushesCallRecordsBeforeFinish") return true;
      if (prop === "finishAttempt") {
        return async (...args: Parameters<Store["finishAttempt"]>) => {
          await recorder.flush();
          return target.finishAttempt(...args);
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/**
 * A constrained choice's record: which constraint, that `responseLogprobs` are under the masked
 * distribution, and the unmasked logprobs the trainer compares its recomputation with (see
 * docs/trainer.md, "Constrained transitions").
 */
function constrainedMetadata(choice: {
  constrained?: string;
  unmaskedLogprobs?: number[] | null;
}): Record<string, JsonValue> {
  if (!choice.constrained) return {};
  return {
    constrained: choice.constrained,
    logprobs: "masked",
    unmaskedLogprobs: choice.unmaskedLogprobs ?? null,
  };
}
