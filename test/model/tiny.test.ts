// Tiny random models: a complete HF directory that our own loaders accept, deterministic in the
// seed, with HF-like initialisation statistics.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { QWEN2_5_CHAT_TEMPLATE } from "../../src/model/chat-template.ts";
import { loadCheckpoint } from "../../src/model/loader.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { ModelTokenizer } from "../../src/model/tokenizer.ts";

const root = mkdtempSync(join(tmpdir(), "fulgur-tiny-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8"));

describe("writeTinyModel", () => {
  it("writes a complete Qwen2 directory that the loader and tokenizer accept", async () => {
    const dir = join(root, "qwen");
    const tiny = await writeTinyModel(dir, { seed: 1 });
    expect(readdirSync(dir).sort()).toEqual(
      ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"].sort(),
    );
    const config = readJson(join(dir, "config.json"));
    expect(config).toMatchObject({
      architectures: ["Qwen2ForCausalLM"],
      model_type: "qwen2",
      vocab_size: 512,
      torch_dtype: "float32",
    });
    const tokenizerConfig = readJson(join(dir, "tokenizer_config.json"));
    expect(tokenizerConfig.chat_template).toBe(QWEN2_5_CHAT_TEMPLATE);
    expect(tokenizerConfig.eos_token).toBe("<|im_end|>");

    const tok = await ModelTokenizer.load(dir);
    expect(tok.vocabSize).toBe(tiny.config.vocabSize);
    expect(tok.eosTokenIds).toEqual([tok.tokenToId("<|im_end|>"), tok.tokenToId("<|endoftext|>")]);
    const ck = await loadCheckpoint(dir);
    expect(ck.config).toEqual(tiny.config);
    await ck.close();
  });

  it("initialises like HF: N(0, 0.02) weights, unit norms, small nonzero biases", async () => {
    const dir = join(root, "stats");
    await writeTinyModel(dir, { seed: 2, hidden: 128, intermediate: 256, heads: 4, kvHeads: 2, layers: 1 });
    const ck = await loadCheckpoint(dir);
    const w = await ck.get("model.layers.0.mlp.up_proj.weight");
    const mean = w.reduce((a, b) => a + b, 0) / w.length;
    const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
    // 32768 samples: the sample mean/std are within a few percent of 0 and 0.02.
    expect(Math.abs(mean)).toBeLessThan(0.001);
    expect(Math.abs(std - 0.02)).toBeLessThan(0.001);
    expect((await ck.get("model.layers.0.input_layernorm.weight")).every((v) => v === 1)).toBe(true);
    const bias = await ck.get("model.layers.0.self_attn.q_proj.bias");
    expect(bias.some((v) => v !== 0)).toBe(true);
    expect(Math.max(...bias.map(Math.abs))).toBeLessThan(0.2);
    await ck.close();
  });

  it("is byte-identical for the same spec and changes weights (only) with the seed", async () => {
    const spec = { seed: 9, hidden: 32, heads: 4, kvHeads: 2, layers: 2, shards: 2, dtype: "F16" as const };
    await writeTinyModel(join(root, "a"), spec);
    await writeTinyModel(join(root, "b"), spec);
    await writeTinyModel(join(root, "c"), { ...spec, seed: 10 });
    const files = readdirSync(join(root, "a")).sort();
    expect(files).toContain("model.safetensors.index.json");
    expect(files).toContain("model-00002-of-00002.safetensors");
    for (const f of files)
      expect(readFileSync(join(root, "b", f)).equals(readFileSync(join(root, "a", f))), f).toBe(true);
    expect(
      readFileSync(join(root, "c", "tokenizer.json")).equals(readFileSync(join(root, "a", "tokenizer.json"))),
    ).toBe(true);
    const shard = "model-00001-of-00002.safetensors";
    expect(readFileSync(join(root, "c", shard)).equals(readFileSync(join(root, "a", shard)))).toBe(false);
  });

  it("writes Llama variants with biases, an untied head, explicit head_dim and a padded vocab", async () => {
    const dir = join(root, "llama");
    const tiny = await writeTinyModel(dir, {
      architecture: "LlamaForCausalLM",
      hidden: 32,
      heads: 4,
      kvHeads: 1,
      headDim: 12,
      layers: 1,
      tie: false,
      attentionBias: true,
      mlpBias: true,
      vocabSize: 520,
      perturbNorms: true,
      dtype: "BF16",
    });
    expect(tiny.config).toMatchObject({
      architecture: "LlamaForCausalLM",
      headDim: 12,
      attentionBias: true,
      outputBias: true,
      mlpBias: true,
      tieWordEmbeddings: false,
      vocabSize: 520,
      torchDtype: "bfloat16",
    });
    const ck = await loadCheckpoint(dir);
    expect(ck.info("model.layers.0.self_attn.q_proj.weight").shape).toEqual([48, 32]);
    expect(ck.info("model.layers.0.self_attn.o_proj.bias").shape).toEqual([32]);
    expect(ck.info("lm_head.weight").shape).toEqual([520, 32]);
    expect((await ck.get("model.norm.weight")).some((v) => v !== 1)).toBe(true);
    await ck.close();
  });

  it("rejects specs it cannot honour", async () => {
    await expect(writeTinyModel(join(root, "x"), { vocabSize: 100 })).rejects.toThrow(
      /vocabSize 100 is smaller than the tokenizer's 512 ids/,
    );
    await expect(writeTinyModel(join(root, "y"), { attentionBias: true })).rejects.toThrow(
      /attentionBias does not apply to Qwen2ForCausalLM/,
    );
    await expect(writeTinyModel(join(root, "z"), { heads: 3, hidden: 32 })).rejects.toThrow(/not divisible/);
  });
});
