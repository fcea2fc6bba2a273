// The CPU reference transformer: agrees with an independent PyTorch forward (fixtures), and has
// the properties the architecture implies (causality, tying, GQA sharing, LoRA algebra).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectionShape } from "../../src/model/config.ts";
import { loadCheckpoint } from "../../src/model/loader.ts";
import {
  type LoraConfig,
  type LoraTensor,
  loraScale,
  type PeftAdapter,
  peftKey,
  readPeftAdapter,
} from "../../src/model/peft.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { expectClose } from "../helpers/compare.ts";
import { normal } from "../helpers/random.ts";
import {
  loadReferenceModel,
  type ReferenceModel,
  referenceForward,
  referenceLogits,
} from "../reference/transformer.ts";

const fixtures = fileURLToPath(new URL("../fixtures/torch-reference", import.meta.url));
const root = mkdtempSync(join(tmpdir(), "fulgur-ref-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let qwen: ReferenceModel;
beforeAll(async () => {
  const dir = join(root, "qwen");
  await writeTinyModel(dir, {
    seed: 4,
    hidden: 32,
    heads: 4,
    kvHeads: 2,
    intermediate: 48,
    layers: 2,
    tokenizerVocabSize: 300,
  });
  const ck = await loadCheckpoint(dir);
  qwen = await loadReferenceModel(ck);
  await ck.close();
});

function slice(logits: Float64Array, vocab: number, from: number, to: number): Float64Array {
  return logits.slice(from * vocab, to * vocab);
}

function adapterFor(model: ReferenceModel, config: LoraConfig, seed: number, zeroB = false): PeftAdapter {
  const tensors = new Map<string, LoraTensor>();
  for (const l of config.layersToTransform ?? [...Array(model.config.numLayers).keys()]) {
    for (const m of config.targetModules) {
      const [out, inp] = projectionShape(model.config, m);
      tensors.set(peftKey(l, m, "A"), { shape: [config.r, inp], data: normal(config.r * inp, seed++, 0.2) });
      const b = zeroB ? new Float32Array(out * config.r) : normal(out * config.r, seed++, 0.2);
      tensors.set(peftKey(l, m, "B"), { shape: [out, config.r], data: b });
    }
  }
  return { config, tensors };
}

const allTargets: LoraConfig = {
  r: 3,
  loraAlpha: 6,
  targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
  loraDropout: 0,
  baseModelNameOrPath: null,
  useRslora: false,
  layersToTransform: null,
};

describe("reference transformer vs PyTorch", () => {
  for (const name of ["qwen2", "llama"]) {
    it(`${name}: matches torch_forward.py logits with and without LoRA`, async () => {
      const dir = join(fixtures, name);
      const fixture = JSON.parse(readFileSync(join(dir, "logits.json"), "utf8"));
      const ck = await loadCheckpoint(dir);
      const model = await loadReferenceModel(ck);
      const lora = await readPeftAdapter(join(dir, "adapter"), ck.config);
      await ck.close();
      // Both sides are float64 over identical stored weights; only summation order differs
      // (~1e-15 relative) and the fixture keeps 12 significant digits, so 1e-9 is generous.
      // The brief's bar was 1e-4.
      const tol = { atol: 1e-9, rtol: 1e-9 };
      expectClose(referenceForward(model, fixture.tokens), fixture.logits.flat(), tol, `${name} base`);
      expectClose(referenceForward(model, fixture.tokens, lora), fixture.lora_logits.flat(), tol, `${name} lora`);
    });
  }

  it("referenceLogits loads a checkpoint and runs the same forward", async () => {
    const dir = join(fixtures, "qwen2");
    const fixture = JSON.parse(readFileSync(join(dir, "logits.json"), "utf8"));
    const ck = await loadCheckpoint(dir);
    const logits = await referenceLogits(ck, fixture.tokens);
    await ck.close();
    expect(logits.length).toBe(fixture.tokens.length * ck.config.vocabSize);
    expectClose(logits, fixture.logits.flat(), { atol: 1e-9, rtol: 1e-9 }, "referenceLogits");
  });
});

describe("reference transformer properties", () => {
  const V = () => qwen.config.vocabSize;

  it("is causal: logits at t do not depend on tokens after t", () => {
    const a = referenceForward(qwen, [5, 17, 42, 99, 7, 256]);
    const b = referenceForward(qwen, [5, 17, 42, 3, 200, 11]);
    expect(slice(b, V(), 0, 3)).toEqual(slice(a, V(), 0, 3));
    expect(slice(b, V(), 3, 4)).not.toEqual(slice(a, V(), 3, 4));
    // A prefix run gives the same rows as the longer run.
    expect(referenceForward(qwen, [5, 17, 42])).toEqual(slice(a, V(), 0, 3));
  });

  it("for a single token, attention returns v: q/k weights do not matter", () => {
    const weights = new Map(qwen.weights);
    for (const l of [0, 1]) {
      for (const p of ["q_proj", "k_proj"]) {
        for (const suffix of ["weight", "bias"]) {
          const key = `model.layers.${l}.self_attn.${p}.${suffix}`;
          weights.set(key, new Float32Array(qwen.weights.get(key)!.length));
        }
      }
    }
    const zeroQk = { config: qwen.config, weights };
    expect(referenceForward(zeroQk, [77])).toEqual(referenceForward(qwen, [77]));
    expect(referenceForward(zeroQk, [77, 78])).not.toEqual(referenceForward(qwen, [77, 78]));
  });

  it("tied embeddings equal an untied head holding a copy of the embedding", () => {
    const untied = {
      config: { ...qwen.config, tieWordEmbeddings: false },
      weights: new Map([...qwen.weights, ["lm_head.weight", qwen.weights.get("model.embed_tokens.weight")!.slice()]]),
    };
    const tokens = [1, 2, 3, 250];
    expect(referenceForward(untied, tokens)).toEqual(referenceForward(qwen, tokens));
    untied.weights.get("lm_head.weight")![0] += 1;
    expect(referenceForward(untied, tokens)).not.toEqual(referenceForward(qwen, tokens));
  });

  it("shares each kv head across its query group (GQA = MHA with repeated k/v heads)", () => {
    const c = qwen.config;
    const group = c.numHeads / c.numKvHeads;
    const weights = new Map(qwen.weights);
    for (let l = 0; l < c.numLayers; l++) {
      for (const p of ["k_proj", "v_proj"]) {
        const w = qwen.weights.get(`model.layers.${l}.self_attn.${p}.weight`)!;
        const b = qwen.weights.get(`model.layers.${l}.self_attn.${p}.bias`)!;
        const rows = c.headDim;
        const wide = new Float32Array(c.numHeads * rows * c.hiddenSize);
        const wideBias = new Float32Array(c.numHeads * rows);
        for (let h = 0; h < c.numHeads; h++) {
          const src = Math.floor(h / group);
          wide.set(w.subarray(src * rows * c.hiddenSize, (src + 1) * rows * c.hiddenSize), h * rows * c.hiddenSize);
          wideBias.set(b.subarray(src * rows, (src + 1) * rows), h * rows);
        }
        weights.set(`model.layers.${l}.self_attn.${p}.weight`, wide);
        weights.set(`model.layers.${l}.self_attn.${p}.bias`, wideBias);
      }
    }
    const mha = { config: { ...c, numKvHeads: c.numHeads }, weights };
    const tokens = [9, 8, 7, 6, 5];
    expectClose(referenceForward(mha, tokens), referenceForward(qwen, tokens), { atol: 1e-12, rtol: 0 }, "GQA vs MHA");
  });

  it("LoRA with B = 0 is exactly the base model", () => {
    const tokens = [10, 20, 30, 40];
    expect(referenceForward(qwen, tokens, adapterFor(qwen, allTargets, 1, true))).toEqual(
      referenceForward(qwen, tokens),
    );
  });

  it("LoRA equals merging scale·B·A into the base weights", () => {
    const config: LoraConfig = {
      ...allTargets,
      targetModules: ["v_proj", "up_proj"],
      useRslora: true,
      layersToTransform: [1],
    };
    const lora = adapterFor(qwen, config, 50);
    const scale = loraScale(config);
    const weights = new Map(qwen.weights);
    for (const m of config.targetModules) {
      const [out, inp] = projectionShape(qwen.config, m);
      const key = `model.layers.1.${m === "v_proj" ? "self_attn" : "mlp"}.${m}.weight`;

      const a = lora.tensors.get(peftKey(1, m, "A"))!.data;
      const b = lora.tensors.get(peftKey(1, m, "B"))!.data;
      const exact = Float64Array.from(qwen.weights.get(key)!);
      for (let o = 0; o < out; o++) {
        for (let i = 0; i < inp; i++) {
          let acc = 0;
          for (let k = 0; k < config.r; k++) acc += b[o * config.r + k] * a[k * inp + i];
          exact[o * inp + i] += scale * acc;
        }
      }
      weights.set(key, exact);
    }
    const tokens = [3, 1, 4, 1, 5, 9, 2, 6];
    const withLora = referenceForward(qwen, tokens, lora);
    expect(withLora).not.toEqual(referenceForward(qwen, tokens));
    // Same math in a different association order: equal to f64 rounding.
    expectClose(
      withLora,
      referenceForward({ config: qwen.config, weights }, tokens),
      { atol: 1e-12, rtol: 1e-10 },
      "merged",
    );
  });

  it("rejects tokens outside the vocabulary and empty input", () => {
    expect(() => referenceForward(qwen, [1, V()])).toThrow(/outside vocab/);
    expect(() => referenceForward(qwen, [])).toThrow(/at least one token/);
  });
});
