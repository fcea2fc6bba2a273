// The runner's public surface: the agent contract, the Runner, LLM judges, loading agent modules
// and OTLP intake.
export { createAttemptContext } from "./context.ts";
export {
  createJudge,
  DEFAULT_RUBRIC,
  JUDGE_USER,
  type Judge,
  JudgeError,
  type JudgeOptions,
  type JudgeVerdict,
  parseVerdicts,
  trajectoryText,
} from "./judge.ts";
export { GroupJudge, type GroupJudgeOptions, type GroupVerdict } from "./judge-group.ts";
export { loadAgent } from "./load-agent.ts";
export { otlpRoutes } from "./otlp.ts";
export { Runner, type RunnerOptions, type RunnerStats, rewardFromResult } from "./runner.ts";
export type {
  Agent,
  AgentContext,
  AgentJudge,
  AgentJudgeOptions,
  AgentResult,
  EmitRewardOptions,
  LlmEndpoint,
  RunnerEvent,
} from "./types.ts";
