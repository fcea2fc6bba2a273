// The bytes each token id stands for, and a byte trie over the vocabulary: what lifts the
// byte-level grammar machine to a token mask. Byte-level BPE (GPT-2/Qwen/Llama 3: token strings
// in the 256-character byte alphabet), SentencePiece-style pieces (`▁` for space, `<0xNN>` byte
// fallback) and, for other decoders, the decoded text of each token. Special tokens have no
// bytes: they are never allowed inside constrained output (EOS is handled separately).

import type { ModelTokenizer } from "../tokenizer.ts";

const encoder = new TextEncoder();

/** GPT-2's byte ↔ printable character table, reversed: character code → byte. */
function byteLevelTable(): Map<number, number> {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = [...bytes];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  return new Map(chars.map((c, i) => [c, bytes[i]]));
}

/** Decoder types named anywhere in a (possibly nested Sequence) decoder config. */
function decoderTypes(config: Record<string, unknown> | null): Set<string> {
  const out = new Set<string>();
  const walk = (c: unknown) => {
    if (!c || typeof c !== "object") return;
    const o = c as Record<string, unknown>;
    if (typeof o.type === "string") out.add(o.type);
    if (Array.isArray(o.decoders)) for (const d of o.decoders) walk(d);
  };
  walk(config);
  return out;
}

/**
 * Bytes of every token id below `size` (the model's vocabulary, which may be padded past the
 * tokenizer's); null for special tokens and ids the tokenizer does not know.
 */
export function tokenBytes(tok: ModelTokenizer, size: number): (Uint8Array | null)[] {
  const types = decoderTypes(tok.decoderConfig);
  const special = new Set(tok.specialTokenIds);
  const table = types.has("ByteLevel") ? byteLevelTable() : null;
  const sentencePiece = types.has("ByteFallback") || types.has("Metaspace") || types.has("Replace");
  const out: (Uint8Array | null)[] = new Array(size).fill(null);
  for (let id = 0; id < Math.min(size, tok.vocabSize); id++) {
    if (special.has(id)) continue;
    const added = tok.addedTokens.get(id);
    if (added !== undefined) {
      out[id] = encoder.encode(added);
      continue;
    }
    const piece = tok.idToToken(id);
    if (piece === undefined) continue;
    if (table) {
      const bytes: number[] = [];
      let ok = true;
      for (const ch of piece) {
        const b = table.get(ch.codePointAt(0) as number);
        if (b === undefined) {
          ok = false;
          break;
        }
        bytes.push(b);
      }
      if (ok) {
        out[id] = Uint8Array.from(bytes);
        continue;
      }
    }
    if (sentencePiece) {
      const fallback = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
      out[id] = fallback ? Uint8Array.of(Number.parseInt(fallback[1], 16)) : encoder.encode(piece.replace(/▁/g, " "));
      continue;
    }
    const text = tok.decode([id]);
    // A token that is part of a UTF-8 sequence cannot be placed without its bytes: never allowed.
    if (!text.includes("\uFFFD")) out[id] = encoder.encode(text);
  }
  return out;
}

/** Bytes that leave a JSON string's body unchanged: printable ASCII except `"` and `\\`. */
export function isPlainStringByte(b: number): boolean {
  return b >= 0x20 && b < 0x80 && b !== 0x22 && b !== 0x5c;
}

/** A trie over token bytes: node i's children and the tokens that end at it. */
export class TokenTrie {
  /** children[i]: byte → node. */
  readonly children: Map<number, number>[] = [new Map()];
  /** tokens[i]: ids whose bytes end at node i. */
  readonly tokens: number[][] = [[]];
  /** Longest token, in bytes. */
  readonly maxBytes: number;
  /** Token ids in depth-first order: node i's subtree holds `order[start[i] .. end[i])`. */
  readonly order: Int32Array;
  readonly start: Int32Array;
  readonly end: Int32Array;
  /** Whether every byte below node i is a plain string byte (then, inside a JSON string, every token of the subtree is allowed at once). */
  readonly plainBelow: Uint8Array;

  constructor(bytes: readonly (Uint8Array | null)[]) {
    let longest = 0;
    bytes.forEach((b, id) => {
      if (!b || b.length === 0) return;
      longest = Math.max(longest, b.length);
      let node = 0;
      for (const byte of b) {
        let next = this.children[node].get(byte);
        if (next === undefined) {
          next = this.children.length;
          this.children.push(new Map());
          this.tokens.push([]);
          this.children[node].set(byte, next);
        }
        node = next;
      }
      this.tokens[node].push(id);
    });
    this.maxBytes = longest;
    const n = this.children.length;
    this.start = new Int32Array(n);
    this.end = new Int32Array(n);
    this.plainBelow = new Uint8Array(n);
    const order: number[] = [];
    // Iterative post-order walk (tries of long tokens are deep).
    const stack: [number, boolean][] = [[0, false]];
    while (stack.length > 0) {
      const [node, done] = stack.pop() as [number, boolean];
      if (!done) {
        this.start[node] = order.length;
        order.push(...this.tokens[node]);
        stack.push([node, true]);
        for (const child of [...this.children[node].values()].reverse()) stack.push([child, false]);
        continue;
      }
      this.end[node] = order.length;
      let plain = 1;
      for (const [byte, child] of this.children[node]) {
        if (!isPlainStringByte(byte) || !this.plainBelow[child]) plain = 0;
      }
      this.plainBelow[node] = plain;
    }
    this.order = Int32Array.from(order);
  }
}
