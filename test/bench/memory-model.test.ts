// The memory formula of docs/memory.md against a real model on the GPU: its LoRA/AdamW term is
// exactly the optimizer's parameter count × 16 bytes, and its weights term matches the pool's
// live bytes after loading (f32, f16, int8 and int4 linears) up to the size-class rounding and
// the (uncounted) biases.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { memoryTerms } from "../../bench/memory-model.ts";
import { acquireGpu } from "../../src/gpu/index.ts";
import { loadModel } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { Optimizer } from "../../src/trainer/optimizer.ts";

const root = mkdtempSync(join(tmpdir(), "fulgur-memory-model-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("memoryTerms", () => {
  it("predicts the LoRA state exactly and the weights within pool rounding", async () => {
    const gpu = await acquireGpu();
    try {
      const tiny = await writeTinyModel(join(root, "m"), {
        hidden: 96,
        layers: 3,
        heads: 6,
        kvHeads: 2,
        intermediate: 224, // int4 groups need rows of whole 32s
        tie: false,
        seed: 2,
      });
      // Every storage format the formula knows: f32; f16 (linears and embedding); int8 and int4
      // linears with the rest in f16.
      const formats = [
        { format: "f32", load: { dtype: "f32" } },
        { format: "f16", load: { dtype: "f16" } },
        { format: "int8", load: { dtype: "f16", quantize: "int8" } },
        { format: "int4", load: { dtype: "f16", quantize: "int4" } },
      ] as const;
      for (const { format, load } of formats) {
        if (load.dtype === "f16" && !gpu.features.shaderF16) continue;
        gpu.pool.trim();
        const base = gpu.pool.stats().liveBytes;
        const model = await loadModel(tiny.dir, { gpu, maxSlots: 1, maxSeqLen: 32, ...load });
        try {
          const weights = gpu.pool.stats().liveBytes - base;
          const terms = memoryTerms(tiny.config, format, 8);
          expect(weights, format).toBeGreaterThanOrEqual(terms.weights);
          expect(weights, format).toBeLessThan(terms.weights * 1.2);
          const lora = model.createAdapter({ rank: 8, alpha: 16, seed: 1 });
          const optimizer = Optimizer.forLora(lora, { lr: 1e-3 });
          expect(terms.loraState).toBe(optimizer.parameterCount * 16);
          optimizer.dispose();
        } finally {
          model.dispose();
        }
      }
    } finally {
      gpu.destroy();
    }
  }, 300_000);
});
