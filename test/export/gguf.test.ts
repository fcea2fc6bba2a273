// GGUF export read back with an independent parser (@huggingface/gguf): header metadata with
// the right value types, llama.cpp tensor names and GGML (reversed) dims, 32-byte aligned
// offsets, exact f32 data / correctly rounded f16 data, Q8_0 blocks byte for byte as ggml's
// reference quantizer makes them (with the converter's F32/F16 exceptions), Llama's q/k RoPE
// permutation, the tokenizer tables, and clear errors for malformed writer input.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GGMLQuantizationType, GGUFValueType, gguf } from "@huggingface/gguf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { quantizeQ8_0, writeGguf } from "../../src/export/gguf.ts";
import {
  ggufTensorName,
  permuteForLlamaRope,
  TokenType,
  tensorType,
  writeGgufModel,
} from "../../src/export/gguf-model.ts";
import { f16ToF32, f32ToF16 } from "../../src/gpu/tensor.ts";
import { loadCheckpoint } from "../../src/model/loader.ts";
import { type TinyModel, writeTinyModel } from "../../src/model/tiny.ts";

const root = mkdtempSync(join(tmpdir(), "fulgur-gguf-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

type Parsed = Awaited<ReturnType<typeof readBack>>;
async function readBack(path: string) {
  return gguf(path, { allowLocalFile: true, typedMetadata: true });
}

/** A Q8_0 tensor's raw bytes from the file (34 bytes per block of 32 values). */
function q8Bytes(path: string, parsed: Parsed, name: string): Uint8Array {
  const info = parsed.tensorInfos.find((t) => t.name === name);
  if (!info) throw new Error(`no tensor ${name} in ${path}`);
  const n = info.shape.reduce((a, b) => a * Number(b), 1);
  const start = Number(parsed.tensorDataOffset + info.offset);
  return new Uint8Array(readFileSync(path).subarray(start, start + (n / 32) * 34));
}

/** ggml's dequantize_row_q8_0, written independently of the writer: x = f16(d) · q. */
function dequantQ8(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array((bytes.length / 34) * 32);
  for (let b = 0; b < bytes.length / 34; b++) {
    const d = f16ToF32(view.getUint16(b * 34, true));
    for (let j = 0; j < 32; j++) out[b * 32 + j] = d * view.getInt8(b * 34 + 2 + j);
  }
  return out;
}

/** A tensor's raw values from the file, widened to f32. */
function tensorData(path: string, parsed: Parsed, name: string): Float32Array {
  const info = parsed.tensorInfos.find((t) => t.name === name);
  if (!info) throw new Error(`no tensor ${name} in ${path}`);
  const n = info.shape.reduce((a, b) => a * Number(b), 1);
  const start = Number(parsed.tensorDataOffset + info.offset);
  const bytes = readFileSync(path);
  if (info.dtype === GGMLQuantizationType.Q8_0) return dequantQ8(q8Bytes(path, parsed, name));
  if (info.dtype === GGMLQuantizationType.F32) {
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset + start, bytes.byteOffset + start + 4 * n));
  }
  const halves = new Uint16Array(bytes.buffer.slice(bytes.byteOffset + start, bytes.byteOffset + start + 2 * n));
  return Float32Array.from(halves, f16ToF32);
}

