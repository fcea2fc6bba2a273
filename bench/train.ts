// Trainer throughput: one LoRA PPO update (forward + backward + global-norm clip + AdamW, r=16 on
// all seven projections) on a batch of 8 sequences × 128 tokens with the first half of each masked
// as prompt, for the tiny model and the ~25M-parameter model of bench/engine.ts. Reports update
// time and tokens/s, the time of optimizer.apply() alone (that is the adapter hot-swap: AdamW
// writes the serving adapter in place), model.loadAdapter(dir) from disk for comparison, and peak
// pooled GPU memory. The same update runs in PyTorch on the CPU (bench/reference/train_step.py,
// 2 threads) on the same checkpoint, adapter and batch; its per-step losses must match ours
// (a check that both run the same computation), and the ratio Fulgur/PyTorch is printed with the
// torch build's BLAS and matmul rate, since that decides the CPU side.
//   npx tsx bench/train.ts [--quick] [--model tiny|25m]

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { acquireGpu, type Gpu } from "../src/gpu/index.ts";
import { loadModel, type Model } from "../src/model/model.ts";
import { writeTinyModel } from "../src/model/tiny.ts";
import type { PolicySample } from "../src/trainer/grads.ts";
import { policyGradients } from "../src/trainer/grads.ts";
import { Optimizer } from "../src/trainer/optimizer.ts";
import { ENGINE_MODELS } from "./engine.ts";
import { emit } from "./lib.ts";

const here = dirname(fileURLToPath(import.meta.url));
const PYTHON = "/usr/bin/python3";
const SEQUENCES = 8;
const SEQ_LEN = 128;
const PROMPT_LEN = 64;
const RANK = 16;
const ALPHA = 32;
const TORCH_THREADS = 2;
const PPO = { temperature: 1, clipLow: 0.2, clipHigh: 0.28 };
const OPTIM = { lr: 1e-3, maxGradNorm: 1, weightDecay: 0 };

/** Deterministic LCG in [0, 1): the batch and adapter must be identical run to run. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function makeBatch(vocab: number, seed: number): PolicySample[] {
  const r = seeded(seed);
  return Array.from({ length: SEQUENCES }, (_, i) => {
    const tokens = Array.from({ length: SEQ_LEN }, () => Math.floor(r() * vocab));
    return {
      tokens,
      lossMask: tokens.map((_, t) => (t >= PROMPT_LEN ? 1 : 0)),
      advantage: i % 2 === 0 ? 1 : -1,
      // Behaviour logprobs near a uniform policy's, so ratios land on both sides of the clip.
      oldLogprobs: tokens.map((_, t) => (t >= PROMPT_LEN ? -Math.log(vocab) + (r() - 0.5) * 0.6 : 0)),
    };
  });
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface TorchResult {
  torch_version: string;
  threads: number;
  losses: number[];
  step_ms: number[];
  lora_params: number;
  blas: string;
  matmul512_gflops: number;
}

/** Runs the PyTorch reference, or explains why it cannot. */
function runTorch(
  modelDir: string,
  adapterDir: string,
  batch: PolicySample[],
  steps: number,
): { result: TorchResult } | { skipped: string } {
  if (!existsSync(PYTHON)) return { skipped: `${PYTHON} not found` };
  const probe = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" });
  if (probe.status !== 0) return { skipped: `torch does not import: ${probe.stderr.trim().split("\n").pop()}` };
  const batchPath = join(modelDir, "train-batch.json");
  writeFileSync(batchPath, JSON.stringify({ samples: batch, ...PPO, ...OPTIM, steps }));
  const run = spawnSync(
    PYTHON,
    [join(here, "reference", "train_step.py"), modelDir, adapterDir, batchPath, String(TORCH_THREADS)],
    { encoding: "utf8", maxBuffer: 1 << 24, env: { ...process.env, OMP_NUM_THREADS: String(TORCH_THREADS) } },
  );
  if (run.status !== 0) throw new Error(`train_step.py failed (exit ${run.status}): ${run.stderr}`);
  return { result: JSON.parse(run.stdout.trim().split("\n").pop() ?? "") as TorchResult };
}

/** Gives the fresh adapter a random B (B = 0 would make every A gradient zero) and saves it. */
async function randomAdapter(model: Model, adapterDir: string) {
  const lora = model.createAdapter({ rank: RANK, alpha: ALPHA, seed: 3 });
  const r = seeded(11);
  for (const m of lora.modules.values()) m.b.write(Array.from({ length: m.b.size }, () => (r() - 0.5) * 0.04));
  await model.saveAdapter(adapterDir);
  return lora;
}

