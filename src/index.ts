// Fulgur's public API: everything users and the other modules import.

export { runWorker, WORKER_USAGE } from "./commands/worker.ts";
export {
  type AgentsOptions,
  type RunningAgents,
  startAgents,
  type TrainOptions,
  train,
  withAgents,
} from "./compose.ts";
export * from "./gpu/index.ts";
export * from "./model/index.ts";
export { formatPrompt, type PromptResource, promptTemplate, templateFields } from "./prompt-template.ts";
export * from "./runner/index.ts";
export * from "./store/index.ts";
export {
  type Algorithm,
  type AlgorithmContext,
  type EvalResult,
  evaluateTasks,
  type FitResult,
  runRollouts,
  startRollouts,
  type TrainerEvent,
} from "./trainer/algorithm.ts";
export { type ApoAlgorithm, type ApoCandidate, type ApoFitResult, type ApoOptions, createApo } from "./trainer/apo.ts";
export type { AlgorithmConfig, AsyncConfig } from "./trainer/config.ts";
export { type PolicySample, policyGradients } from "./trainer/grads.ts";
export { LightningRL, type LightningRLOptions } from "./trainer/lightning-rl.ts";
export { type LossAndGradsOptions, lossAndGrads } from "./trainer/loss-and-grads.ts";
export { type AlgorithmFactory, type AlgorithmSetup, createAlgorithm, registerAlgorithm } from "./trainer/registry.ts";
export { type SftSample, sftGradients } from "./trainer/sft.ts";
export { Sft, type SftAlgorithmConfig, type SftOptions } from "./trainer/sft-algorithm.ts";
export { asChatRecord, type ChatRecord, chatSample } from "./trainer/sft-data.ts";
export { fitSft, type SftFitOptions, sftLearningRate, sftLoss } from "./trainer/sft-fit.ts";
export { Trainer, type TrainerOptions } from "./trainer/trainer.ts";
