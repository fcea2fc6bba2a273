// The runner's public surface: the agent contract, the Runner, loading agent modules and OTLP intake.
export { createAttemptContext } from "./context.ts";
export { loadAgent } from "./load-agent.ts";
export { otlpRoutes } from "./otlp.ts";
export { Runner, type RunnerOptions, type RunnerStats, rewardFromResult } from "./runner.ts";
export type { Agent, AgentContext, AgentResult, LlmEndpoint, RunnerEvent } from "./types.ts";
