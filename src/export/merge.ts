// LoRA merging on the CPU: W' = W + scale·B·A for every adapted projection, accumulated in f64
// from the checkpoint's weights and the PEFT adapter, so the exported model needs no adapter at
// serve time. Also writes the merged model as a Hugging Face directory (safetensors + the source's
// config/tokenizer/generation files) that transformers, vLLM and loadModel read.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Checkpoint } from "../model/loader.ts";
import { type ALL_PROJECTIONS, loraScale, type PeftAdapter, peftKey } from "../model/peft.ts";
import type { SafetensorsDType } from "../model/safetensors.ts";
import { type TensorToWrite, writeSafetensors } from "../model/safetensors-write.ts";
import { copySidecarFiles } from "../model/save-weights.ts";

const WEIGHT_PATTERN =
  /^model\.layers\.(\d+)\.(?:self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$/;

/**
 * Returns W + scale·B·A (row-major [out, in]) with the product summed in f64; `w` is not modified.
 * Throws when the factor shapes do not chain to W's shape.
 */
export function mergeLoraWeight(
  name: string,
  w: Float32Array,
  shape: number[],
  a: { shape: number[]; data: Float32Array },
  b: { shape: number[]; data: Float32Array },
  scale: number,
): Float32Array {
  const [out, inp] = shape;
  const [r, aIn] = a.shape;
  const [bOut, bR] = b.shape;
  if (shape.length !== 2 || aIn !== inp || bOut !== out || bR !== r) {
    throw new Error(
      `${name}: cannot merge LoRA A [${a.shape}] and B [${b.shape}] into weight [${shape}]; expected A [r, ${inp}] and B [${out}, r]`,
    );
  }
  const merged = new Float32Array(w.length);
  const row = new Float64Array(inp);
  for (let o = 0; o < out; o++) {
    row.fill(0);
    for (let k = 0; k < r; k++) {
      const bk = b.data[o * r + k];
      if (bk === 0) continue;
      const aRow = k * inp;
      for (let i = 0; i < inp; i++) row[i] += bk * a.data[aRow + i];
    }
    const base = o * inp;
    for (let i = 0; i < inp; i++) merged[base + i] = w[base + i] + scale * row[i];
  }
  return merged;
}

/**
 * Streams the checkpoint's tensors (in `checkpoint.specs` order, torch layout, f32) with the
 * adapter merged into every projection it targets. With `adapter` null this is the checkpoint
 * as-is. Every adapter factor must be consumed, so a key the model has no weight for is an error.
 */
export async function* mergedTensors(
  checkpoint: Checkpoint,
  adapter: PeftAdapter | null,
): AsyncGenerator<[name: string, shape: number[], data: Float32Array]> {
  const scale = adapter ? loraScale(adapter.config) : 0;
  const used = new Set<string>();
  for await (const [name, shape, data] of checkpoint.tensors()) {
    const m = adapter ? WEIGHT_PATTERN.exec(name) : null;
    if (!adapter || !m) {
      yield [name, shape, data];
      continue;
    }
    const layer = Number(m[1]);
    const module = m[2] as (typeof ALL_PROJECTIONS)[number];
    const keyA = peftKey(layer, module, "A");
    const keyB = peftKey(layer, module, "B");
    const a = adapter.tensors.get(keyA);
    const b = adapter.tensors.get(keyB);
    if (!a && !b) {
      yield [name, shape, data];
      continue;
    }
    if (!a || !b) throw new Error(`adapter has ${a ? keyA : keyB} but not ${a ? keyB : keyA}`);
    used.add(keyA).add(keyB);
    yield [name, shape, mergeLoraWeight(name, data, shape, a, b, scale)];
  }
  if (adapter) {
    const unused = [...adapter.tensors.keys()].filter((k) => !used.has(k));
    if (unused.length) throw new Error(`adapter tensors match no weight of the model: ${unused.join(", ")}`);
  }
}

const TORCH_DTYPE: Record<SafetensorsDType, string> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

/**
 * Writes `checkpoint` with `adapter` merged in as a HF directory at `outDir`: model.safetensors
 * in `dtype`, config.json with torch_dtype updated, and the tokenizer/generation files copied.
 * Returns the files written.
 */
export async function writeMergedHfDir(
  checkpoint: Checkpoint,
  adapter: PeftAdapter | null,
  outDir: string,
  dtype: SafetensorsDType = "F32",
): Promise<string[]> {
  const tensors: Record<string, TensorToWrite> = {};
  for await (const [name, shape, data] of mergedTensors(checkpoint, adapter)) tensors[name] = { dtype, shape, data };
  await mkdir(outDir, { recursive: true });
  await writeSafetensors(join(outDir, "model.safetensors"), tensors, { format: "pt" });
  const configJson = JSON.parse(await readFile(join(checkpoint.dir, "config.json"), "utf8"));
  configJson.torch_dtype = TORCH_DTYPE[dtype];
  if ("dtype" in configJson) configJson.dtype = TORCH_DTYPE[dtype];
  await writeFile(join(outDir, "config.json"), `${JSON.stringify(configJson, null, 2)}\n`);
  return ["model.safetensors", "config.json", ...(await copySidecarFiles(checkpoint.dir, outDir))];
}
