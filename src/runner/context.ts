// Builds the AgentContext for one attempt: rewards and spans go to the store under the attempt,
// nested ctx.span calls get parent span ids through AsyncLocalStorage, and every write is tracked
// so the runner can wait for them before finishing the attempt (keeping them on time, not "late").
import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";
import { isJsonValue } from "../store/inputs.ts";
import type { JsonValue, SpanKind, Store } from "../store/types.ts";
import type { GroupJudge, GroupVerdict } from "./judge-group.ts";
import type { AgentContext, AgentJudge, AgentJudgeOptions, EmitRewardOptions, LlmEndpoint } from "./types.ts";

/** Span kinds an agent may choose for its own spans; llm/reward/exception are written by Fulgur. */
const AGENT_SPAN_KINDS = new Set<SpanKind>(["tool", "message", "custom"]);

export interface AttemptContextOptions {
  store: Store;
  rolloutId: string;
  attemptId: string;
  mode: AgentContext["mode"];
  llm: LlmEndpoint;
  signal: AbortSignal;
  resources: unknown | null;
  /** The rollout's GRPO group (default none). */
  groupId?: string | null;
  /** Where ctx.judge sends its work (the Runner's); without one ctx.judge throws. */
  judge?: GroupJudge | null;
}

/** An AgentContext plus what the runner needs to settle the attempt. */
export interface AttemptContext {
  ctx: AgentContext;
  /** Resolves once every reward/span write started so far has been answered (errors swallowed). */
  settle(): Promise<void>;
  /** The last reward emitted through ctx.emitReward, if any. */
  lastReward(): number | null;
}

/** A random 16-hex-digit OpenTelemetry span id. */
export function newSpanId(): string {
  return randomBytes(8).toString("hex");
}

/** Attributes as JSON: values that are not JSON (functions, class instances, NaN) become strings. */
export function toJsonAttributes(attributes: Record<string, unknown>): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined) continue;
    out[key] = isJsonValue(value) ? value : String(value);
  }
  return out;
}

