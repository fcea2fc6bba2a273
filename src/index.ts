// Fulgur's public API: everything users and the other modules import.
export * from "./gpu/index.ts";
export * from "./model/index.ts";
export * from "./store/index.ts";
export { lossAndGrads, type LossAndGradsOptions } from "./trainer/loss-and-grads.ts";
export { type PolicySample, policyGradients } from "./trainer/grads.ts";
