// Byte-level BPE training: the emitted tokenizer.json loads in @huggingface/tokenizers, is
// deterministic, compresses its corpus, and round-trips arbitrary Unicode exactly.
import { Tokenizer } from "@huggingface/tokenizers";
import { describe, expect, it } from "vitest";
import { bytesToUnicode, CHATML_ADDED_TOKENS, trainByteLevelBpe } from "../../src/model/bpe.ts";
import { TINY_CORPUS } from "../../src/model/tiny-corpus.ts";
import { rng } from "../helpers/random.ts";

const json = trainByteLevelBpe(TINY_CORPUS, { vocabSize: 512, specialTokens: CHATML_ADDED_TOKENS });
const tokenizer = new Tokenizer(json, { clean_up_tokenization_spaces: false });
const model = json.model as { vocab: Record<string, number>; merges: [string, string][] };

function roundTrip(text: string): string {
  const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
  return ids.length ? tokenizer.decode(ids, { clean_up_tokenization_spaces: false }) : "";
}

/** Random strings of code points from several scripts, emoji and controls (no lone surrogates). */
function randomText(seed: number, length: number): string {
  const r = rng(seed);
  const ranges: [number, number][] = [
    [0x00, 0x7f], // ASCII incl. controls
    [0x80, 0x7ff], // Latin-1 … Arabic (2-byte UTF-8)
    [0x3040, 0x30ff], // kana
    [0x4e00, 0x9fff], // CJK
    [0x1f300, 0x1faff], // emoji (4-byte UTF-8, surrogate pairs in JS)
    [0xe000, 0xf8ff], // private use
  ];
  let s = "";
  for (let i = 0; i < length; i++) {
    const [lo, hi] = ranges[Math.floor(r() * ranges.length)];
    s += String.fromCodePoint(lo + Math.floor(r() * (hi - lo + 1)));
  }
  return s;
}

describe("trainByteLevelBpe", () => {
  it("emits a Qwen2-style tokenizer.json with contiguous ids and the added tokens last", () => {
    expect((json.model as { type: string }).type).toBe("BPE");
    expect((json.pre_tokenizer as { pretokenizers: { type: string }[] }).pretokenizers.map((p) => p.type)).toEqual([
      "Split",
      "ByteLevel",
    ]);
    expect((json.decoder as { type: string }).type).toBe("ByteLevel");
    const ids = Object.values(model.vocab).sort((a, b) => a - b);
    expect(ids).toEqual(ids.map((_, i) => i));
    expect(ids.length + CHATML_ADDED_TOKENS.length).toBe(512);
    const added = json.added_tokens as { id: number; content: string; special: boolean }[];
    expect(added.map((t) => [t.id, t.content, t.special])).toEqual([
      [507, "<|endoftext|>", true],
      [508, "<|im_start|>", true],
      [509, "<|im_end|>", true],
      [510, "<tool_call>", false],
      [511, "</tool_call>", false],
    ]);
    // Every byte is a base token, and every merge's result is in the vocabulary.
    for (const ch of bytesToUnicode()) expect(model.vocab[ch]).toBeDefined();
    for (const [a, b] of model.merges) expect(model.vocab[a + b]).toBeDefined();
  });

  it("is deterministic for a corpus and changes with it", () => {
    const again = trainByteLevelBpe(TINY_CORPUS, { vocabSize: 512, specialTokens: CHATML_ADDED_TOKENS });
    expect(JSON.stringify(again)).toBe(JSON.stringify(json));
    const other = trainByteLevelBpe(TINY_CORPUS.slice(1), { vocabSize: 512, specialTokens: CHATML_ADDED_TOKENS });
    expect(JSON.stringify(other)).not.toBe(JSON.stringify(json));
  });

  it("learns merges that compress the corpus, with the most frequent pair first", () => {
    // " t" + "h" … : the commonest English bigram in the corpus should merge early into "Ġthe".
    const spaceThe = "Ġthe"; // byte-level spelling of " the"
    expect(model.vocab[spaceThe]).toBeDefined();
    expect(tokenizer.encode(" the", { add_special_tokens: false }).ids).toEqual([model.vocab[spaceThe]]);
    const text = TINY_CORPUS.join("\n");
    const bytes = new TextEncoder().encode(text).length;
    const tokens = tokenizer.encode(text, { add_special_tokens: false }).ids.length;
    expect(tokens).toBeLessThan(bytes / 2);
  });

  it("round-trips arbitrary Unicode exactly, with ids from the vocabulary", () => {
    const samples = [
      "Hello, world!",
      "  leading and trailing spaces  ",
      "tabs\tand\r\nwindows newlines\n\n\n",
      "héllo wörld — naïve café",
      "e\u0301 (combining accent, not NFC-normalised)",
      "日本語のテキスト 中文 한국어",
      "emoji 🎉🚀👩‍👩‍👧‍👦 flags 🇫🇷 skin 👍🏽",
      "\u0000\u0001\u007f zero and control bytes",
      "I'm you're we've they'll it'd SHE'S",
      "12345678901234567890 3.14159",
      "<|im_start|>user\nhi<|im_end|>\n<tool_call>\n{}\n</tool_call>",
      "",
    ];
    for (let seed = 1; seed <= 30; seed++) samples.push(randomText(seed, 1 + seed * 7));
    for (const text of samples) {
      expect(roundTrip(text), JSON.stringify(text)).toBe(text);
      for (const id of tokenizer.encode(text, { add_special_tokens: false }).ids) {
        expect(id >= 0 && id < 512).toBe(true);
      }
    }
  });

  it("encodes each added token as one id and never merges across it", () => {
    const ids = tokenizer.encode("a<|im_start|>b<tool_call>c", { add_special_tokens: false }).ids;
    expect(ids).toEqual([model.vocab.a, 508, model.vocab.b, 510, model.vocab.c]);
  });

  it("stops when no pair is frequent enough and validates its options", () => {
    const small = trainByteLevelBpe(["abab abab"], { vocabSize: 1000 });
    const vocab = (small.model as { vocab: Record<string, number> }).vocab;
    expect(Object.keys(vocab).length).toBeLessThan(270);
    expect(vocab.ab).toBeDefined();
    expect(() => trainByteLevelBpe(["x"], { vocabSize: 258, specialTokens: ["<a>", "<b>", "<c>"] })).toThrow(
      /vocabSize must be an integer >= 256 \+ 3/,
    );
    expect(() => trainByteLevelBpe(["x"], { vocabSize: 300, specialTokens: ["<a>", "<a>"] })).toThrow(/unique/);
  });
});

