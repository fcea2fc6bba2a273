// The Store contract: the `Store` interface every implementation (libSQL, HTTP client) provides,
// its statuses and the records it returns. Input types come from the zod schemas in inputs.ts.
import type {
  ClaimInput,
  EnqueueRolloutInput,
  FinishAttemptInput,
  ListRolloutsQuery,
  RewardInput,
  RewardQuery,
  SpanInput,
  SpanQuery,
  TrainingStepInput,
  TrainingStepQuery,
  TransitionInput,
  TransitionQuery,
  WaitOptions,
} from "./inputs.ts";

export type {
  ClaimInput,
  EnqueueRolloutInput,
  FinishAttemptInput,
  ListRolloutsQuery,
  RewardInput,
  RewardQuery,
  SpanInput,
  SpanQuery,
  TrainingStepInput,
  TrainingStepQuery,
  TransitionInput,
  TransitionQuery,
  WaitOptions,
};

export const ROLLOUT_MODES = ["train", "val", "test"] as const;
export const ROLLOUT_STATUSES = [
  "queuing",
  "preparing",
  "running",
  "succeeded",
  "failed",
  "cancelled",
  "requeuing",
] as const;
export const ATTEMPT_STATUSES = ["preparing", "running", "succeeded", "failed", "timeout", "unresponsive"] as const;
/** Statuses an attempt can be finished with. */
export const FINISH_STATUSES = ["succeeded", "failed", "timeout", "unresponsive"] as const;
/** Attempt outcomes that may earn the rollout another attempt (per rollout `config.retryOn`). */
export const RETRYABLE_STATUSES = ["failed", "timeout", "unresponsive"] as const;
/** Rollout statuses after which nothing changes any more. */
export const FINAL_ROLLOUT_STATUSES = ["succeeded", "failed", "cancelled"] as const;
export const SPAN_KINDS = ["llm", "tool", "reward", "message", "exception", "custom"] as const;

export type RolloutMode = (typeof ROLLOUT_MODES)[number];
export type RolloutStatus = (typeof ROLLOUT_STATUSES)[number];
export type AttemptStatus = (typeof ATTEMPT_STATUSES)[number];
export type FinishStatus = (typeof FINISH_STATUSES)[number];
export type RetryableStatus = (typeof RETRYABLE_STATUSES)[number];
export type SpanKind = (typeof SPAN_KINDS)[number];

/** Any JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

// ---------------------------------------------------------------------------------------------
// Records returned by the store.

export interface RolloutConfig {
  /** Attempts allowed in total, 1..100. */
  maxAttempts: number;
  /** An attempt running longer than this (since claim) is marked "timeout"; null = no limit. */
  timeoutMs: number | null;
  /** An attempt without heartbeat/activity for this long is marked "unresponsive"; null = never. */
  unresponsiveTimeoutMs: number | null;
  /** Attempt outcomes that requeue the rollout while attempts remain. */
  retryOn: RetryableStatus[];
}

export interface Rollout {
  id: string;
  input: JsonValue;
  mode: RolloutMode;
  /** GRPO group: rollouts of the same task whose rewards are normalised together. */
  groupId: string | null;
  status: RolloutStatus;
  /** Resources set the rollout runs with, and the version its latest attempt got (null before a claim unless pinned). */
  resourcesName: string | null;
  resourcesVersion: number | null;
  config: RolloutConfig;
  metadata: Record<string, JsonValue> | null;
  attemptCount: number;
  currentAttemptId: string | null;
  /** Reward of the final attempt, once the rollout has ended. */
  finalReward: number | null;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  endedAt: number | null;
}

export interface AttemptError {
  message: string;
  type?: string;
  stack?: string;
}

export interface Attempt {
  id: string;
  rolloutId: string;
  /** 1..maxAttempts. */
  attemptNo: number;
  workerId: string;
  status: AttemptStatus;
  resourcesVersion: number | null;
  startedAt: number;
  /** Last heartbeat or write attributed to the attempt. */
  heartbeatAt: number;
  endedAt: number | null;
  error: AttemptError | null;
  /** Final reward: explicit at finish, else the last reward recorded on the attempt. */
  reward: number | null;
  /** A finish reported after the attempt had already ended: recorded, not applied. */
  lateFinish: { status: FinishStatus; error: AttemptError | null; at: number } | null;
}

export interface Claim {
  rollout: Rollout;
  attempt: Attempt;
  /**
   * The attempt-scoped token for the agent (LLM calls, spans and rewards of this attempt only),
   * present when the claim went through a server that requires an API key.
   */
  token?: string;
}

export interface SpanStatus {
  code: "unset" | "ok" | "error";
  message?: string;
}

export interface SpanEvent {
  name: string;
  time: number;
  attributes?: Record<string, JsonValue>;
}

/** OpenTelemetry-shaped trace record; times in epoch ms. */
export interface Span {
  id: string;
  rolloutId: string;
  attemptId: string;
  /** Per-attempt sequence number, 1, 2, 3…, assigned by the store. */
  seq: number;
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  name: string;
  kind: SpanKind;
  startTime: number;
  endTime: number | null;
  attributes: Record<string, JsonValue>;
  events: SpanEvent[];
  status: SpanStatus | null;
  /** Written after the attempt had ended. */
  late: boolean;
  createdAt: number;
}

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens?: number;
}

