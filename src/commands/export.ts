// `fulgur export`: writes a trained LoRA adapter as a clean PEFT adapter (from an adapter or a
// training checkpoint), or merges it into its base model and writes a Hugging Face directory
// (safetensors) or a single GGUF file. Argument parsing and error reporting only; the work is in
// src/export/merge.ts, src/export/gguf-model.ts and src/model/peft.ts.
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { GGUF_DTYPES, type GgufDtype, writeGgufModel } from "../export/gguf-model.ts";
import { writeMergedHfDir } from "../export/merge.ts";
import { loadCheckpoint } from "../model/loader.ts";
import { type PeftAdapter, readPeftAdapter, writePeftAdapter } from "../model/peft.ts";
import type { SafetensorsDType } from "../model/safetensors.ts";
import type { Command } from "./command.ts";

export const EXPORT_USAGE = `usage: fulgur export --model DIR (--adapter DIR | --checkpoint DIR) --format peft [--dtype f32|f16] --out DIR
       fulgur export --model DIR [--adapter DIR | --checkpoint DIR] --merge --format safetensors|gguf [--dtype f32|f16|q8_0] --out PATH

  --model DIR       Hugging Face model directory (config.json, safetensors, tokenizer.json)
  --adapter DIR     PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors)
  --checkpoint DIR  a training checkpoint directory (checkpointDir: its latest; or one step-N) instead of --adapter
  --merge           merge the adapter into the weights (W + scale·B·A); required for safetensors/gguf with an adapter
  --format F        peft: the adapter alone, checked against --model, as a PEFT directory at --out;
                    safetensors: merged HF directory at --out; gguf: one merged .gguf file at --out
  --dtype D         f32 (default) or f16 (GGUF keeps norms and biases in f32, like llama.cpp);
                    q8_0 (gguf only): llama.cpp's Q8_0, int8 per 32 values with an f16 scale, for the
                    matrices (a matrix whose rows are not a multiple of 32 values stays f16)
  --out PATH        output directory (peft, safetensors) or file (gguf)`;

export interface ExportArgs {
  model: string;
  adapter: string | null;
  format: "peft" | "safetensors" | "gguf";
  dtype: GgufDtype;
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
        checkpoint: { type: "string" },
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
  if (format !== "peft" && format !== "safetensors" && format !== "gguf") {
    throw new Error(`--format must be "peft", "safetensors" or "gguf", got ${JSON.stringify(format)}\n${EXPORT_USAGE}`);
  }
  if (!GGUF_DTYPES.includes(dtype as GgufDtype)) {
    throw new Error(`--dtype must be "f32", "f16" or "q8_0", got "${dtype}"`);
  }
  if (dtype === "q8_0" && format !== "gguf") {
    throw new Error("--dtype q8_0 is a GGUF type: use it with --format gguf (peft and safetensors take f32 or f16)");
  }
  if (values.adapter && values.checkpoint) throw new Error("give --adapter or --checkpoint, not both");
  const checkpoint = values.checkpoint as string | undefined;
  const adapter = checkpoint ? checkpointAdapter(checkpoint) : ((values.adapter as string | undefined) ?? null);
  if (format === "peft") {
    if (!adapter) throw new Error(`--format peft exports an adapter: give --adapter DIR or --checkpoint DIR`);
    if (values.merge) throw new Error("--merge writes a whole model: use --format safetensors or gguf with it");
  } else if (adapter && !values.merge) {
    throw new Error(
      "--adapter needs --merge with --format safetensors|gguf (or use --format peft to export the adapter alone)",
    );
  }
  if (!existsSync(model) || !statSync(model).isDirectory()) throw new Error(`--model ${model} is not a directory`);
  if (adapter && (!existsSync(adapter) || !statSync(adapter).isDirectory())) {
    throw new Error(`--adapter ${adapter} is not a directory`);
  }
  return { model, adapter, format, dtype: dtype as GgufDtype, out };
}

/** The adapter directory of a checkpoint: a trainer's checkpointDir (its latest) or one step-N directory. */
function checkpointAdapter(dir: string): string {
  let step = dir;
  const pointer = join(dir, "latest.json");
  if (existsSync(pointer))
    step = join(dir, (JSON.parse(readFileSync(pointer, "utf8")) as { checkpoint: string }).checkpoint);
  const adapter = join(step, "adapter");
  if (!existsSync(join(adapter, "adapter_config.json")))
    throw new Error(`--checkpoint ${dir} is not a training checkpoint (no latest.json or adapter/adapter_config.json)`);
  return adapter;
}

/** Runs the export described by `args`; resolves to a human-readable summary line. */
export async function exportModel(args: ExportArgs): Promise<string> {
  const checkpoint = await loadCheckpoint(args.model);
  try {
    const adapter: PeftAdapter | null = args.adapter ? await readPeftAdapter(args.adapter, checkpoint.config) : null;
    const what = adapter ? `${args.model} + ${args.adapter} (merged)` : args.model;
    if (args.format === "peft") {
      // readPeftAdapter checked every tensor against the model; the copy is a clean PEFT directory.
      const { config, tensors } = adapter!;
      const baseModelNameOrPath = config.baseModelNameOrPath ?? args.model;
      await writePeftAdapter(args.out, { ...config, baseModelNameOrPath }, tensors, {
        dtype: args.dtype === "f16" ? "F16" : "F32",
        model: checkpoint.config,
      });
      return `wrote the adapter ${args.adapter} (rank ${config.r}, ${tensors.size} tensors, ${args.dtype.toUpperCase()}) as PEFT ${args.out}`;
    }
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

export const command: Command = {
  summary: "write a trained adapter as PEFT, or merged into the model as an HF directory or a GGUF file",
  usage: EXPORT_USAGE.replace(/^usage: /, ""),
  run: runExport,
};
