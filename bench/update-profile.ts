// Where one LoRA PPO update's GPU time goes, per kernel: one micro-batch of random tokens through
// policyGradients (forward, LM head by vocabulary blocks, backward) with every dispatch bracketed
// by timestamp queries (see decode-profile.ts: each dispatch then runs in its own pass, so compare
// shares, not sums with an unprofiled run). One JSON line per kernel (GEMMs by transposes and
// M×K×N) with ms, calls and share.
//   npx tsx bench/update-profile.ts --dir <HF checkpoint dir> [--dtype f32|f16|auto]
//     [--tokens 512] [--recompute] [--quantize int8|int4]

import { fileURLToPath } from "node:url";
import { acquireGpu } from "../src/gpu/index.ts";
import { loadModel } from "../src/model/model.ts";
import { quantizeFlag } from "../src/server.ts";
import { policyGradients } from "../src/trainer/grads.ts";
import { Optimizer } from "../src/trainer/optimizer.ts";
import { emitProfile, profileDispatches } from "./decode-profile.ts";
import { makeBatch } from "./scale.ts";

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name: string, fallback: string) => {
    const at = process.argv.indexOf(name);
    return at >= 0 ? process.argv[at + 1] : fallback;
  };
  const dir = arg("--dir", "");
  if (!dir) throw new Error("--dir <HF checkpoint dir> is required (e.g. bench/scale.ts's cached checkpoint)");
  const dtype = arg("--dtype", "auto") as "f32" | "f16" | "auto";
  const tokens = Number(arg("--tokens", "512"));
  const recompute = process.argv.includes("--recompute");
  const quantize = quantizeFlag(arg("--quantize", ""));
  const gpu = await acquireGpu();
  if (!gpu.features.timestampQuery) throw new Error("update-profile needs the timestamp-query feature");
  try {
    const model = await loadModel(dir, { gpu, dtype, quantize, maxSlots: 1, maxSeqLen: 64 });
    const lora = model.createAdapter({ rank: 16, alpha: 32, seed: 3 });
    const optimizer = Optimizer.forLora(lora, { lr: 1e-4 });
    const ppo = { temperature: 1, clipLow: 0.2, clipHigh: 0.28, recompute };
    const vocab = model.config.vocabSize;
    await policyGradients(model.transformer, makeBatch(vocab, 1, 16, 9), ppo, optimizer.sink); // compile
    optimizer.zeroGrad();
    await gpu.sync();
    const profile = profileDispatches(gpu, { shapes: true });
    const t0 = performance.now();
    await policyGradients(model.transformer, makeBatch(vocab, 1, tokens, 5), ppo, optimizer.sink);
    await gpu.sync();
    const wallMs = performance.now() - t0;
    const common = {
      bench: "update-profile",
      model: dir,
      tokens,
      dtype,
      recompute,
      quantize,
      adapter: gpu.info.description,
    };
    emitProfile(common, await profile.stop(), wallMs);
    optimizer.dispose();
    model.dispose();
  } finally {
    gpu.destroy();
  }
}
