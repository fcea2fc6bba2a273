// config.json parsing for Qwen2/Llama, the tensor list a config implies, and RoPE frequencies.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  assertRunnable,
  embeddingScale,
  expectedTensors,
  layerAttention,
  normWeightOffset,
  parameterCount,
  parseModelConfig,
  ropeInverseFrequencies,
  tensorNames,
} from "../../src/model/config.ts";

const fixtures = fileURLToPath(new URL("../fixtures/configs", import.meta.url));
const readConfig = (name: string) => JSON.parse(readFileSync(join(fixtures, name), "utf8"));

describe("parseModelConfig", () => {
  it("reads Qwen2.5-0.5B-Instruct's config", () => {
    const c = parseModelConfig(readConfig("qwen2.5-0.5b-instruct.json"));
    expect(c).toEqual({
      architecture: "Qwen2ForCausalLM",
      vocabSize: 151936,
      hiddenSize: 896,
      intermediateSize: 4864,
      numLayers: 24,
      numHeads: 14,
      numKvHeads: 2,
      headDim: 64,
      ropeTheta: 1e6,
      ropeScaling: null,
      rmsNormEps: 1e-6,
      tieWordEmbeddings: true,
      attentionBias: true,
      outputBias: false,
      mlpBias: false,
      maxPositionEmbeddings: 32768,
      bosTokenId: 151643,
      eosTokenIds: [151645],
      torchDtype: "bfloat16",
      qkNorm: false,
      slidingWindow: null,
      gemma3: null,
    });
  });

  it("reads Llama-3.2-1B-Instruct's config with explicit head_dim, eos list and llama3 rope scaling", () => {
    const c = parseModelConfig(readConfig("llama-3.2-1b-instruct.json"));
    expect(c.architecture).toBe("LlamaForCausalLM");
    expect(c.headDim).toBe(64);
    expect(c.numKvHeads).toBe(8);
    expect(c.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(c.attentionBias).toBe(false);
    expect(c.outputBias).toBe(false);
    expect(c.mlpBias).toBe(false);
    expect(c.ropeScaling).toEqual({
      type: "llama3",
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
  });

  it("applies Llama's attention_bias to q/k/v/o and mlp_bias to the MLP", () => {
    const raw = { ...readConfig("llama-3.2-1b-instruct.json"), attention_bias: true, mlp_bias: true };
    const c = parseModelConfig(raw);
    expect([c.attentionBias, c.outputBias, c.mlpBias]).toEqual([true, true, true]);
    const names = tensorNames(c);
    expect(names).toContain("model.layers.0.self_attn.o_proj.bias");
    expect(names).toContain("model.layers.15.mlp.down_proj.bias");
  });

  it("derives head_dim from hidden/heads when absent", () => {
    const raw = { ...readConfig("llama-3.2-1b-instruct.json") };
    delete raw.head_dim;
    expect(parseModelConfig(raw).headDim).toBe(2048 / 32);
  });

  it("names the architecture and the supported ones when it cannot run a model", () => {
    const raw = {
      ...readConfig("qwen2.5-0.5b-instruct.json"),
      architectures: ["PhiForCausalLM"],
      model_type: "phi",
    };
    expect(() => parseModelConfig(raw)).toThrow(
      /unsupported architecture "PhiForCausalLM".*supported: Qwen2ForCausalLM, Qwen3ForCausalLM, LlamaForCausalLM, MistralForCausalLM/,
    );
  });

  it("reports malformed fields by name", () => {
    expect(() => parseModelConfig({ ...readConfig("qwen2.5-0.5b-instruct.json"), hidden_size: "896" })).toThrow(
      /"hidden_size" must be an integer/,
    );
    expect(() => parseModelConfig({ ...readConfig("qwen2.5-0.5b-instruct.json"), num_key_value_heads: 3 })).toThrow(
      /multiple of num_key_value_heads/,
    );
    expect(() =>
      parseModelConfig({ ...readConfig("llama-3.2-1b-instruct.json"), rope_scaling: { rope_type: "yarn", factor: 4 } }),
    ).toThrow(/rope_scaling type "yarn" is not supported/);
    expect(() => parseModelConfig([])).toThrow(/JSON object/);
  });
});

describe("expectedTensors", () => {
  it("lists Qwen2's tensors with q/k/v biases, no o_proj bias, and no lm_head when tied", () => {
    const c = parseModelConfig(readConfig("qwen2.5-0.5b-instruct.json"));
    const specs = expectedTensors(c);
    const byName = new Map(specs.map((s) => [s.name, s.shape]));
    // embed + 24 × (2 norms + 4 weights + 3 biases + 3 MLP weights) + final norm.
    expect(specs.length).toBe(1 + 24 * 12 + 1);
    expect(byName.get("model.embed_tokens.weight")).toEqual([151936, 896]);
    expect(byName.get("model.layers.0.self_attn.q_proj.weight")).toEqual([896, 896]);
    expect(byName.get("model.layers.0.self_attn.q_proj.bias")).toEqual([896]);
    expect(byName.get("model.layers.0.self_attn.k_proj.weight")).toEqual([128, 896]);
    expect(byName.get("model.layers.0.self_attn.v_proj.bias")).toEqual([128]);
    expect(byName.get("model.layers.23.self_attn.o_proj.weight")).toEqual([896, 896]);
    expect(byName.has("model.layers.0.self_attn.o_proj.bias")).toBe(false);
    expect(byName.get("model.layers.5.mlp.gate_proj.weight")).toEqual([4864, 896]);
    expect(byName.get("model.layers.5.mlp.down_proj.weight")).toEqual([896, 4864]);
    expect(byName.get("model.norm.weight")).toEqual([896]);
    expect(byName.has("lm_head.weight")).toBe(false);
  });

  it("adds lm_head when embeddings are untied, and uses head_dim for projection shapes", () => {
    const raw = { ...readConfig("llama-3.2-1b-instruct.json"), tie_word_embeddings: false, head_dim: 128 };
    const byName = new Map(expectedTensors(parseModelConfig(raw)).map((s) => [s.name, s.shape]));
    expect(byName.get("lm_head.weight")).toEqual([128256, 2048]);
    expect(byName.get("model.layers.0.self_attn.q_proj.weight")).toEqual([32 * 128, 2048]);
    expect(byName.get("model.layers.0.self_attn.o_proj.weight")).toEqual([2048, 32 * 128]);
    expect(byName.has("model.layers.0.self_attn.q_proj.bias")).toBe(false);
  });
});

describe("ropeInverseFrequencies", () => {
  it("is theta^(-2i/d) without scaling", () => {
    const c = parseModelConfig(readConfig("qwen2.5-0.5b-instruct.json"));
    const inv = ropeInverseFrequencies(c);
    expect(inv.length).toBe(32);
    expect(inv[0]).toBe(1);
    expect(inv[1]).toBeCloseTo(1e6 ** (-2 / 64), 15);
  });

  it("applies llama3 scaling: high frequencies kept, low divided by factor, middle interpolated", () => {
    const c = parseModelConfig(readConfig("llama-3.2-1b-instruct.json"));
    const scaled = ropeInverseFrequencies(c);
    const plain = ropeInverseFrequencies({ ...c, ropeScaling: null });
    const kinds = new Set<string>();
    for (let i = 0; i < plain.length; i++) {
      const wavelen = (2 * Math.PI) / plain[i];
      if (wavelen < 8192 / 4) {
        expect(scaled[i]).toBe(plain[i]);
        kinds.add("high");
      } else if (wavelen > 8192) {
        expect(scaled[i]).toBeCloseTo(plain[i] / 32, 18);
        kinds.add("low");
      } else {
        expect(scaled[i]).toBeLessThan(plain[i]);
        expect(scaled[i]).toBeGreaterThan(plain[i] / 32);
        kinds.add("mid");
      }
    }
    expect(kinds).toEqual(new Set(["high", "low", "mid"]));
  });
});

// The published sizes on each model card, in billions, with the digits the card gives: the count
// from our tensor list must agree to that precision. Tied heads count once (as the cards count them).
const REAL_MODELS: [file: string, architecture: string, published: number, digits: number][] = [
  ["qwen3-0.6b.json", "Qwen3ForCausalLM", 0.6, 1],
  ["qwen3-1.7b.json", "Qwen3ForCausalLM", 1.7, 1],
  ["qwen3-4b.json", "Qwen3ForCausalLM", 4.0, 1],
  ["qwen2.5-0.5b-instruct.json", "Qwen2ForCausalLM", 0.49, 2],
  ["qwen2.5-1.5b-instruct.json", "Qwen2ForCausalLM", 1.54, 2],
  ["qwen2.5-3b-instruct.json", "Qwen2ForCausalLM", 3.09, 2],
  ["llama-3.2-1b-instruct.json", "LlamaForCausalLM", 1.23, 2],
  ["llama-3.2-3b-instruct.json", "LlamaForCausalLM", 3.21, 2],
  ["smollm2-1.7b-instruct.json", "LlamaForCausalLM", 1.7, 1],
  ["gemma-3-1b-it.json", "Gemma3ForCausalLM", 1.0, 1],
];

describe("real model configs (test/fixtures/configs)", () => {
  for (const [file, architecture, published, digits] of REAL_MODELS) {
    it(`${file}: parses as ${architecture} with ${published}B parameters`, () => {
      const c = parseModelConfig(readConfig(file));
      expect(c.architecture).toBe(architecture);
      const billions = parameterCount(c) / 1e9;
      // Cards round or truncate: within one unit of the last digit given.
      expect(Math.abs(billions - published), `${billions}B`).toBeLessThan(10 ** -digits);
    });
  }

  it("counts exactly the totals published for these checkpoints (tied heads once)", () => {
    const exact: Record<string, number> = {
      "gemma-3-1b-it.json": 999_885_952,
      "llama-3.2-1b-instruct.json": 1_235_814_400,
      "llama-3.2-3b-instruct.json": 3_212_749_824,
      "qwen2.5-0.5b-instruct.json": 494_032_768,
      "qwen2.5-1.5b-instruct.json": 1_543_714_304,
      "qwen2.5-3b-instruct.json": 3_085_938_688,
      "qwen3-0.6b.json": 596_049_920,
      "smollm2-1.7b-instruct.json": 1_711_376_384,
    };
    for (const [file, n] of Object.entries(exact))
      expect(parameterCount(parseModelConfig(readConfig(file))), file).toBe(n);
  });

  it("Qwen3: explicit head_dim (not hidden/heads), q/k norms, no biases, tied head", () => {
    const c = parseModelConfig(readConfig("qwen3-0.6b.json"));
    expect([c.headDim, c.hiddenSize / c.numHeads]).toEqual([128, 64]);
    expect([c.qkNorm, c.attentionBias, c.outputBias, c.mlpBias, c.tieWordEmbeddings]).toEqual([
      true,
      false,
      false,
      false,
      true,
    ]);
    expect(c.slidingWindow).toBeNull();
    const byName = new Map(expectedTensors(c).map((s) => [s.name, s.shape]));
    expect(byName.get("model.layers.0.self_attn.q_proj.weight")).toEqual([16 * 128, 1024]);
    expect(byName.get("model.layers.0.self_attn.o_proj.weight")).toEqual([1024, 16 * 128]);
    expect(byName.get("model.layers.27.self_attn.q_norm.weight")).toEqual([128]);
    expect(byName.get("model.layers.27.self_attn.k_norm.weight")).toEqual([128]);
    expect(byName.has("model.layers.0.self_attn.q_proj.bias")).toBe(false);
    expect(byName.has("lm_head.weight")).toBe(false);
    expect(() => assertRunnable(c, 40960)).not.toThrow();
  });

  it("Mistral: a window applies to every layer and runs at any context; Qwen's use_sliding_window caps it", () => {
    const base = { ...readConfig("smollm2-1.7b-instruct.json"), architectures: ["MistralForCausalLM"] };
    const open = parseModelConfig({ ...base, sliding_window: null });
    expect(open.slidingWindow).toBeNull();
    expect(() => assertRunnable(open, 1 << 20)).not.toThrow();
    const windowed = parseModelConfig({ ...base, sliding_window: 4096 });
    expect(windowed.slidingWindow).toBe(4096);
    expect(layerAttention(windowed, 0).window).toBe(4096);
    expect(layerAttention(windowed, 23).window).toBe(4096);
    // The kernels mask the window, so longer contexts run.
    expect(() => assertRunnable(windowed, 8192)).not.toThrow();
    // Qwen2 writes a window but only uses it with use_sliding_window, and then from layer
    // max_window_layers on, which is not modelled: contexts stay within the window.
    expect(parseModelConfig(readConfig("qwen2.5-0.5b-instruct.json")).slidingWindow).toBeNull();
    const qwenSwa = parseModelConfig({
      ...readConfig("qwen2.5-0.5b-instruct.json"),
      use_sliding_window: true,
      sliding_window: 4096,
    });
    expect(qwenSwa.slidingWindow).toBe(4096);
    expect(layerAttention(qwenSwa, 0).window).toBeNull();
    expect(() => assertRunnable(qwenSwa, 4096)).not.toThrow();
    expect(() => assertRunnable(qwenSwa, 4097)).toThrow(/use_sliding_window \(window 4096\).*4097 asked for/);
  });

  it("Gemma 3 1B: (1 + w) norms, √hidden embedding in bf16, local/global layers with their RoPE and window", () => {
    const c = parseModelConfig(readConfig("gemma-3-1b-it.json"));
    const globals = [5, 11, 17, 23];
    expect(c.gemma3).toEqual({
      hiddenActivation: "gelu_pytorch_tanh",
      slidingWindowPattern: 6,
      slidingLayers: Array.from({ length: 26 }, (_, i) => !globals.includes(i)),
      ropeLocalTheta: 10000,
      queryPreAttnScalar: 256,
      finalLogitSoftcapping: null,
      attnLogitSoftcapping: null,
      bidirectional: false,
    });
    expect([c.slidingWindow, c.qkNorm, c.tieWordEmbeddings, c.headDim, c.numKvHeads]).toEqual([
      512,
      true,
      true,
      256,
      1,
    ]);
    expect(c.eosTokenIds).toEqual([1, 106]);
    expect(normWeightOffset(c)).toBe(1);
    // sqrt(1152) = 33.941…, which bfloat16 (8 significant bits) rounds to 34, as torch does.
    expect(embeddingScale(c)).toBe(34);
    expect(embeddingScale({ ...c, torchDtype: "float32" })).toBe(Math.fround(Math.sqrt(1152)));
    expect(embeddingScale({ ...c, torchDtype: "float16" })).toBe(33.9375);
    expect(layerAttention(c, 0)).toEqual({ window: 512, ropeTheta: 10000, ropeScaling: null, scale: 1 / 16 });
    expect(layerAttention(c, 5)).toEqual({ window: null, ropeTheta: 1e6, ropeScaling: null, scale: 1 / 16 });
    expect(ropeInverseFrequencies(c, 0)[1]).toBeCloseTo(10000 ** (-2 / 256), 15);
    expect(ropeInverseFrequencies(c, 5)[1]).toBeCloseTo(1e6 ** (-2 / 256), 15);
    const names = tensorNames(c);
    expect(names).toContain("model.layers.25.pre_feedforward_layernorm.weight");
    expect(names).toContain("model.layers.25.post_feedforward_layernorm.weight");
    expect(names).toContain("model.layers.0.self_attn.k_norm.weight");
    expect(names).not.toContain("lm_head.weight");
    expect(() => assertRunnable(c, 32768)).not.toThrow();
  });

  it("Gemma 3 4B-style: linear rope_scaling on the global layers only; layer_types overrides the pattern", () => {
    const raw = { ...readConfig("gemma-3-1b-it.json"), rope_scaling: { rope_type: "linear", factor: 8 } };
    const c = parseModelConfig(raw);
    expect(c.ropeScaling).toEqual({ type: "linear", factor: 8 });
    expect(layerAttention(c, 0).ropeScaling).toBeNull();
    expect(layerAttention(c, 5).ropeScaling).toEqual({ type: "linear", factor: 8 });
    expect(ropeInverseFrequencies(c, 5)[3]).toBeCloseTo(1e6 ** (-6 / 256) / 8, 15);
    expect(ropeInverseFrequencies(c, 4)[3]).toBeCloseTo(1e4 ** (-6 / 256), 15);
    const types = Array.from({ length: 26 }, (_, i) => (i % 2 === 0 ? "full_attention" : "sliding_attention"));
    const typed = parseModelConfig({ ...raw, layer_types: types });
    expect(typed.gemma3?.slidingLayers.slice(0, 4)).toEqual([false, true, false, true]);
    expect(() => parseModelConfig({ ...raw, layer_types: types.slice(1) })).toThrow(/one type per layer \(26\)/);
    expect(() => parseModelConfig({ ...raw, layer_types: ["chunked", ...types.slice(1)] })).toThrow(
      /layer_types\[0\] is "chunked"/,
    );
  });

  it("Gemma 3: refuses what the kernels do not implement (soft-capping, bidirectional, other activations)", () => {
    const raw = readConfig("gemma-3-1b-it.json");
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ final_logit_softcapping: 30 }, /final_logit_softcapping 30/],
      [{ attn_logit_softcapping: 50 }, /attn_logit_softcapping 50/],
      [{ use_bidirectional_attention: true }, /use_bidirectional_attention/],
      [{ hidden_activation: "gelu" }, /hidden_activation "gelu"/],
    ];
    for (const [patch, message] of refused) {
      expect(() => assertRunnable(parseModelConfig({ ...raw, ...patch }))).toThrow(message);
    }
  });
});
