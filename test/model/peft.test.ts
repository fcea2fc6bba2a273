// PEFT LoRA adapter I/O: key naming, bit-exact round trips, adapter_config.json fields, and
// validation against a model config.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseModelConfig, projectionShape } from "../../src/model/config.ts";
import {
  ALL_PROJECTIONS,
  checkPeftAdapter,
  type LoraConfig,
  type LoraTensor,
  loraScale,
  parseLoraConfig,
  parsePeftKey,
  peftKey,
  readPeftAdapter,
  writePeftAdapter,
} from "../../src/model/peft.ts";
import { writeSafetensors } from "../../src/model/safetensors-write.ts";
import { normal } from "../helpers/random.ts";

const root = mkdtempSync(join(tmpdir(), "fulgur-peft-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const model = parseModelConfig({
  architectures: ["Qwen2ForCausalLM"],
  vocab_size: 100,
  hidden_size: 24,
  intermediate_size: 40,
  num_hidden_layers: 3,
  num_attention_heads: 4,
  num_key_value_heads: 2,
});

const baseConfig: LoraConfig = {
  r: 4,
  loraAlpha: 16,
  targetModules: ["q_proj", "v_proj", "down_proj"],
  loraDropout: 0,
  baseModelNameOrPath: "Qwen/Qwen2.5-0.5B-Instruct",
  useRslora: false,
  layersToTransform: null,
};

function randomAdapter(config: LoraConfig, seed: number): Map<string, LoraTensor> {
  const tensors = new Map<string, LoraTensor>();
  const layers = config.layersToTransform ?? [0, 1, 2];
  for (const l of layers) {
    for (const m of config.targetModules) {
      const [out, inp] = projectionShape(model, m);
      tensors.set(peftKey(l, m, "A"), { shape: [config.r, inp], data: normal(config.r * inp, seed++) });
      tensors.set(peftKey(l, m, "B"), { shape: [out, config.r], data: normal(out * config.r, seed++) });
    }
  }
  return tensors;
}