describe("GGUF Qwen2 export", () => {
  let tiny: TinyModel;
  const path = join(root, "qwen2.gguf");
  const path16 = join(root, "qwen2-f16.gguf");
  beforeAll(async () => {
    tiny = await writeTinyModel(join(root, "qwen2"), {
      hidden: 48,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      intermediate: 72,
      tie: false,
      seed: 3,
      vocabSize: 520, // padded past the tokenizer's 512 ids, like Qwen's 151936
    });
    const ck = await loadCheckpoint(tiny.dir);
    try {
      await writeGgufModel(ck, null, path);
      await writeGgufModel(ck, null, path16, { dtype: "f16" });
    } finally {
      await ck.close();
    }
  });

  it("writes the hyperparameters llama.cpp reads, with their GGUF types", async () => {
    const { typedMetadata: m, metadata } = await readBack(path);
    expect(metadata.version).toBe(3);
    expect(m["general.architecture"]).toEqual({ value: "qwen2", type: GGUFValueType.STRING });
    const u32 = (v: number) => ({ value: v, type: GGUFValueType.UINT32 });
    expect(m["qwen2.block_count"]).toEqual(u32(2));
    expect(m["qwen2.context_length"]).toEqual(u32(tiny.config.maxPositionEmbeddings));
    expect(m["qwen2.embedding_length"]).toEqual(u32(48));
    expect(m["qwen2.feed_forward_length"]).toEqual(u32(72));
    expect(m["qwen2.attention.head_count"]).toEqual(u32(4));
    expect(m["qwen2.attention.head_count_kv"]).toEqual(u32(2));
    expect(m["qwen2.rope.dimension_count"]).toEqual(u32(12));
    expect(m["qwen2.rope.freq_base"]).toEqual({ value: 10000, type: GGUFValueType.FLOAT32 });
    expect(m["qwen2.attention.layer_norm_rms_epsilon"]?.type).toBe(GGUFValueType.FLOAT32);
    expect(m["qwen2.attention.layer_norm_rms_epsilon"]?.value).toBeCloseTo(tiny.config.rmsNormEps, 10);
    expect(m["general.file_type"]).toEqual(u32(0));
    expect((await readBack(path16)).typedMetadata["general.file_type"]).toEqual(u32(1));
  });

  it("writes the tokenizer: tokens in id order with types, merges, special ids, chat template", async () => {
    const { typedMetadata: m } = await readBack(path);
    const tokJson = tiny.tokenizer as {
      model: { vocab: Record<string, number>; merges: [string, string][] };
      added_tokens: { id: number; content: string; special: boolean }[];
    };
    expect(m["tokenizer.ggml.model"]?.value).toBe("gpt2");
    expect(m["tokenizer.ggml.pre"]?.value).toBe("qwen2");
    const tokens = m["tokenizer.ggml.tokens"]?.value as string[];
    const types = m["tokenizer.ggml.token_type"]?.value as number[];
    expect(tokens.length).toBe(520);
    for (const [text, id] of Object.entries(tokJson.model.vocab)) {
      expect(tokens[id]).toBe(text);
      expect(types[id]).toBe(TokenType.NORMAL);
    }
    const added = Object.fromEntries(tokJson.added_tokens.map((t) => [t.content, t.id]));
    expect(tokens[added["<|im_end|>"]]).toBe("<|im_end|>");
    expect(types[added["<|im_end|>"]]).toBe(TokenType.CONTROL);
    expect(types[added["<tool_call>"]]).toBe(TokenType.USER_DEFINED); // added, not special: kept in decode
    expect(tokens[515]).toBe("[PAD515]");
    expect(types[515]).toBe(TokenType.UNUSED);
    expect(m["tokenizer.ggml.merges"]?.value).toEqual(tokJson.model.merges.map((p) => p.join(" ")));
    expect(m["tokenizer.ggml.eos_token_id"]?.value).toBe(added["<|im_end|>"]);
    expect(m["tokenizer.ggml.bos_token_id"]?.value).toBe(added["<|endoftext|>"]);
    expect(m["tokenizer.ggml.padding_token_id"]?.value).toBe(added["<|endoftext|>"]);
    expect(m["tokenizer.ggml.add_bos_token"]).toEqual({ value: false, type: GGUFValueType.BOOL });
    const tokConfig = JSON.parse(readFileSync(join(tiny.dir, "tokenizer_config.json"), "utf8"));
    expect(m["tokenizer.chat_template"]?.value).toBe(tokConfig.chat_template);
  });

  it("names tensors like llama.cpp, reverses dims, aligns offsets, and stores f32 data exactly", async () => {
    const parsed = await readBack(path);
    const ck = await loadCheckpoint(tiny.dir);
    try {
      expect(parsed.tensorInfos.map((t) => t.name)).toEqual(ck.specs.map((s) => ggufTensorName(s.name)));
      expect(parsed.tensorInfos.map((t) => t.name)).toContain("blk.1.attn_q.bias");
      expect(parsed.tensorInfos.map((t) => t.name)).toContain("output.weight");
      for (const spec of ck.specs) {
        const info = parsed.tensorInfos.find((t) => t.name === ggufTensorName(spec.name))!;
        expect(info.shape.map(Number)).toEqual([...spec.shape].reverse());
        expect(info.dtype).toBe(GGMLQuantizationType.F32);
        expect(Number(info.offset) % 32).toBe(0);
        expect(tensorData(path, parsed, info.name)).toEqual(await ck.get(spec.name));
      }
    } finally {
      await ck.close();
    }
  });

  it("stores matrices as f16 (round to nearest even) and norms/biases as f32 in an f16 export", async () => {
    const parsed = await readBack(path16);
    const ck = await loadCheckpoint(tiny.dir);
    try {
      for (const spec of ck.specs) {
        const info = parsed.tensorInfos.find((t) => t.name === ggufTensorName(spec.name))!;
        const source = await ck.get(spec.name);
        if (spec.shape.length === 1) {
          expect(info.dtype).toBe(GGMLQuantizationType.F32);
          expect(tensorData(path16, parsed, info.name)).toEqual(source);
        } else {
          expect(info.dtype).toBe(GGMLQuantizationType.F16);
          expect(tensorData(path16, parsed, info.name)).toEqual(
            Float32Array.from(source, (x) => f16ToF32(f32ToF16(x))),
          );
        }
      }
    } finally {
      await ck.close();
    }
  });
});

