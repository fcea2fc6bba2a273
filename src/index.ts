// Fulgur's public API: everything users and the other modules import.
export * from "./gpu/index.ts";
export * from "./model/index.ts";
export { formatPrompt, type PromptResource, promptTemplate, templateFields } from "./prompt-template.ts";
export * from "./runner/index.ts";
export * from "./store/index.ts";
export { type ApoAlgorithm, type ApoCandidate, type ApoFitResult, type ApoOptions, createApo } from "./trainer/apo.ts";
export { type PolicySample, policyGradients } from "./trainer/grads.ts";
export { type LossAndGradsOptions, lossAndGrads } from "./trainer/loss-and-grads.ts";
export { type SftSample, sftGradients } from "./trainer/sft.ts";
export { asChatRecord, type ChatRecord, chatSample } from "./trainer/sft-data.ts";
export { fitSft, type SftFitOptions, sftLearningRate, sftLoss } from "./trainer/sft-fit.ts";
export { type AlgorithmConfig, Trainer, type TrainerOptions } from "./trainer/trainer.ts";