/** Creates the context handed to the agent for one attempt. */
export function createAttemptContext(options: AttemptContextOptions): AttemptContext {
  const { store, rolloutId, attemptId } = options;
  const parents = new AsyncLocalStorage<string>();
  const pending = new Set<Promise<unknown>>();
  let lastReward: number | null = null;

  const track = <T>(write: Promise<T>): Promise<T> => {
    const settled = write.then(
      () => undefined,
      () => undefined,
    );
    pending.add(settled);
    void settled.then(() => pending.delete(settled));
    return write;
  };

  const emitReward = async (
    value: number,
    dimensions?: Record<string, number>,
    options?: EmitRewardOptions,
  ): Promise<void> => {
    if (typeof value !== "number" || !Number.isFinite(value)) {
      throw new Error(`ctx.emitReward: reward must be a finite number, got ${String(value)}`);
    }
    if (dimensions !== undefined) {
      for (const [name, v] of Object.entries(dimensions)) {
        if (typeof v !== "number" || !Number.isFinite(v)) {
          throw new Error(`ctx.emitReward: dimension "${name}" must be a finite number, got ${String(v)}`);
        }
      }
    }
    const call = options?.call;
    if (call !== undefined && (typeof call !== "string" || call.length === 0 || call.length > 200)) {
      throw new Error(`ctx.emitReward: options.call must be a completion id (1..200 characters), got ${String(call)}`);
    }
    lastReward = value;
    const now = Date.now();
    const spanId = newSpanId();
    const attributes: Record<string, JsonValue> = { "reward.value": value };
    if (dimensions) attributes["reward.dimensions"] = dimensions;
    // Dense credit (src/trainer/reward-events.ts) reads which call this reward is for.
    if (call !== undefined) attributes["reward.call"] = call;
    // Span first, then the reward row pointing at it; sequential so the store order is span, reward.
    await track(
      (async () => {
        await store.addSpans([
          {
            attemptId,
            rolloutId,
            spanId,
            parentSpanId: parents.getStore() ?? null,
            name: "reward",
            kind: "reward",
            startTime: now,
            endTime: now,
            attributes,
            status: { code: "ok" },
          },
        ]);
        await store.addRewards([{ attemptId, rolloutId, spanId, value, dimensions: dimensions ?? null }]);
      })(),
    );
  };

  const span = async <T>(name: string, fn: () => Promise<T> | T, attributes: Record<string, unknown> = {}) => {
    if (typeof name !== "string" || name.length === 0) throw new Error("ctx.span: name must be a non-empty string");
    if (typeof fn !== "function") throw new Error(`ctx.span("${name}"): expected a function to run inside the span`);
    const { kind: requestedKind, ...rest } = attributes;
    let kind: SpanKind = "custom";
    if (requestedKind !== undefined) {
      if (!AGENT_SPAN_KINDS.has(requestedKind as SpanKind)) {
        throw new Error(
          `ctx.span("${name}"): kind must be "tool", "message" or "custom", got ${String(requestedKind)}`,
        );
      }
      kind = requestedKind as SpanKind;
    }
    const spanId = newSpanId();
    const parentSpanId = parents.getStore() ?? null;
    const startTime = Date.now();
    const write = (
      status: { code: "ok" | "error"; message?: string },
      events: { name: string; time: number; attributes?: Record<string, JsonValue> }[],
    ) =>
      track(
        store.addSpans([
          {
            attemptId,
            rolloutId,
            spanId,
            parentSpanId,
            name,
            kind,
            startTime,
            endTime: Date.now(),
            attributes: toJsonAttributes(rest),
            events,
            status,
          },
        ]),
      );
    let result: T;
    try {
      result = await parents.run(spanId, fn);
    } catch (error) {
      const err = error instanceof Error ? error : new Error(String(error));
      const exception: Record<string, JsonValue> = { "exception.type": err.name, "exception.message": err.message };
      if (err.stack) exception["exception.stacktrace"] = err.stack;
      await write({ code: "error", message: err.message }, [
        { name: "exception", time: Date.now(), attributes: exception },
      ]);
      throw error;
    }
    await write({ code: "ok" }, []);
    return result;
  };

  const groupId = options.groupId ?? null;
  const groups = options.judge ?? null;
  /** Runs one judging and writes a "judge" span with its verdict (or its error). */
  const judged = async (
    mode: "relative" | "rubric",
    options: AgentJudgeOptions,
    get: (g: GroupJudge) => Promise<GroupVerdict>,
  ) => {
    if (!groups) throw new Error("ctx.judge: this context has no judge (contexts made by a Runner have one)");
    const spanId = newSpanId();
    const parentSpanId = parents.getStore() ?? null;
    const startTime = Date.now();
    const attributes: Record<string, JsonValue> = {
      "judge.model": (options.judge ?? groups.judge).model,
      "judge.mode": mode,
    };
    const write = (status: { code: "ok" | "error"; message?: string }) =>
      track(
        store.addSpans([
          {
            attemptId,
            rolloutId,
            spanId,
            parentSpanId,
            name: "judge",
            kind: "custom",
            startTime,
            endTime: Date.now(),
            attributes,
            status,
          },
        ]),
      );
    let verdict: GroupVerdict;
    try {
      verdict = await get(groups);
    } catch (error) {
      await write({ code: "error", message: error instanceof Error ? error.message : String(error) });
      throw error;
    }
    Object.assign(attributes, {
      "judge.score": verdict.score,
      "judge.reward": verdict.reward,
      "judge.reason": verdict.reason,
      "judge.candidates": verdict.candidates,
    });
    await write({ code: "ok" });
    return verdict.reward;
  };
  const alone = (g: GroupJudge, task: unknown, trajectory: unknown, o: AgentJudgeOptions) =>
    (o.judge ?? g.judge)
      .score(task, trajectory, { signal: options.signal, ...(o.rubric === undefined ? {} : { rubric: o.rubric }) })
      .then((v) => ({ ...v, candidates: 1 }));
  const judge: AgentJudge = {
    relative: (task, trajectory, o = {}) =>
      judged(groupId ? "relative" : "rubric", o, (g) =>
        groupId
          ? g.submit({ groupId, rolloutId, task, trajectory, signal: options.signal, judge: o.judge, rubric: o.rubric })
          : alone(g, task, trajectory, o),
      ),
    score: (task, trajectory, o = {}) => judged("rubric", o, (g) => alone(g, task, trajectory, o)),
  };

  const ctx: AgentContext = {
    rolloutId,
    attemptId,
    groupId,
    mode: options.mode,
    llm: options.llm,
    emitReward,
    span,
    signal: options.signal,
    resources: options.resources,
    judge,
  };
  return {
    ctx,
    async settle() {
      while (pending.size > 0) await Promise.all([...pending]);
    },
    lastReward: () => lastReward,
  };
}
