// `fulgur export --format peft`: a trainer checkpoint (or an adapter) becomes a clean PEFT adapter
// directory, checked against the base model, in f32 or f16; it loads back onto the model.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseExportArgs, runExport } from "../../src/commands/export.ts";
import { loadModel } from "../../src/model/model.ts";
import { readPeftAdapter } from "../../src/model/peft.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { saveCheckpoint } from "../../src/trainer/checkpoint.ts";
import { Optimizer } from "../../src/trainer/optimizer.ts";
import { useGpu } from "../helpers/gpu.ts";

const gpu = useGpu();
const root = mkdtempSync(join(tmpdir(), "fulgur-peft-export-"));
const modelDir = join(root, "model");
const ckpt = join(root, "ckpt");
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  const tiny = await writeTinyModel(modelDir, {
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    intermediate: 48,
    seed: 4,
  });
  const model = await loadModel(tiny.dir, { gpu: gpu() });
  try {
    const adapter = model.createAdapter({ rank: 4, alpha: 8, seed: 5 });
    // Give lora_B values (PEFT initialises it to zero), so a lost tensor would show.
    for (const { name, tensor } of adapter.parameters()) {
      if (name.includes("lora_B"))
        tensor.write(Float32Array.from({ length: tensor.size }, (_, i) => Math.sin(i + 1) * 0.01));
    }
    const optimizer = Optimizer.forLora(adapter, { lr: 0 });
    await saveCheckpoint(ckpt, model, optimizer, { step: 3, extra: {} });
    await saveCheckpoint(ckpt, model, optimizer, { step: 7, extra: {} });
    optimizer.dispose();
  } finally {
    model.dispose();
  }
});

it("writes the newest checkpoint's adapter as PEFT, f32 exactly and f16 closely", async () => {
  const source = await readPeftAdapter(join(ckpt, "step-000007", "adapter"));
  for (const dtype of ["f32", "f16"] as const) {
    const out = join(root, `peft-${dtype}`);
    expect(
      await runExport(["--model", modelDir, "--checkpoint", ckpt, "--format", "peft", "--dtype", dtype, "--out", out]),
    ).toBe(0);
    const written = await readPeftAdapter(out);
    expect(written.config.r).toBe(4);
    expect(written.config.baseModelNameOrPath).not.toBeNull();
    expect([...written.tensors.keys()].sort()).toEqual([...source.tensors.keys()].sort());
    let maxDiff = 0;
    let maxAbs = 0;
    for (const [key, t] of source.tensors) {
      const w = written.tensors.get(key)!;
      expect(w.shape).toEqual(t.shape);
      for (let i = 0; i < t.data.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(w.data[i] - t.data[i]));
        maxAbs = Math.max(maxAbs, Math.abs(t.data[i]));
      }
    }
    expect(maxAbs).toBeGreaterThan(0);
    if (dtype === "f32") expect(maxDiff).toBe(0);
    else expect(maxDiff).toBeLessThan(maxAbs * 1e-3);
  }
  // A step directory works too, and the export loads onto the base model.
  const out = join(root, "peft-step3");
  expect(
    await runExport(["--model", modelDir, "--checkpoint", join(ckpt, "step-000003"), "--format", "peft", "--out", out]),
  ).toBe(0);
  const model = await loadModel(modelDir, { gpu: gpu() });
  try {
    await model.loadAdapter(out);
    expect(model.adapter?.rank).toBe(4);
  } finally {
    model.dispose();
  }
});

it("names what is wrong", () => {
  const out = join(root, "x");
  expect(() => parseExportArgs(["--model", modelDir, "--format", "peft", "--out", out])).toThrow(
    /--adapter DIR or --checkpoint DIR/,
  );
  expect(() =>
    parseExportArgs(["--model", modelDir, "--checkpoint", ckpt, "--merge", "--format", "peft", "--out", out]),
  ).toThrow(/--merge writes a whole model/);
  expect(() =>
    parseExportArgs(["--model", modelDir, "--checkpoint", modelDir, "--format", "peft", "--out", out]),
  ).toThrow(/is not a training checkpoint/);
  expect(() =>
    parseExportArgs([
      "--model",
      modelDir,
      "--checkpoint",
      ckpt,
      "--adapter",
      modelDir,
      "--format",
      "peft",
      "--out",
      out,
    ]),
  ).toThrow(/not both/);
});
