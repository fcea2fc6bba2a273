// Records every proxied LLM call in the store without slowing the response: calls are queued
// and written in batches (one transaction per flush), each choice as a transition with its exact
// token ids and logprobs, plus an "llm" span on the attempt's trace when the call is attributed.
// Nothing is dropped: a batch the store rejects for a bad attribution (unknown rollout/attempt) is
// re-recorded unattributed with the requested ids in its metadata; transient failures are retried.

import { NotFoundError, StoreValidationError } from "../store/errors.ts";
import type { JsonValue, SpanInput, Store, TransitionInput } from "../store/types.ts";
import type { RecordedCall, Recorder } from "./backend.ts";

export interface StoreRecorderOptions {
  /**
   * Flush when this many transitions are queued (default 1000). Large batches are what make
   * recording cheap: each flush is a transaction with fixed costs (attribution lookups, activity
   * updates, the commit), so per-call CPU falls as batches grow.
   */
  batchSize?: number;
  /**
   * Flush at least this often (ms, default 250). Nothing waits on it: finishing an attempt and
   * shutting down flush first, so readers of a finished rollout always see its calls.
   */
  intervalMs?: number;
  /** Called with write errors that will be retried (default: console.error). */
  onError?: (err: unknown) => void;
}

interface Pending {
  transitions: TransitionInput[];
  spans: SpanInput[];
}

export class StoreRecorder implements Recorder {
  private readonly store: Store;
  private readonly batchSize: number;
  private readonly intervalMs: number;
  private readonly onError: (err: unknown) => void;
  private queue: Pending[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private flushing: Promise<void> | null = null;
  /** Calls recorded and written so far. */
  readonly stats = { calls: 0, transitions: 0, spans: 0, retries: 0, reattributed: 0 };

  constructor(store: Store, options: StoreRecorderOptions = {}) {
    this.store = store;
    this.batchSize = options.batchSize ?? 1000;
    this.intervalMs = options.intervalMs ?? 250;
    this.onError = options.onError ?? ((err) => console.error(`[fulgur] recording failed, will retry: ${String(err)}`));
  }

  record(call: RecordedCall): void {
    this.queue.push(toRecords(call));
    this.stats.calls++;
    const queued = this.queue.reduce((n, p) => n + p.transitions.length, 0);
    if (queued >= this.batchSize) void this.flush();
    else if (!this.timer) this.timer = setTimeout(() => void this.flush(), this.intervalMs);
  }

  /** Writes everything queued; resolves when the store has it (used by graceful shutdown). */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    while (this.flushing) await this.flushing;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.flushing = this.write(batch).finally(() => {
      this.flushing = null;
    });
    await this.flushing;
    if (this.queue.length > 0) await this.flush();
  }

  private async write(batch: Pending[], attempt = 0): Promise<void> {
    try {
      await this.writeTransitions(batch.map((p) => p.transitions));
      await this.writeSpans(batch.map((p) => p.spans));
    } catch (err) {
      if (attempt >= 5) throw err;
      this.stats.retries++;
      this.onError(err);
      await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
      // Transitions already written are not written again: only what remains is retried.
      await this.write(batch, attempt + 1);
    }
  }

  /** All calls' transitions in one transaction; call by call when one has a bad attribution. */
  private async writeTransitions(perCall: TransitionInput[][]): Promise<void> {
    const all = perCall.flat();
    if (all.length === 0) return;
    try {
      await this.store.addTransitions(all);
      this.stats.transitions += all.length;
    } catch (err) {
      if (!isBadAttribution(err)) throw err;
      for (const list of perCall) {
        await this.writeCallTransitions(list);
        list.length = 0;
      }
    }
    for (const list of perCall) list.length = 0;
  }

  private async writeCallTransitions(list: TransitionInput[]): Promise<void> {
    if (list.length === 0) return;
    try {
      await this.store.addTransitions(list);
    } catch (err) {
      if (!isBadAttribution(err)) throw err;
      this.stats.reattributed++;
      await this.store.addTransitions(
        list.map((t) => ({
          ...t,
          rolloutId: null,
          attemptId: null,
          metadata: {
            ...(t.metadata ?? {}),
            requestedRolloutId: t.rolloutId ?? null,
            requestedAttemptId: t.attemptId ?? null,
            attributionError: String((err as Error).message),
          },
        })),
      );
    }
    this.stats.transitions += list.length;
  }

  /** Spans need a real attempt; a span of an unknown attempt is skipped (its transition stays). */
  private async writeSpans(perCall: SpanInput[][]): Promise<void> {
    const all = perCall.flat();
    if (all.length === 0) return;
    try {
      await this.store.addSpans(all);
      this.stats.spans += all.length;
    } catch (err) {
      if (!isBadAttribution(err)) throw err;
      for (const list of perCall) {
        if (list.length === 0) continue;
        try {
          await this.store.addSpans(list);
          this.stats.spans += list.length;
        } catch (inner) {
          if (!isBadAttribution(inner)) throw inner;
        }
        list.length = 0;
      }
    }
    for (const list of perCall) list.length = 0;
  }
}

function isBadAttribution(err: unknown): boolean {
  return err instanceof NotFoundError || err instanceof StoreValidationError;
}

/** One call → its transitions (one per choice) and, when attributed, one span. */
export function toRecords(call: RecordedCall): Pending {
  const base = {
    rolloutId: call.rolloutId,
    attemptId: call.attemptId,
    model: call.model,
    adapterVersion: call.adapterVersion === null ? null : String(call.adapterVersion),
  };
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
