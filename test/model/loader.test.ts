// loadCheckpoint: config + safetensors together, validation that reports every problem at once.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { tensorNames } from "../../src/model/config.ts";
import { loadCheckpoint } from "../../src/model/loader.ts";
import { openSafetensors } from "../../src/model/safetensors.ts";
import { f32ToBf16, type TensorToWrite, writeSafetensors } from "../../src/model/safetensors-write.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";

const root = mkdtempSync(join(tmpdir(), "fulgur-loader-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Rewrites a single-file checkpoint keeping only the tensors `keep` accepts. */
async function dropTensors(dir: string, drop: (name: string) => boolean): Promise<void> {
  const path = join(dir, "model.safetensors");
  const st = await openSafetensors(path);
  const kept: Record<string, TensorToWrite> = {};
  for (const name of st.names()) {
    if (drop(name)) continue;
    kept[name] = { dtype: st.info(name).dtype, shape: st.info(name).shape, data: await st.read(name) };
  }
  await st.close();
  await writeSafetensors(path, kept);
}

describe("loadCheckpoint", () => {
  it("streams every needed tensor in order with the config's shapes", async () => {
    const dir = join(root, "qwen");
    const tiny = await writeTinyModel(dir, {
      seed: 3,
      hidden: 32,
      heads: 4,
      kvHeads: 2,
      layers: 2,
      tokenizerVocabSize: 300,
    });
    const ck = await loadCheckpoint(dir);
    expect(ck.config).toEqual(tiny.config);
    const seen: string[] = [];
    for await (const [name, shape, data] of ck.tensors()) {
      seen.push(name);
      expect(data.length).toBe(shape.reduce((a, b) => a * b, 1));
      expect(ck.info(name).shape).toEqual(shape);
    }
    expect(seen).toEqual(tensorNames(ck.config));
    expect((await ck.get("model.norm.weight")).every((v) => v === 1)).toBe(true);
    await expect(ck.get("lm_head.weight")).rejects.toThrow(/not a tensor this Qwen2ForCausalLM model uses/);
    await ck.close();
  });

  it("loads sharded BF16 checkpoints to the same values as a single F32 file, rounded to bf16", async () => {
    const spec = { seed: 5, hidden: 32, heads: 2, kvHeads: 1, layers: 3, tie: false, tokenizerVocabSize: 300 } as const;
    await writeTinyModel(join(root, "f32"), { ...spec, dtype: "F32" });
    await writeTinyModel(join(root, "bf16"), { ...spec, dtype: "BF16", shards: 3 });
    const a = await loadCheckpoint(join(root, "f32"));
    const b = await loadCheckpoint(join(root, "bf16"));
    expect(b.config.torchDtype).toBe("bfloat16");
    for (const { name } of a.specs) {
      expect(b.info(name).dtype).toBe("BF16");
      const full = await a.get(name);
      const halfBits = new Uint32Array((await b.get(name)).buffer);
      let wrong = 0;
      for (let i = 0; i < full.length; i++) if (halfBits[i] !== (f32ToBf16(full[i]) << 16) >>> 0) wrong++;
      expect(wrong, name).toBe(0);
    }
    await a.close();
    await b.close();
  });

  it("lists every missing tensor in one error", async () => {
    const dir = join(root, "missing");
    await writeTinyModel(dir, { seed: 1, hidden: 32, heads: 4, kvHeads: 2, layers: 3, tokenizerVocabSize: 300 });
    await dropTensors(dir, (n) => n.includes("q_proj") || n === "model.norm.weight");
    const err = await loadCheckpoint(dir).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toMatch(/missing 7 tensor\(s\)/);
    for (let l = 0; l < 3; l++) {
      expect(msg).toContain(`model.layers.${l}.self_attn.q_proj.weight`);
      expect(msg).toContain(`model.layers.${l}.self_attn.q_proj.bias`);
    }
    expect(msg).toContain("model.norm.weight");
  });

  it("reports shape mismatches against config.json", async () => {
    const dir = join(root, "shapes");
    await writeTinyModel(dir, {
      seed: 1,
      hidden: 32,
      heads: 4,
      kvHeads: 2,
      intermediate: 64,
      layers: 1,
      tokenizerVocabSize: 300,
    });
    const cfgPath = join(dir, "config.json");
    const cfg = JSON.parse(await readFile(cfgPath, "utf8"));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, intermediate_size: 80 }));
    await expect(loadCheckpoint(dir)).rejects.toThrow(
      /model\.layers\.0\.mlp\.gate_proj\.weight has shape \[64,32\], config expects \[80,32\][\s\S]*down_proj\.weight has shape \[32,64\], config expects \[32,80\]/,
    );
  });

  it("ignores a redundant lm_head when embeddings are tied", async () => {
    const dir = join(root, "extra");
    await writeTinyModel(dir, {
      seed: 2,
      hidden: 32,
      heads: 4,
      kvHeads: 4,
      layers: 1,
      tie: false,
      tokenizerVocabSize: 300,
    });
    const cfgPath = join(dir, "config.json");
    const cfg = JSON.parse(await readFile(cfgPath, "utf8"));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, tie_word_embeddings: true }));
    const ck = await loadCheckpoint(dir);
    expect(ck.specs.some((s) => s.name === "lm_head.weight")).toBe(false);
    await ck.close();
  });

  it("says what it expected when the directory has no config.json", async () => {
    await expect(loadCheckpoint(mkdtempSync(join(root, "empty-")))).rejects.toThrow(
      /no config.json .*Hugging Face model directory/,
    );
  });

  it("refuses a Gemma 3 checkpoint the kernels cannot run faithfully up front, naming what they lack", async () => {
    const dir = mkdtempSync(join(root, "gemma-"));
    const fixture = fileURLToPath(new URL("../fixtures/configs/gemma-3-1b-it.json", import.meta.url));
    const softcapped = { ...JSON.parse(readFileSync(fixture, "utf8")), final_logit_softcapping: 30 };
    writeFileSync(join(dir, "config.json"), JSON.stringify(softcapped));
    await expect(loadCheckpoint(dir)).rejects.toThrow(
      /Gemma3ForCausalLM: this Gemma 3 config needs what the kernels do not implement: final_logit_softcapping 30/,
    );
  });
});
