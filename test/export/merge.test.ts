// LoRA merge: the f64 merge against a plain triple-loop reference on awkward shapes, and the
// end-to-end claim that a merged HF directory (via `fulgur export`) loads with loadModel and
// gives the same logits as the base model with the adapter attached.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExportArgs, runExport } from "../../src/commands/export.ts";
import { mergeLoraWeight } from "../../src/export/merge.ts";
import { type ModelConfig, projectionShape } from "../../src/model/config.ts";
import { loadModel } from "../../src/model/model.ts";
import { ALL_PROJECTIONS, type LoraConfig, type LoraTensor, peftKey, writePeftAdapter } from "../../src/model/peft.ts";
import { type TinyModel, writeTinyModel } from "../../src/model/tiny.ts";
import { expectClose, maxAbsDiff } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { normal } from "../helpers/random.ts";

const root = mkdtempSync(join(tmpdir(), "fulgur-merge-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const getGpu = useGpu();

/** W + scale·B·A by the definition, one output element at a time. */
function referenceMerge(
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  out: number,
  inp: number,
  r: number,
  scale: number,
) {
  const merged = new Float64Array(out * inp);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inp; i++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += b[o * r + k] * a[k * inp + i];
      merged[o * inp + i] = w[o * inp + i] + scale * s;
    }
  }
  return merged;
}

describe("mergeLoraWeight", () => {
  it("matches W + scale·B·A on awkward shapes", () => {
    let seed = 1;
    for (const [out, inp, r] of [
      [1, 1, 1],
      [7, 3, 2],
      [129, 65, 8],
      [5, 129, 1],
    ]) {
      const w = normal(out * inp, seed++);
      const a = normal(r * inp, seed++);
      const b = normal(out * r, seed++);
      const got = mergeLoraWeight("w", w, [out, inp], { shape: [r, inp], data: a }, { shape: [out, r], data: b }, 0.75);
      // Both sum in f64; only the final f32 rounding differs (≤ 1 ulp of values of size ~10).
      expectClose(
        got,
        referenceMerge(w, a, b, out, inp, r, 0.75),
        { atol: 1e-6, rtol: 1e-6 },
        `[${out},${inp}] r=${r}`,
      );
    }
  });

  it("names the shapes when the factors do not chain", () => {
    const w = new Float32Array(12);
    expect(() =>
      mergeLoraWeight(
        "q",
        w,
        [4, 3],
        { shape: [2, 4], data: new Float32Array(8) },
        { shape: [4, 2], data: new Float32Array(8) },
        1,
      ),
    ).toThrow(/q: cannot merge LoRA A \[2,4\] and B \[4,2\] into weight \[4,3\]; expected A \[r, 3\] and B \[4, r\]/);
  });
});

/** An adapter on every projection of every layer with B ≠ 0, large enough to move the logits. */
async function writeRandomAdapter(dir: string, model: ModelConfig, seed: number): Promise<void> {
  const config: LoraConfig = {
    r: 4,
    loraAlpha: 8,
    targetModules: [...ALL_PROJECTIONS],
    loraDropout: 0,
    baseModelNameOrPath: null,
    useRslora: false,
    layersToTransform: null,
  };
  const tensors = new Map<string, LoraTensor>();
  for (let l = 0; l < model.numLayers; l++) {
    for (const m of ALL_PROJECTIONS) {
      const [out, inp] = projectionShape(model, m);
      tensors.set(peftKey(l, m, "A"), { shape: [4, inp], data: normal(4 * inp, seed++, 0.1) });
      tensors.set(peftKey(l, m, "B"), { shape: [out, 4], data: normal(out * 4, seed++, 0.1) });
    }
  }
  await writePeftAdapter(dir, config, tensors, { model });
}