/** One LLM call as RL data: prompt tokens (state), response tokens (action) and their logprobs. */
export interface Transition {
  id: string;
  rolloutId: string | null;
  attemptId: string | null;
  spanId: string | null;
  promptIds: Uint32Array;
  responseIds: Uint32Array;
  /** One per response token, or null when the engine gave none. */
  responseLogprobs: Float32Array | null;
  /** The chat messages of the request. */
  messages: JsonValue[];
  /** The assistant message returned. */
  response: JsonValue | null;
  model: string | null;
  /** Adapter that generated the response, as the proxy names it (e.g. a resources version); null = base model. */
  adapterVersion: string | null;
  finishReason: string | null;
  usage: TokenUsage | null;
  metadata: Record<string, JsonValue> | null;
  late: boolean;
  createdAt: number;
}

/** What a transition write returns (the payload is not echoed back). */
export interface TransitionReceipt {
  id: string;
  rolloutId: string | null;
  attemptId: string | null;
  late: boolean;
}

export interface Reward {
  id: string;
  rolloutId: string;
  attemptId: string;
  spanId: string | null;
  value: number;
  dimensions: Record<string, number> | null;
  late: boolean;
  createdAt: number;
}

export interface ResourcesRecord {
  name: string;
  /** 1, 2, 3… per name. */
  version: number;
  value: JsonValue;
  createdAt: number;
}

export interface TrainingStep {
  id: number;
  step: number;
  metrics: Record<string, number>;
  createdAt: number;
}

export interface FinishResult {
  attempt: Attempt;
  rollout: Rollout;
  /** True when the attempt had already ended: the finish was recorded as `attempt.lateFinish` only. */
  late: boolean;
}

export interface SweepResult {
  timedOut: number;
  unresponsive: number;
  requeued: number;
  failed: number;
}

// ---------------------------------------------------------------------------------------------
// The interface.

/**
 * The LightningStore: the queue of rollouts and the record of what happened in them. Trainers
 * enqueue and wait; runners claim, heartbeat, record and finish; the proxy records LLM calls.
 * Every method validates its input and throws StoreValidationError / NotFoundError /
 * ConflictError (src/store/errors.ts) on bad input or state.
 */
export interface Store {
  /**
   * True on a view whose finishAttempt first writes the in-process proxy's pending call records
   * (`flushingBeforeFinish`): a runner then needs no settling wait before finishing attempts.
   */
  readonly flushesCallRecordsBeforeFinish?: boolean;
  /** Queues one rollout (status "queuing"). */
  enqueueRollout(input: EnqueueRolloutInput): Promise<Rollout>;
  /** Queues many rollouts in one transaction, in order. */
  enqueueRollouts(inputs: EnqueueRolloutInput[]): Promise<Rollout[]>;
  /**
   * Atomically claims the oldest queuing/requeuing rollout (optionally of one mode) for a worker,
   * creating its next attempt ("preparing"). Sweeps expired attempts first. Null when none queued.
   */
  claimRollout(input: ClaimInput): Promise<Claim | null>;
  /** Marks the attempt alive (and "running"). ConflictError "attempt_finished" if it already ended. */
  heartbeat(attemptId: string): Promise<Attempt>;
  /**
   * Ends an attempt. Success ends the rollout; a retryable failure with attempts left requeues it;
   * otherwise the rollout fails. On an attempt that already ended, records a late finish instead.
   */
  finishAttempt(attemptId: string, input: FinishAttemptInput): Promise<FinishResult>;
  /** Cancels a rollout that has not ended. ConflictError "rollout_finished" otherwise. */
  cancelRollout(rolloutId: string): Promise<Rollout>;
  /** Records spans; each gets the next per-attempt sequence number. Late writes are flagged. */
  addSpans(spans: SpanInput[]): Promise<Span[]>;
  /** Records LLM-call transitions in one transaction. Late writes are flagged. */
  addTransitions(transitions: TransitionInput[]): Promise<TransitionReceipt[]>;
  /** Records rewards on attempts. Late writes are flagged. */
  addRewards(rewards: RewardInput[]): Promise<Reward[]>;
  getRollout(rolloutId: string): Promise<Rollout>;
  listRollouts(query?: ListRolloutsQuery): Promise<Rollout[]>;
  getAttempt(attemptId: string): Promise<Attempt>;
  listAttempts(rolloutId: string): Promise<Attempt[]>;
  /** Spans of a rollout or attempt, by attempt then sequence number. */
  getSpans(query: SpanQuery): Promise<Span[]>;
  /** Transitions in recording order. */
  getTransitions(query: TransitionQuery): Promise<Transition[]>;
  getRewards(query: RewardQuery): Promise<Reward[]>;
  /**
   * Waits until every rollout in `ids` has ended (succeeded, failed, cancelled) or the timeout
   * passes; returns the ones that have ended, in the order of `ids`.
   */
  waitForRollouts(ids: string[], options: WaitOptions): Promise<Rollout[]>;
  /** Publishes a new version of a named resources set; returns it with its version (1, 2, …). */
  addResources(name: string, value: JsonValue): Promise<ResourcesRecord>;
  /** A version of a resources set, by default the latest. */
  getResources(name: string, version?: number): Promise<ResourcesRecord>;
  addTrainingStep(input: TrainingStepInput): Promise<TrainingStep>;
  listTrainingSteps(query?: TrainingStepQuery): Promise<TrainingStep[]>;
  /** Marks expired attempts timeout/unresponsive and requeues or fails their rollouts. */
  sweep(): Promise<SweepResult>;
  close(): Promise<void>;
}