/**
 * A row of three Q8_0 blocks with its bytes worked out by hand from ggml's quantize_row_q8_0_ref:
 * d = max|x| / 127 (f32, stored as f16), q = roundf(x / d), halves away from zero.
 */
const Q8_ROW = new Float32Array(96);
// Block 0: max|x| = 127, so d = 1 (f16 0x3C00) and q = roundf(x): 2.5 → 3 and −2.5 → −3 (away
// from zero, where round-half-even gives 2 / −2 and Math.round gives −2), 0.49 → 0, 3.7 → 4.
Q8_ROW.set([127, -127, 0.5, -0.5, 1.5, 2.5, -2.5, 0.49, 3.7, -100.2], 0);
// Block 1: max|x| = 2, d = 2/127 = 0.0157480… → f16 0x2408 (1.0078125 · 2⁻⁶); q = x · 63.5:
// 2 → 127, −1.5 → −95.25 → −95, 0.3 → 19.05 → 19, 0.7 → 44.45 → 44, −0.01 → −0.635 → −1, 0.006 → 0.
Q8_ROW.set([2, -1.5, 0.3, 0.7, -0.01, 0.006], 32);
// Block 2: all zero: d = 0 and every q = 0 (ggml's id = 0 when d = 0, no NaN).
const Q8_ROW_BYTES = new Uint8Array(3 * 34);
Q8_ROW_BYTES.set([0x00, 0x3c, 0x7f, 0x81, 0x01, 0xff, 0x02, 0x03, 0xfd, 0x00, 0x04, 0x9c], 0);
Q8_ROW_BYTES.set([0x08, 0x24, 0x7f, 0xa1, 0x13, 0x2c, 0xff, 0x00], 34);

