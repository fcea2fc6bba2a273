// Which `Algorithm` a train config's `"algorithm": { "name": ... }` picks. LightningRL ("lightningrl",
// the default) and SFT ("sft") are built in; another algorithm registers itself in one line:
// `registerAlgorithm("mine", (setup) => new Mine(setup))`. Prompt optimisation ("apo") is here too.

import type { LoraSpec } from "../model/lora.ts";
import type { JsonValue } from "../store/types.ts";
import type { Algorithm } from "./algorithm.ts";
import { type ApoOptions, createApo } from "./apo.ts";
import type { AlgorithmConfig } from "./config.ts";
import { LightningRL } from "./lightning-rl.ts";
import type { OptimizerConfig } from "./optimizer.ts";
import { Sft, type SftAlgorithmConfig } from "./sft-algorithm.ts";

/** A config's `"algorithm"` block: LightningRL's options, SFT's, or another registered algorithm's. */
export type AlgorithmBlock = AlgorithmConfig | SftAlgorithmConfig | ({ name: string } & Record<string, unknown>);

/** The parts of a train config an algorithm is built from (paths already resolved). */
export interface AlgorithmSetup {
  /** The `"algorithm"` block; its `name` picks the algorithm (default "lightningrl"). */
  algorithm?: AlgorithmBlock;
  optimizer?: OptimizerConfig;
  lora?: LoraSpec | "full";
  valEvery?: number;
  successThreshold?: number;
  checkpointDir?: string;
  checkpointEvery?: number;
  resume?: boolean;
  /** Multi-agent: the named adapter LightningRL trains (see LightningRLOptions.adapter). */
  adapter?: string;
  rolloutTimeoutMs?: number;
  maxAttempts?: number;
  seed?: number;
}

// biome-ignore lint/suspicious/noExplicitAny: algorithms differ in their task type
export type AlgorithmFactory = (setup: AlgorithmSetup) => Algorithm<any>;

const factories = new Map<string, AlgorithmFactory>([
  ["lightningrl", (setup) => new LightningRL({ ...setup, algorithm: setup.algorithm as AlgorithmConfig | undefined })],
  [
    "sft",
    (setup) =>
      new Sft({
        algorithm: setup.algorithm as SftAlgorithmConfig | undefined,
        lr: setup.optimizer?.lr,
        weightDecay: setup.optimizer?.weightDecay,
        lora: setup.lora,
        valEvery: setup.valEvery,
      }),
  ],
  // Prompt optimisation needs its optimiser LLM named here (`fulgur train` defaults it to the served model).
  ["apo", (setup) => createApo(setup.algorithm as unknown as ApoOptions)],
]);

/** Makes `name` selectable by `"algorithm": { "name": name }` (replacing an earlier one). */
export function registerAlgorithm(name: string, factory: AlgorithmFactory): void {
  factories.set(name, factory);
}

export function algorithmNames(): string[] {
  return [...factories.keys()];
}

/** The algorithm a setup names ("lightningrl" when it names none). */
export function createAlgorithm<Task extends JsonValue = JsonValue>(setup: AlgorithmSetup): Algorithm<Task> {
  const name = setup.algorithm?.name ?? "lightningrl";
  const factory = factories.get(name);
  if (!factory) throw new Error(`unknown algorithm "${name}" (known: ${algorithmNames().join(", ")})`);
  return factory(setup) as Algorithm<Task>;
}