describe("fulgur export --format safetensors", () => {
  const cases = [
    ["Qwen2ForCausalLM", { tie: true }],
    ["LlamaForCausalLM", { tie: false, lmHeadStd: 0.5 }],
  ] as const;
  const models: Record<string, TinyModel> = {};
  beforeAll(async () => {
    for (const [architecture, extra] of cases) {
      const tiny = await writeTinyModel(join(root, architecture), {
        architecture,
        hidden: 48,
        layers: 2,
        heads: 4,
        kvHeads: 2,
        intermediate: 72,
        seed: 11,
        perturbNorms: true,
        ...extra,
      });
      await writeRandomAdapter(join(root, `${architecture}-adapter`), tiny.config, 100);
      models[architecture] = tiny;
    }
  });

  for (const [architecture] of cases) {
    it(`${architecture}: the merged directory loads and matches base + adapter logits`, async () => {
      const tiny = models[architecture];
      const adapterDir = join(root, `${architecture}-adapter`);
      const out = join(root, `${architecture}-merged`);
      const code = await runExport([
        "--model",
        tiny.dir,
        "--adapter",
        adapterDir,
        "--merge",
        "--format",
        "safetensors",
        "--out",
        out,
      ]);
      expect(code).toBe(0);
      for (const f of ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"]) {
        expect(existsSync(join(out, f))).toBe(true);
      }
      expect(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).torch_dtype).toBe("float32");

      const gpu = getGpu();
      const tokens = Array.from({ length: 37 }, (_, i) => (i * 131 + 7) % tiny.config.vocabSize);
      const base = await loadModel(tiny.dir, { gpu });
      const merged = await loadModel(out, { gpu });
      try {
        const plain = await base.logits(tokens);
        await base.loadAdapter(adapterDir);
        const adapted = await base.logits(tokens);
        const fromMerged = await merged.logits(tokens);
        // The adapter must matter, or the comparison below proves nothing.
        expect(maxAbsDiff(plain, adapted)).toBeGreaterThan(1e-2);
        // Same math in a different association ((x·Aᵀ)·Bᵀ on the GPU vs x·(W+BA)ᵀ): f32 rounding
        // only, ~1e-6 relative per layer; 1e-4 relative of the logit scale as the issue asks.
        let scale = 0;
        for (const v of adapted) scale = Math.max(scale, Math.abs(v));
        expectClose(fromMerged, adapted, { atol: 1e-4 * scale, rtol: 1e-4 }, `${architecture} merged vs adapter`);
      } finally {
        base.dispose();
        merged.dispose();
      }
    });
  }

  it("writes an f16 directory that loads, with torch_dtype float16", async () => {
    const tiny = models.Qwen2ForCausalLM;
    const out = join(root, "f16-merged");
    const args = ["--model", tiny.dir, "--merge", "--format", "safetensors", "--dtype", "f16", "--out", out];
    expect(await runExport(args)).toBe(0);
    expect(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).torch_dtype).toBe("float16");
    const gpu = getGpu();
    const tokens = [1, 2, 3, 400, 5];
    const a = await loadModel(tiny.dir, { gpu });
    const b = await loadModel(out, { gpu });
    try {
      // f16 weights: ~3 significant digits per weight, random-init logits of size ~0.1.
      expectClose(await b.logits(tokens), await a.logits(tokens), { atol: 2e-3, rtol: 2e-2 }, "f16 export");
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});

describe("fulgur export argument errors", () => {
  it("names what is wrong in the arguments", () => {
    const dir = join(root, "Qwen2ForCausalLM");
    const out = join(root, "x");
    expect(() => parseExportArgs(["--model", dir, "--format", "onnx", "--out", out])).toThrow(
      /--format must be "peft", "safetensors" or "gguf", got "onnx"/,
    );
    expect(() => parseExportArgs(["--model", dir, "--format", "gguf"])).toThrow(/--out PATH is required/);
    expect(() => parseExportArgs(["--model", dir, "--adapter", dir, "--format", "gguf", "--out", out])).toThrow(
      /--adapter needs --merge/,
    );
    expect(() => parseExportArgs(["--model", join(root, "nope"), "--format", "gguf", "--out", out])).toThrow(
      /is not a directory/,
    );
    expect(() => parseExportArgs(["--model", dir, "--format", "gguf", "--dtype", "q4", "--out", out])).toThrow(
      /--dtype must be "f32", "f16" or "q8_0", got "q4"/,
    );
    expect(() => parseExportArgs(["--model", dir, "--format", "safetensors", "--dtype", "q8_0", "--out", out])).toThrow(
      /--dtype q8_0 is a GGUF type/,
    );
    expect(parseExportArgs(["--model", dir, "--format", "gguf", "--dtype", "q8_0", "--out", out]).dtype).toBe("q8_0");
  });

  it("exits 2 on bad arguments and 1 when the model directory is not a checkpoint", async () => {
    expect(await runExport(["--bogus"])).toBe(2);
    expect(await runExport(["--model", root, "--format", "gguf", "--out", join(root, "x.gguf")])).toBe(1);
  });
});
