// The agent contract: what an agent function receives (AgentContext) and may return (AgentResult),
// and the progress events a Runner reports. Agents depend only on these types, never on the runner.
import type { AttemptError, FinishStatus } from "../store/types.ts";
import type { Judge } from "./judge.ts";

/** An OpenAI-compatible endpoint already attributed to one attempt. */
export interface LlmEndpoint {
  baseURL: string;
  apiKey: string;
  model: string;
}

/**
 * An LLM judge as the agent's reward (see docs/judges.md). Both answer a reward in [0, 1] (the
 * judge's score mapped from its scale) and write a "judge" span with the score and reason; judge
 * calls go to the judge endpoint unattributed, so they are never trained as the agent's calls.
 */
export interface AgentJudge {
  /**
   * Scores `trajectory` relative to the other rollouts of this rollout's GRPO group: the runner
   * holds the call until the group's rollouts have all submitted (or cannot), then judges them in
   * one call. Without a group it scores against the rubric alone, like `score`.
   */
  relative(task: unknown, trajectory: unknown, options?: AgentJudgeOptions): Promise<number>;
  /** Scores `trajectory` against the rubric alone. */
  score(task: unknown, trajectory: unknown, options?: AgentJudgeOptions): Promise<number>;
}

export interface AgentJudgeOptions {
  /** This call's rubric instead of the judge's. */
  rubric?: string;
  /** The agent's own judge (`createJudge(...)`, e.g. a hosted model) instead of the runner's. */
  judge?: Judge;
}

/** What an agent gets besides its task: where the model is, and how to report rewards and spans. */
export interface AgentContext {
  rolloutId: string;
  attemptId: string;
  /** The rollout's GRPO group (rollouts of the same task whose rewards are compared), if any. */
  groupId: string | null;
  mode: "train" | "val" | "test";
  llm: LlmEndpoint;
  /**
   * Records a reward (and a "reward" span) on this attempt now. The last one is the attempt's
   * reward unless the agent returns one; earlier ones are intermediate rewards (dense credit).
   */
  emitReward(value: number, dimensions?: Record<string, number>, options?: EmitRewardOptions): Promise<void>;
  /**
   * Runs `fn` inside a traced span written to the store when it ends (status "error" and rethrown
   * on throw). Spans opened inside `fn` become its children. An attribute `kind` of "tool",
   * "message" or "custom" (the default) sets the span kind instead of being stored.
   */
  span<T>(name: string, fn: () => Promise<T> | T, attributes?: Record<string, unknown>): Promise<T>;
  /** Fired when the attempt times out, the store ends the attempt, or the runner is cancelled. */
  signal: AbortSignal;
  /** The rollout's resources value (JSON), if it has one. */
  resources: unknown | null;
  /** An LLM judge: `return ctx.judge.relative(task, transcript)` makes its score the reward. */
  judge: AgentJudge;
}

export interface EmitRewardOptions {
  /**
   * The LLM call this reward is for: the completion id the call returned (`completion.id`).
   * Default: the latest call answered before the reward was emitted.
   */
  call?: string;
}

/** A number (or `{ reward }`) is the final reward; nothing means "the last emitted reward". */
// biome-ignore lint/suspicious/noConfusingVoidType: agents declared `async () => {}` return Promise<void>.
export type AgentResult = number | void | undefined | { reward: number; [key: string]: unknown };

export type Agent<Task = unknown> = (task: Task, ctx: AgentContext) => Promise<AgentResult> | AgentResult;

/** Progress of a Runner, one event per attempt transition (for progress lines and metrics). */
export type RunnerEvent =
  | { type: "started"; rolloutId: string; attemptId: string; attemptNo: number }
  | {
      type: "finished" | "failed";
      rolloutId: string;
      attemptId: string;
      /** "succeeded" for `finished`; "failed" or "timeout" for `failed`. */
      status: FinishStatus;
      reward: number | null;
      error: AttemptError | null;
      durationMs: number;
      /** True when the store had already ended the attempt (e.g. declared it unresponsive). */
      late: boolean;
    }
  /** Something went wrong in the runner itself (store unreachable, …); it keeps going. */
  | { type: "error"; message: string; error: unknown };
