// Checkpoint loading: ties a HF model directory's config.json to its safetensors weights, checks
// up front that every tensor the config implies is present with the right shape (reporting all
// problems at once), then hands tensors out one at a time as f32.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { assertRunnable, expectedTensors, type ModelConfig, parseModelConfig, type TensorSpec } from "./config.ts";
import { openSafetensors, type SafetensorsReader, type TensorInfo } from "./safetensors.ts";

export interface Checkpoint {
  dir: string;
  config: ModelConfig;
  /** The tensors the model needs, in load order. */
  specs: TensorSpec[];
  /** On-disk dtype/shape of a needed tensor. */
  info(name: string): TensorInfo;
  /** Reads one needed tensor as f32 (torch layout, row-major). */
  get(name: string): Promise<Float32Array>;
  /** Streams every needed tensor in `specs` order; each is read when the consumer asks. */
  tensors(): AsyncIterable<[name: string, shape: number[], data: Float32Array]>;
  close(): Promise<void>;
}

/** Reads and parses `<dir>/config.json`. */
export async function readModelConfig(dir: string): Promise<ModelConfig> {
  const path = join(dir, "config.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new Error(`no config.json in ${dir}: expected a Hugging Face model directory`);
  }
  return parseModelConfig(JSON.parse(text));
}

/** Lists every missing tensor and shape mismatch between a reader and the config's needs. */
export function checkTensors(reader: SafetensorsReader, specs: TensorSpec[]): string[] {
  const problems: string[] = [];
  const missing = specs.filter((s) => !reader.has(s.name)).map((s) => s.name);
  if (missing.length) problems.push(`missing ${missing.length} tensor(s): ${missing.join(", ")}`);
  for (const spec of specs) {
    if (!reader.has(spec.name)) continue;
    const { shape, dtype } = reader.info(spec.name);
    if (shape.length !== spec.shape.length || shape.some((d, i) => d !== spec.shape[i])) {
      problems.push(`${spec.name} has shape [${shape}], config expects [${spec.shape}]`);
    }
    if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16") {
      problems.push(`${spec.name} has dtype ${dtype}; only F32, F16 and BF16 are supported`);
    }
  }
  return problems;
}

/**
 * Opens a HF checkpoint directory (config.json + model.safetensors or a sharded index) and
 * validates it against the config. Throws one error listing every missing tensor and every shape
 * mismatch. Extra tensors (e.g. a redundant lm_head with tied embeddings) are ignored.
 */
export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  const config = await readModelConfig(dir);
  assertRunnable(config);
  const reader = await openSafetensors(dir);
  const specs = expectedTensors(config);
  const problems = checkTensors(reader, specs);
  if (problems.length) {
    await reader.close();
    throw new Error(`checkpoint ${dir} does not match its config.json:\n  ${problems.join("\n  ")}`);
  }
  const needed = new Set(specs.map((s) => s.name));
  const assertNeeded = (name: string) => {
    if (!needed.has(name)) {
      throw new Error(`"${name}" is not a tensor this ${config.architecture} model uses`);
    }
  };
  return {
    dir,
    config,
    specs,
    info: (name) => {
      assertNeeded(name);
      return reader.info(name);
    },
    get: async (name) => {
      assertNeeded(name);
      return reader.read(name);
    },
    async *tensors() {
      for (const spec of specs) yield [spec.name, spec.shape, await reader.read(spec.name)];
    },
    close: () => reader.close(),
  };
}
