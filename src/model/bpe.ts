// Byte-level BPE training for our own tiny models: learns merges from a small corpus and emits a
// Hugging Face `tokenizer.json` shaped like Qwen2's (Split by Qwen's regex, then GPT-2 byte-level
// mapping, BPE model with merges, byte-level decoder). Every byte is in the base vocabulary, so any
// UTF-8 text encodes and decodes back exactly. Training is deterministic: ties between equally
// frequent pairs are broken by comparing the pairs' strings.
import { SequencePreTokenizer } from "@huggingface/tokenizers";

/** Qwen2's pre-tokenizer split pattern (tokenizer.json `pre_tokenizer.pretokenizers[0].pattern.Regex`). */
export const QWEN2_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** An added token: `special` ones are dropped by decode(skipSpecialTokens). */
export interface AddedTokenSpec {
  content: string;
  special: boolean;
}

/** Qwen2.5's chat tokens; <tool_call> tags are added but not special there, so decode keeps them. */
export const CHATML_ADDED_TOKENS: AddedTokenSpec[] = [
  { content: "<|endoftext|>", special: true },
  { content: "<|im_start|>", special: true },
  { content: "<|im_end|>", special: true },
  { content: "<tool_call>", special: false },
  { content: "</tool_call>", special: false },
];

export interface BpeTrainOptions {
  /** Total vocabulary size including the 256 byte tokens and the added tokens. */
  vocabSize: number;
  /** Tokens matched before BPE and given the last ids; strings are treated as special. */
  specialTokens?: (string | AddedTokenSpec)[];
  /** Pairs seen fewer times than this are never merged (default 2). */
  minFrequency?: number;
  /**
   * Give every integer 0 … n−1 (n ≤ 1000) its own token: digits are pre-split in runs of up to
   * three (like Llama 3) and a run that is a whole token skips the merges (`ignore_merges`). A
   * tiny model then copies a number as one token instead of digit by digit.
   */
  wholeNumbers?: number;
}

/** QWEN2_SPLIT_PATTERN with digits grouped in runs of up to three. */
export const NUMBER_RUN_SPLIT_PATTERN = QWEN2_SPLIT_PATTERN.replace("|\\p{N}|", "|\\p{N}{1,3}|");

/** GPT-2's reversible byte → printable character map (byte-level BPE alphabet). */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const map: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    map[b] = printable.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++);
  }
  return map;
}

const BYTE_LEVEL = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };

function preTokenizerConfig(pattern = QWEN2_SPLIT_PATTERN): Record<string, unknown> {
  return {
    type: "Sequence",
    pretokenizers: [{ type: "Split", pattern: { Regex: pattern }, behavior: "Isolated", invert: false }, BYTE_LEVEL],
  };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Counts the byte-level pre-tokens ("words") of a corpus, never splitting across added tokens. */
function countWords(corpus: string[], added: AddedTokenSpec[], pattern: string): Map<string, number> {
  const pre = new SequencePreTokenizer(
    preTokenizerConfig(pattern) as unknown as ConstructorParameters<typeof SequencePreTokenizer>[0],
  );
  const splitter = added.length ? new RegExp(added.map((t) => escapeRegExp(t.content)).join("|"), "g") : null;
  const counts = new Map<string, number>();
  for (const doc of corpus) {
    if (typeof doc !== "string") throw new Error("BPE corpus must be an array of strings");
    const pieces = splitter ? doc.split(splitter) : [doc];
    for (const piece of pieces) {
      if (!piece) continue;
      for (const word of pre.pre_tokenize(piece)) counts.set(word, (counts.get(word) ?? 0) + 1);
    }
  }
  return counts;
}

interface Word {
  symbols: string[];
  count: number;
}

function pairKey(a: string, b: string): string {
  // U+0000 never appears in byte-level symbols (byte 0 maps to U+0100).
  return `${a}\u0000${b}`;
}

/**
 * Trains a byte-level BPE tokenizer and returns it as a HF `tokenizer.json` object that
 * `@huggingface/tokenizers` (and the Rust `tokenizers` library) load. Stops early when no pair
 * occurs `minFrequency` times, so the vocabulary can come out smaller than asked.
 */
export function trainByteLevelBpe(corpus: string[], options: BpeTrainOptions): Record<string, unknown> {
  const added = (options.specialTokens ?? []).map((t) => (typeof t === "string" ? { content: t, special: true } : t));
  const seen = new Set<string>();
  for (const t of added) {
    if (!t.content || seen.has(t.content))
      throw new Error(`special tokens must be non-empty and unique: "${t.content}"`);
    seen.add(t.content);
  }
  const minFrequency = options.minFrequency ?? 2;
  const budget = options.vocabSize - added.length;
  if (!Number.isInteger(options.vocabSize) || budget < 256) {
    throw new Error(
      `vocabSize must be an integer >= 256 + ${added.length} (bytes + added tokens), got ${options.vocabSize}`,
    );
  }

  const wholeNumbers = options.wholeNumbers ?? 0;
  if (!Number.isInteger(wholeNumbers) || wholeNumbers < 0 || wholeNumbers > 1000)
    throw new Error(`wholeNumbers must be an integer in [0, 1000], got ${options.wholeNumbers}`);
  const pattern = wholeNumbers > 0 ? NUMBER_RUN_SPLIT_PATTERN : QWEN2_SPLIT_PATTERN;

  const alphabet = bytesToUnicode();
  const vocab = new Map<string, number>();
  for (let b = 0; b < 256; b++) vocab.set(alphabet[b], b);
  for (let n = 0; n < wholeNumbers; n++) if (!vocab.has(String(n))) vocab.set(String(n), vocab.size);
  if (vocab.size > budget) throw new Error(`vocabSize ${options.vocabSize} cannot hold ${wholeNumbers} numbers`);

  // Words that already are one token (whole numbers) need no merges.
  const words: Word[] = [...countWords(corpus, added, pattern)]
    .filter(([w]) => !(wholeNumbers > 0 && vocab.has(w)))
    .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
    .map(([w, count]) => ({ symbols: Array.from(w), count }));
  const merges: [string, string][] = [];

  while (vocab.size < budget) {
    const pairCounts = new Map<string, number>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.symbols.length; i++) {
        const k = pairKey(w.symbols[i], w.symbols[i + 1]);
        pairCounts.set(k, (pairCounts.get(k) ?? 0) + w.count);
      }
    }
    let best: string | null = null;
    let bestCount = 0;
    for (const [k, c] of pairCounts) {
      if (c > bestCount || (c === bestCount && best !== null && k < best)) {
        best = k;
        bestCount = c;
      }
    }
    if (best === null || bestCount < minFrequency) break;
    const [a, b] = best.split("\u0000");
    const merged = a + b;
    merges.push([a, b]);
    // Two different pairs can spell the same string (like HF's trainer, the merge is kept and the
    // token gets one id).
    if (!vocab.has(merged)) vocab.set(merged, vocab.size);
    for (const w of words) {
      const s = w.symbols;
      if (s.length < 2) continue;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(merged);
          i++;
        } else {
          out.push(s[i]);
        }
      }
      w.symbols = out;
    }
  }

  const addedTokens = added.map((t, i) => ({
    id: vocab.size + i,
    content: t.content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: t.special,
  }));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    // Qwen2 uses NFC here; we keep text untouched so encode→decode is the identity on any string.
    normalizer: null,
    pre_tokenizer: preTokenizerConfig(pattern),
    post_processor: { ...BYTE_LEVEL },
    decoder: { ...BYTE_LEVEL },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: wholeNumbers > 0,
      vocab: Object.fromEntries(vocab),
      merges,
    },
  };
}