describe("GGUF Q8_0", () => {
  it("quantizes a known row to exactly the bytes of ggml's reference rule", () => {
    expect(Array.from(quantizeQ8_0(Q8_ROW))).toEqual(Array.from(Q8_ROW_BYTES));
    expect(() => quantizeQ8_0(new Float32Array(48))).toThrow(/multiple of 32/);
  });

  it("writes Q8_0 tensors as 34-byte blocks along rows, the next tensor's data aligned to 32 bytes", async () => {
    const p = join(root, "q8-writer.gguf");
    // Two rows of 96: the second row is the first negated (q negated, same scale).
    const rows = new Float32Array(192);
    rows.set(Q8_ROW, 0);
    rows.set(
      Q8_ROW.map((x) => -x),
      96,
    );
    const tail = Float32Array.from({ length: 4 }, (_, i) => i + 0.25);
    const { bytes } = await writeGguf(p, new Map([["general.alignment", { type: "u32", value: 32 }]]), [
      { name: "w", shape: [2, 96], type: "Q8_0", data: () => rows },
      { name: "b", shape: [4], type: "F32", data: () => tail },
    ]);
    const parsed = await readBack(p);
    const [w, b] = parsed.tensorInfos;
    expect(w.dtype).toBe(GGMLQuantizationType.Q8_0);
    expect(w.shape.map(Number)).toEqual([96, 2]);
    const negated = Q8_ROW_BYTES.slice();
    for (let blk = 0; blk < 3; blk++) {
      for (let j = 0; j < 32; j++) negated[blk * 34 + 2 + j] = -((Q8_ROW_BYTES[blk * 34 + 2 + j] << 24) >> 24) & 0xff;
    }
    expect(Array.from(q8Bytes(p, parsed, "w"))).toEqual([...Q8_ROW_BYTES, ...negated]);
    // 6 blocks × 34 = 204 bytes, padded to 224 before the next tensor.
    expect(Number(b.offset)).toBe(224);
    expect(tensorData(p, parsed, "b")).toEqual(tail);
    expect(bytes % 32).toBe(0);
  });

  it("refuses Q8_0 rows that are not whole blocks", async () => {
    const p = join(root, "q8-bad.gguf");
    const t = { name: "w", shape: [32, 48], type: "Q8_0" as const, data: () => new Float32Array(32 * 48) };
    await expect(writeGguf(p, new Map(), [t])).rejects.toThrow(/Q8_0 needs rows \(last dim\) of a multiple of 32/);
  });

  it("picks tensor types like convert_hf_to_gguf: F32 norms/biases, F16 for rows not a multiple of 32", () => {
    expect(tensorType("blk.0.attn_q.weight", [64, 64], "q8_0")).toBe("Q8_0");
    expect(tensorType("token_embd.weight", [520, 64], "q8_0")).toBe("Q8_0");
    expect(tensorType("blk.0.ffn_down.weight", [64, 72], "q8_0")).toBe("F16");
    expect(tensorType("blk.0.attn_q.bias", [64], "q8_0")).toBe("F32");
    expect(tensorType("blk.0.attn_norm.weight", [64], "q8_0")).toBe("F32");
    expect(tensorType("rope_freqs.weight", [8], "q8_0")).toBe("F32");
    expect(tensorType("blk.0.attn_q.weight", [64, 64], "f16")).toBe("F16");
    expect(tensorType("blk.0.attn_q.weight", [64, 64], "f32")).toBe("F32");
  });

  it("exports a model's matrices as Q8_0 (file_type 7), keeping norms/biases F32 and odd rows F16", async () => {
    const tiny = await writeTinyModel(join(root, "qwen2-q8"), {
      hidden: 64,
      layers: 1,
      heads: 4,
      kvHeads: 2,
      intermediate: 72, // down_proj rows of 72 values: not whole Q8_0 blocks
      tie: false,
      seed: 4,
    });
    const path = join(root, "qwen2-q8.gguf");
    const ck = await loadCheckpoint(tiny.dir);
    try {
      await writeGgufModel(ck, null, path, { dtype: "q8_0" });
      const parsed = await readBack(path);
      expect(parsed.typedMetadata["general.file_type"]).toEqual({ value: 7, type: GGUFValueType.UINT32 });
      const seen = new Set<number>();
      for (const spec of ck.specs) {
        const name = ggufTensorName(spec.name);
        const info = parsed.tensorInfos.find((t) => t.name === name)!;
        const source = await ck.get(spec.name);
        expect(Number(info.offset) % 32).toBe(0);
        seen.add(info.dtype);
        if (spec.shape.length === 1) {
          expect(info.dtype).toBe(GGMLQuantizationType.F32);
          expect(tensorData(path, parsed, name)).toEqual(source);
        } else if (spec.name.endsWith("down_proj.weight")) {
          expect(info.dtype).toBe(GGMLQuantizationType.F16);
          expect(tensorData(path, parsed, name)).toEqual(Float32Array.from(source, (x) => f16ToF32(f32ToF16(x))));
        } else {
          expect(info.dtype).toBe(GGMLQuantizationType.Q8_0);
          expect(q8Bytes(path, parsed, name)).toEqual(quantizeQ8_0(source));
          // Independently of the quantizer: each value within half a step (plus the scale's f16
          // rounding) of the source, blocks running along rows.
          const back = tensorData(path, parsed, name);
          for (let blk = 0; blk < source.length / 32; blk++) {
            const block = source.subarray(blk * 32, blk * 32 + 32);
            const d = block.reduce((m, x) => Math.max(m, Math.abs(x)), 0) / 127;
            for (let j = 0; j < 32; j++) {
              expect(Math.abs(back[blk * 32 + j] - block[j])).toBeLessThanOrEqual(d * (0.5 + 127 * 2 ** -11) + 1e-12);
            }
          }
        }
      }
      expect([...seen].sort()).toEqual([GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.Q8_0]);
    } finally {
      await ck.close();
    }
  });
});