describe("trainByteLevelBpe with wholeNumbers", () => {
  const corpus = [...TINY_CORPUS, "Ann has 23 pens and gets 45 more: 23+45 = 68, then 1234 and 07."];
  const numbered = trainByteLevelBpe(corpus, {
    vocabSize: 1600,
    specialTokens: CHATML_ADDED_TOKENS,
    wholeNumbers: 1000,
  });
  const tok = new Tokenizer(numbered, { clean_up_tokenization_spaces: false });
  const vocab = (numbered.model as { vocab: Record<string, number> }).vocab;
  const encode = (text: string) => tok.encode(text, { add_special_tokens: false }).ids;

  it("gives every integer below n one token, however the merges went", () => {
    for (let n = 0; n < 1000; n++) expect(encode(String(n)), String(n)).toEqual([vocab[String(n)]]);
    expect(encode("23+45")).toEqual([vocab["23"], vocab["+"], vocab["45"]]);
    expect((numbered.model as { ignore_merges: boolean }).ignore_merges).toBe(true);
  });

  it("splits longer digit runs in threes and still round-trips any text", () => {
    expect(encode("1234")).toEqual([vocab["123"], vocab["4"]]);
    // "000" is no number's spelling: it falls back to bytes (and merges), "7" is whole.
    expect(encode("0007").slice(-1)).toEqual([vocab["7"]]);
    for (let seed = 0; seed < 5; seed++) {
      const text = `${randomText(seed, 40)} 98765 ${randomText(seed + 9, 10)}`;
      expect(tok.decode(encode(text), { clean_up_tokenization_spaces: false })).toBe(text);
    }
  });

  it("rejects a range the vocabulary cannot hold", () => {
    expect(() => trainByteLevelBpe(["x"], { vocabSize: 1000, wholeNumbers: 1000 })).toThrow(/cannot hold/);
    expect(() => trainByteLevelBpe(["x"], { vocabSize: 3000, wholeNumbers: 1001 })).toThrow(/wholeNumbers/);
  });
});