describe("PEFT keys", () => {
  it("names attention and MLP factors like PEFT and parses them back", () => {
    expect(peftKey(3, "q_proj", "A")).toBe("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight");
    expect(peftKey(0, "down_proj", "B")).toBe("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
    for (const m of ALL_PROJECTIONS) {
      for (const which of ["A", "B"] as const)
        expect(parsePeftKey(peftKey(11, m, which))).toEqual({ layer: 11, module: m, which });
    }
    expect(parsePeftKey("base_model.model.model.layers.2.self_attn.k_proj.lora_B.default.weight")).toEqual({
      layer: 2,
      module: "k_proj",
      which: "B",
    });
  });

  it("rejects keys that are not LoRA factors of a known projection", () => {
    for (const bad of [
      "base_model.model.model.layers.0.mlp.q_proj.lora_A.weight",
      "base_model.model.model.layers.0.self_attn.q_proj.lora_C.weight",
      "base_model.model.model.embed_tokens.lora_A.weight",
      "model.layers.0.self_attn.q_proj.lora_A.weight",
    ]) {
      expect(() => parsePeftKey(bad), bad).toThrow(/is not a LoRA weight key/);
    }
    expect(() => peftKey(0, "qkv_proj" as "q_proj", "A")).toThrow(/unknown LoRA target "qkv_proj"/);
  });
});

describe("adapter_config.json", () => {
  it("parses PEFT's config and accepts all-linear and full module paths as targets", () => {
    const c = parseLoraConfig({
      peft_type: "LORA",
      r: 8,
      lora_alpha: 32,
      target_modules: ["model.layers.0.self_attn.q_proj", "o_proj"],
      lora_dropout: 0.05,
      bias: "none",
      task_type: "CAUSAL_LM",
      use_rslora: true,
      layers_to_transform: 1,
    });
    expect(c).toMatchObject({
      r: 8,
      loraAlpha: 32,
      targetModules: ["q_proj", "o_proj"],
      useRslora: true,
      layersToTransform: [1],
    });
    expect(loraScale(c)).toBeCloseTo(32 / Math.sqrt(8), 12);
    expect(loraScale({ ...c, useRslora: false })).toBe(4);
    expect(parseLoraConfig({ peft_type: "LORA", r: 2, target_modules: "all-linear" }).targetModules).toEqual([
      ...ALL_PROJECTIONS,
    ]);
  });

  it("rejects what we cannot apply, saying what and why", () => {
    const ok = { peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["q_proj"] };
    expect(() => parseLoraConfig({ ...ok, peft_type: "IA3" })).toThrow(/peft_type "IA3" is not "LORA"/);
    expect(() => parseLoraConfig({ ...ok, r: 0 })).toThrow(/r must be a positive integer/);
    expect(() => parseLoraConfig({ ...ok, fan_in_fan_out: true })).toThrow(/fan_in_fan_out/);
    expect(() => parseLoraConfig({ ...ok, bias: "all" })).toThrow(/bias "all" is not supported/);
    expect(() => parseLoraConfig({ ...ok, use_dora: true })).toThrow(/DoRA/);
    expect(() => parseLoraConfig({ ...ok, rank_pattern: { q_proj: 8 } })).toThrow(/rank_pattern/);
    expect(() => parseLoraConfig({ ...ok, target_modules: ["lm_head"] })).toThrow(
      /target module "lm_head" is not supported/,
    );
    expect(() => parseLoraConfig({ ...ok, task_type: "SEQ_CLS" })).toThrow(/task_type "SEQ_CLS"/);
  });
});

describe("readPeftAdapter / writePeftAdapter", () => {
  it("round-trips config and tensors bit-exactly", async () => {
    const dir = join(root, "roundtrip");
    const tensors = randomAdapter(baseConfig, 1);
    const first = tensors.get(peftKey(0, "q_proj", "A"))!.data;
    first.set([Number.NaN, Number.NEGATIVE_INFINITY, -0, 1e-45], 0);
    await writePeftAdapter(dir, baseConfig, tensors, { model });
    const back = await readPeftAdapter(dir, model);
    expect(back.config).toEqual({ ...baseConfig, targetModules: ["down_proj", "q_proj", "v_proj"] });
    expect([...back.tensors.keys()].sort()).toEqual([...tensors.keys()].sort());
    for (const [key, t] of tensors) {
      const b = back.tensors.get(key)!;
      expect(b.shape).toEqual(t.shape);
      expect(new Uint32Array(b.data.buffer)).toEqual(new Uint32Array(t.data.buffer));
    }
    const json = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
    expect(json).toMatchObject({
      peft_type: "LORA",
      r: 4,
      lora_alpha: 16,
      target_modules: ["down_proj", "q_proj", "v_proj"],
      lora_dropout: 0,
      bias: "none",
      task_type: "CAUSAL_LM",
      base_model_name_or_path: "Qwen/Qwen2.5-0.5B-Instruct",
      fan_in_fan_out: false,
      use_rslora: false,
      use_dora: false,
    });
  });

  it("writes BF16 adapters when asked and reads keys saved with an adapter name", async () => {
    const dir = join(root, "bf16");
    const config = { ...baseConfig, targetModules: ["k_proj" as const], layersToTransform: [2] };
    await writePeftAdapter(dir, config, randomAdapter(config, 7), { dtype: "BF16" });
    const back = await readPeftAdapter(dir, model);
    const a = back.tensors.get(peftKey(2, "k_proj", "A"))!;
    expect(new Uint32Array(a.data.buffer).every((bits) => (bits & 0xffff) === 0)).toBe(true);

    const named = join(root, "named");
    await writePeftAdapter(named, config, randomAdapter(config, 7));
    const renamed: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const [k, t] of randomAdapter(config, 7)) {
      renamed[k.replace(".weight", ".default.weight")] = { dtype: "F32", ...t };
    }
    await writeSafetensors(join(named, "adapter_model.safetensors"), renamed);
    expect([...(await readPeftAdapter(named, model)).tensors.keys()].sort()).toEqual([
      peftKey(2, "k_proj", "A"),
      peftKey(2, "k_proj", "B"),
    ]);
  });

  it("lists every shape mismatch, missing and unexpected tensor against the model", () => {
    const tensors = randomAdapter(baseConfig, 3);
    tensors.set(peftKey(1, "v_proj", "B"), { shape: [24, 4], data: new Float32Array(96) }); // v out is 2·6 = 12
    tensors.delete(peftKey(2, "down_proj", "A"));
    tensors.set(peftKey(0, "up_proj", "A"), { shape: [4, 24], data: new Float32Array(96) });
    const problems = checkPeftAdapter({ config: { ...baseConfig, layersToTransform: [0, 1, 2, 5] }, tensors }, model);
    expect(problems).toContain("layers_to_transform has 5, but the model has 3 layers");
    expect(problems).toContain(`${peftKey(1, "v_proj", "B")} has shape [24,4], expected [12,4]`);
    expect(problems).toContain(`missing ${peftKey(2, "down_proj", "A")} (expected shape [4,40])`);
    expect(problems).toContain(`unexpected tensor ${peftKey(0, "up_proj", "A")} (not a target of this adapter config)`);
    expect(checkPeftAdapter({ config: baseConfig, tensors: randomAdapter(baseConfig, 3) }, model)).toEqual([]);
  });

  it("refuses to write tensors whose rank or target disagrees with the config", async () => {
    const tensors = randomAdapter(baseConfig, 5);
    tensors.set(peftKey(0, "q_proj", "A"), { shape: [3, 24], data: new Float32Array(72) });
    await expect(writePeftAdapter(join(root, "bad"), baseConfig, tensors)).rejects.toThrow(
      /lora_A needs rank 4 in dim 0/,
    );
    const stray = randomAdapter(baseConfig, 5);
    stray.set(peftKey(0, "o_proj", "B"), { shape: [24, 4], data: new Float32Array(96) });
    await expect(writePeftAdapter(join(root, "bad2"), baseConfig, stray)).rejects.toThrow(
      /o_proj is not in target_modules/,
    );
    await expect(writePeftAdapter(join(root, "bad3"), baseConfig, stray, { model })).rejects.toThrow(
      /LoRA adapter does not fit the model/,
    );
    await expect(readPeftAdapter(join(root, "nothing"))).rejects.toThrow(/cannot read adapter_config.json/);
  });
});
