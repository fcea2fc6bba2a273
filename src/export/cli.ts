// `fulgur export`: merges a trained LoRA adapter into its base model and writes the result as a
// Hugging Face directory (safetensors) or a single GGUF file. Argument parsing and error
// reporting only; the work is in merge.ts and gguf-model.ts.
import { existsSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { loadCheckpoint } from "../model/loader.ts";
import { type PeftAdapter, readPeftAdapter } from "../model/peft.ts";
import type { SafetensorsDType } from "../model/safetensors.ts";
import { writeGgufModel } from "./gguf-model.ts";
import { writeMergedHfDir } from "./merge.ts";

export const EXPORT_USAGE = `usage: fulgur export --model DIR [--adapter DIR] --merge --format safetensors|gguf [--dtype f32|f16] --out PATH

  --model DIR      Hugging Face model directory (config.json, safetensors, tokenizer.json)
  --adapter DIR    PEFT LoRA adapter to merge in (adapter_config.json + adapter_model.safetensors)
  --merge          merge the adapter into the weights (W + scale·B·A); required with --adapter
  --format F       safetensors: HF directory at --out; gguf: one .gguf file at --out
  --dtype D        f32 (default) or f16 (GGUF keeps norms and biases in f32, like llama.cpp)
  --out PATH       output directory (safetensors) or file (gguf)`;

export interface ExportArgs {
  model: string;
  adapter: string | null;
  format: "safetensors" | "gguf";
  dtype: "f32" | "f16";
  out: string;
}

/** Parses and validates `fulgur export` arguments; throws an Error naming what is wrong. */
export function parseExportArgs(argv: string[]): ExportArgs {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        model: { type: "string" },
        adapter: { type: "string" },
        merge: { type: "boolean" },
        format: { type: "string" },
        dtype: { type: "string" },
        out: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${EXPORT_USAGE}`);
  }
  const model = values.model as string | undefined;
  const out = values.out as string | undefined;
  const format = (values.format as string | undefined) ?? "";
  const dtype = (values.dtype as string | undefined) ?? "f32";
  if (!model) throw new Error(`--model DIR is required\n${EXPORT_USAGE}`);
  if (!out) throw new Error(`--out PATH is required\n${EXPORT_USAGE}`);
  if (format !== "safetensors" && format !== "gguf") {
    throw new Error(`--format must be "safetensors" or "gguf", got ${JSON.stringify(format)}\n${EXPORT_USAGE}`);
  }
  if (dtype !== "f32" && dtype !== "f16") throw new Error(`--dtype must be "f32" or "f16", got "${dtype}"`);
  const adapter = (values.adapter as string | undefined) ?? null;
  if (adapter && !values.merge) {
    throw new Error("--adapter needs --merge: exporting an unmerged adapter next to the model is not supported");
  }
  if (!existsSync(model) || !statSync(model).isDirectory()) throw new Error(`--model ${model} is not a directory`);
  if (adapter && (!existsSync(adapter) || !statSync(adapter).isDirectory())) {
    throw new Error(`--adapter ${adapter} is not a directory`);
  }
  return { model, adapter, format, dtype, out };
}

/** Runs the export described by `args`; resolves to a human-readable summary line. */
export async function exportModel(args: ExportArgs): Promise<string> {
  const checkpoint = await loadCheckpoint(args.model);
  try {
    const adapter: PeftAdapter | null = args.adapter ? await readPeftAdapter(args.adapter, checkpoint.config) : null;
    const what = adapter ? `${args.model} + ${args.adapter} (merged)` : args.model;
    if (args.format === "safetensors") {
      const dtype: SafetensorsDType = args.dtype === "f16" ? "F16" : "F32";
      const files = await writeMergedHfDir(checkpoint, adapter, args.out, dtype);
      return `wrote ${what} as a HF directory ${args.out} (${files.join(", ")})`;
    }
    await mkdir(dirname(args.out), { recursive: true });
    const { tensors, bytes } = await writeGgufModel(checkpoint, adapter, args.out, { dtype: args.dtype });
    return `wrote ${what} as GGUF ${args.dtype.toUpperCase()} ${args.out} (${tensors.length} tensors, ${(bytes / 2 ** 20).toFixed(1)} MiB)`;
  } finally {
    await checkpoint.close();
  }
}

/** `fulgur export ...`: returns the process exit code (0 ok, 2 bad arguments, 1 failure). */
export async function runExport(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${EXPORT_USAGE}\n`);
    return 0;
  }
  let args: ExportArgs;
  try {
    args = parseExportArgs(argv);
  } catch (e) {
    process.stderr.write(`fulgur export: ${(e as Error).message}\n`);
    return 2;
  }
  try {
    process.stdout.write(`${await exportModel(args)}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`fulgur export: ${(e as Error).message}\n`);
    return 1;
  }
}