describe("GGUF Llama export", () => {
  it("permutes q/k weights and biases per head for llama.cpp's RoPE and leaves v/o alone", async () => {
    const tiny = await writeTinyModel(join(root, "llama"), {
      architecture: "LlamaForCausalLM",
      hidden: 32,
      layers: 1,
      heads: 4,
      kvHeads: 2,
      intermediate: 40,
      attentionBias: true,
      seed: 5,
    });
    const path = join(root, "llama.gguf");
    const ck = await loadCheckpoint(tiny.dir);
    try {
      await writeGgufModel(ck, null, path);
      const parsed = await readBack(path);
      expect(parsed.typedMetadata["general.architecture"]?.value).toBe("llama");
      expect(parsed.typedMetadata["llama.attention.head_count_kv"]?.value).toBe(2);
      const headDim = 8;
      const cases = [
        ["model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", 4, 32],
        ["model.layers.0.self_attn.q_proj.bias", "blk.0.attn_q.bias", 4, 1],
        ["model.layers.0.self_attn.k_proj.weight", "blk.0.attn_k.weight", 2, 32],
        ["model.layers.0.self_attn.k_proj.bias", "blk.0.attn_k.bias", 2, 1],
      ] as const;
      for (const [hf, name, heads, cols] of cases) {
        const src = await ck.get(hf);
        const got = tensorData(path, parsed, name);
        // Row h·d + 2j + s of the GGUF tensor is row h·d + s·d/2 + j of the HF tensor.
        for (let h = 0; h < heads; h++) {
          for (let j = 0; j < headDim / 2; j++) {
            for (let s = 0; s < 2; s++) {
              const dst = (h * headDim + 2 * j + s) * cols;
              const from = (h * headDim + s * (headDim / 2) + j) * cols;
              expect(got.subarray(dst, dst + cols)).toEqual(src.subarray(from, from + cols));
            }
          }
        }
      }
      for (const [hf, name] of [
        ["model.layers.0.self_attn.v_proj.weight", "blk.0.attn_v.weight"],
        ["model.layers.0.self_attn.o_proj.weight", "blk.0.attn_output.weight"],
      ]) {
        expect(tensorData(path, parsed, name)).toEqual(await ck.get(hf));
      }
      // Tied embeddings: no output.weight; llama.cpp reuses token_embd.
      expect(parsed.tensorInfos.some((t) => t.name === "output.weight")).toBe(false);
    } finally {
      await ck.close();
    }
  });

  it("rejects a permutation that does not split into heads of even size", () => {
    expect(() => permuteForLlamaRope(new Float32Array(12), 6, 2, 2)).toThrow(/heads of even size/);
  });
});

describe("GGUF writer input checks", () => {
  const kv = new Map();
  it("rejects duplicate names, bad shapes and data of the wrong length", async () => {
    const p = join(root, "bad.gguf");
    const t = (name: string, shape: number[], n = shape.reduce((a, b) => a * b, 1)) => ({
      name,
      shape,
      type: "F32" as const,
      data: () => new Float32Array(n),
    });
    await expect(writeGguf(p, kv, [t("a", [2]), t("a", [2])])).rejects.toThrow(/declared twice/);
    await expect(writeGguf(p, kv, [t("a", [0, 2], 0)])).rejects.toThrow(/positive integer dims/);
    await expect(writeGguf(p, kv, [t("a", [3, 2], 5)])).rejects.toThrow(/got 5 values, shape \[3,2\] needs 6/);
    await expect(writeGguf(p, new Map([["k", { type: "u32", value: -1 }]]), [])).rejects.toThrow(/not a valid u32/);
  });

  it("rejects HF tensors llama.cpp has no name for", () => {
    expect(() => ggufTensorName("model.layers.0.self_attn.rotary_emb.inv_freq")).toThrow(/no llama.cpp tensor name/);
  });
});