/** Runs the train benchmark for one model spec on `gpu`. */
export async function benchTrainModel(gpu: Gpu, name: string, steps: number, torchSteps: number): Promise<void> {
  const spec = ENGINE_MODELS[name];
  if (!spec) throw new Error(`unknown model '${name}' (known: ${Object.keys(ENGINE_MODELS).join(", ")})`);
  const dir = mkdtempSync(join(tmpdir(), `fulgur-bench-train-${name}-`));
  try {
    await writeTinyModel(dir, spec);
    const model = await loadModel(dir, { gpu, maxSlots: 1, maxSeqLen: 256 });
    const adapterDir = join(dir, "adapter");
    mkdirSync(adapterDir, { recursive: true });
    const lora = await randomAdapter(model, adapterDir);
    const optimizer = Optimizer.forLora(lora, OPTIM);
    const batch = makeBatch(model.config.vocabSize, 5);
    const tokens = SEQUENCES * SEQ_LEN;
    const common = {
      bench: "train",
      model: name,
      sequences: SEQUENCES,
      seqLen: SEQ_LEN,
      trainedTokens: SEQUENCES * (SEQ_LEN - PROMPT_LEN),
      loraRank: RANK,
      loraParams: optimizer.parameterCount,
      adapter: gpu.info.description,
    };

    // Warm-up: compiles every pipeline; its gradients are dropped so no update happens.
    gpu.pool.peakBytes = 0;
    await policyGradients(model.transformer, batch, PPO, optimizer.sink);
    optimizer.zeroGrad();
    await gpu.sync();

    const losses: number[] = [];
    const stepMs: number[] = [];
    const applyMs: number[] = [];
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      const result = await policyGradients(model.transformer, batch, PPO, optimizer.sink);
      const t1 = performance.now();
      await optimizer.apply();
      const t2 = performance.now();
      losses.push(result.loss);
      stepMs.push(t2 - t0);
      applyMs.push(t2 - t1);
    }
    const step = median(stepMs);
    emit({ ...common, metric: "update_time", value: step, unit: "ms", steps });
    emit({ ...common, metric: "train_tokens_per_s", value: tokens / (step / 1000), unit: "tok/s" });
    emit({ ...common, metric: "optimizer_apply_time", value: median(applyMs), unit: "ms", note: "in-place hot swap" });
    emit({ ...common, metric: "peak_pool_memory", value: gpu.pool.stats().peakBytes / 2 ** 20, unit: "MiB" });

    // Hot swap from disk for comparison: read the PEFT files and upload them as a new adapter.
    optimizer.dispose();
    const trainedDir = join(dir, "adapter-trained");
    mkdirSync(trainedDir, { recursive: true });
    await model.saveAdapter(trainedDir);
    const loadMs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await model.loadAdapter(trainedDir, i + 1);
      await gpu.sync();
      loadMs.push(performance.now() - t0);
    }
    emit({ ...common, metric: "load_adapter_from_disk_time", value: median(loadMs), unit: "ms" });
    model.dispose();

    // The reference starts from the adapter saved before training, so its losses are ours.
    const torch = runTorch(dir, adapterDir, batch, torchSteps);
    if ("skipped" in torch) {
      emit({ ...common, metric: "torch_reference", value: 0, unit: "skipped", reason: torch.skipped });
      return;
    }
    const t = torch.result;
    // The first step pays for allocation; drop it when there is more than one.
    const timedSteps = t.step_ms.length > 1 ? t.step_ms.slice(1) : t.step_ms;
    const torchStep = median(timedSteps);
    const compared = Math.min(losses.length, t.losses.length);
    const lossDiff = Math.max(...losses.slice(0, compared).map((l, i) => Math.abs(l - t.losses[i])));
    const tc = { ...common, torch: t.torch_version, threads: t.threads, blas: t.blas };
    emit({ ...tc, metric: "torch_matmul512_gflops", value: t.matmul512_gflops, unit: "GFLOP/s" });
    emit({ ...tc, metric: "torch_update_time", value: torchStep, unit: "ms", steps: timedSteps.length });
    emit({ ...tc, metric: "torch_train_tokens_per_s", value: tokens / (torchStep / 1000), unit: "tok/s" });
    emit({ ...tc, metric: "fulgur_over_torch_tokens_per_s", value: torchStep / step, unit: "x" });
    emit({
      ...tc,
      metric: "loss_max_abs_diff_vs_torch",
      value: lossDiff,
      unit: "abs",
      fulgurLosses: losses,
      torchLosses: t.losses.slice(0, compared),
    });
    // Same checkpoint, adapter, batch and update rule: a large gap means the two are not
    // measuring the same work, and the ratio above would be meaningless.
    if (!(lossDiff < 1e-3 * Math.max(1, Math.abs(t.losses[0]))))
      throw new Error(`train bench: Fulgur losses ${losses} differ from PyTorch's ${t.losses}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes("--quick");
  const gpu = await acquireGpu();
  try {
    // PyTorch here runs on Debian's reference BLAS (~1 GFLOP/s): its 25M update takes minutes, so
    // it gets a single timed step there.
    const at = process.argv.indexOf("--model");
    const only = at >= 0 ? process.argv[at + 1] : undefined;
    if (only !== undefined && !(only in ENGINE_MODELS))
      throw new Error(`--model must be one of ${Object.keys(ENGINE_MODELS).join(", ")}, got ${only}`);
    if (!only || only === "tiny") await benchTrainModel(gpu, "tiny", quick ? 2 : 5, quick ? 2 : 4);
    if (!only || only === "25m") await benchTrainModel(gpu, "25m", quick ? 1 : 3, 1);
  } finally {
    gpu.destroy();
  }
}
