// Training checkpoints: the adapter in PEFT format, the optimizer's moments and step, and the
// trainer's own progress, in one directory per step with a `latest.json` pointer. Written to a
// temporary directory and renamed, so a crash mid-write never leaves a checkpoint half there.

import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Model } from "../model/model.ts";
import { openSafetensors } from "../model/safetensors.ts";
import { writeSafetensors } from "../model/safetensors-write.ts";
import type { Optimizer } from "./optimizer.ts";

export interface TrainerState {
  /** Training steps completed. */
  step: number;
  /** Anything else the trainer needs to continue identically (task cursor, baselines, seed). */
  extra: Record<string, unknown>;
}

export interface CheckpointInfo {
  dir: string;
  adapterDir: string;
  step: number;
}

/** Saves adapter + optimizer + trainer state under `root/step-<n>`; returns where. */
export async function saveCheckpoint(
  root: string,
  model: Model,
  optimizer: Optimizer,
  state: TrainerState,
  /** The named adapter trained (multi-agent); default: the default adapter. */
  adapter?: string,
): Promise<CheckpointInfo> {
  const name = `step-${String(state.step).padStart(6, "0")}`;
  const dir = join(root, name);
  const tmp = join(root, `.${name}.tmp`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await model.saveAdapter(join(tmp, "adapter"), adapter);
  const opt = await optimizer.state();
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [k, v] of opt.m) tensors[`${k}.exp_avg`] = { dtype: "F32", shape: [v.length], data: v };
  for (const [k, v] of opt.v) tensors[`${k}.exp_avg_sq`] = { dtype: "F32", shape: [v.length], data: v };
  await writeSafetensors(join(tmp, "optimizer.safetensors"), tensors);
  await writeFile(
    join(tmp, "trainer.json"),
    `${JSON.stringify({ step: state.step, optimizerStep: opt.step, adapterVersion: model.adapterNamed(adapter)?.version ?? null, extra: state.extra }, null, 2)}\n`,
  );
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  await writeFile(join(root, "latest.json"), `${JSON.stringify({ checkpoint: name, step: state.step })}\n`);
  return { dir, adapterDir: join(dir, "adapter"), step: state.step };
}

/** The newest checkpoint under `root`, or null when there is none. */
export async function latestCheckpoint(root: string): Promise<CheckpointInfo | null> {
  const pointer = join(root, "latest.json");
  if (!existsSync(pointer)) return null;
  const { checkpoint, step } = JSON.parse(await readFile(pointer, "utf8")) as { checkpoint: string; step: number };
  const dir = join(root, checkpoint);
  if (!existsSync(join(dir, "trainer.json"))) throw new Error(`${pointer} points at ${dir}, which is not a checkpoint`);
  return { dir, adapterDir: join(dir, "adapter"), step };
}

/** Loads a checkpoint's adapter onto `model`, creates its optimizer and restores the state. */
export async function restoreCheckpoint(
  info: CheckpointInfo,
  model: Model,
  makeOptimizer: () => Optimizer,
  adapter?: string,
): Promise<{ optimizer: Optimizer; state: TrainerState }> {
  const meta = JSON.parse(await readFile(join(info.dir, "trainer.json"), "utf8")) as {
    step: number;
    optimizerStep: number;
    adapterVersion: number | null;
    extra: Record<string, unknown>;
  };
  await model.loadAdapter(info.adapterDir, meta.adapterVersion ?? 0, adapter);
  const optimizer = makeOptimizer();
  const reader = await openSafetensors(join(info.dir, "optimizer.safetensors"));
  try {
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    for (const name of optimizer.names) {
      m.set(name, await reader.read(`${name}.exp_avg`));
      v.set(name, await reader.read(`${name}.exp_avg_sq`));
    }
    optimizer.loadState({ step: meta.optimizerStep, m, v });
  } finally {
    await reader.close();
  }
  return { optimizer, state: { step: meta.step, extra: meta.extra } };
}
