// The runner's public surface: the agent contract, the Runner, the worker command and OTLP intake.
export { createAttemptContext } from "./context.ts";
export { otlpRoutes } from "./otlp.ts";
export { Runner, type RunnerOptions, type RunnerStats, rewardFromResult } from "./runner.ts";
export type { Agent, AgentContext, AgentResult, EmitRewardOptions, LlmEndpoint, RunnerEvent } from "./types.ts";
export { loadAgent, runWorker, WORKER_USAGE } from "./worker-cli.ts";
