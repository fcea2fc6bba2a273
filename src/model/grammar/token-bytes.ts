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

/**
 * A trie over token bytes in flat arrays, built from the tokens sorted by their bytes: node ids
 * are in depth-first order, children are a linked list (`firstChild`, `nextSibling`, in byte
 * order), and node i's subtree holds the tokens `order[start[i] .. end[i])`, its own (the tokens
 * whose bytes end at i) first, up to `ownEnd[i]`. The root is node 0.
 */
export class TokenTrie {
  readonly nodes: number;
  readonly firstChild: Int32Array;
  readonly nextSibling: Int32Array;
  /** The byte on the edge into node i. */
  readonly byte: Uint8Array;
  readonly order: Int32Array;
  readonly start: Int32Array;
  readonly end: Int32Array;
  readonly ownEnd: Int32Array;
  /** Whether every byte below node i is a plain string byte (then, inside a JSON string, every token of the subtree is allowed at once). */
  readonly plainBelow: Uint8Array;
  /** Longest token, in bytes. */
  readonly maxBytes: number;

  constructor(bytes: readonly (Uint8Array | null)[]) {
    const ids: number[] = [];
    let total = 0;
    let longest = 0;
    bytes.forEach((b, id) => {
      if (!b || b.length === 0) return;
      ids.push(id);
      total += b.length;
      longest = Math.max(longest, b.length);
    });
    ids.sort((x, y) => compareBytes(bytes[x] as Uint8Array, bytes[y] as Uint8Array) || x - y);
    const cap = total + 1;
    const firstChild = new Int32Array(cap).fill(-1);
    const nextSibling = new Int32Array(cap).fill(-1);
    const lastChild = new Int32Array(cap).fill(-1);
    const parent = new Int32Array(cap).fill(-1);
    const byte = new Uint8Array(cap);
    const start = new Int32Array(cap);
    const end = new Int32Array(cap);
    const ownEnd = new Int32Array(cap);
    const path = new Int32Array(longest + 1);
    let nodes = 1;
    let prev: Uint8Array = new Uint8Array(0);
    ids.forEach((id, i) => {
      const b = bytes[id] as Uint8Array;
      let lcp = 0;
      while (lcp < b.length && lcp < prev.length && b[lcp] === prev[lcp]) lcp++;
      // Sorted order: the previous token's nodes deeper than the common prefix are complete.
      for (let d = prev.length; d > lcp; d--) end[path[d]] = i;
      for (let d = lcp + 1; d <= b.length; d++) {
        const n = nodes++;
        const up = path[d - 1];
        byte[n] = b[d - 1];
        parent[n] = up;
        if (lastChild[up] >= 0) nextSibling[lastChild[up]] = n;
        else firstChild[up] = n;
        lastChild[up] = n;
        start[n] = i;
        ownEnd[n] = i;
        path[d] = n;
      }
      // Equal bytes sort together, so a node's own tokens are one run.
      ownEnd[path[b.length]] = i + 1;
      prev = b;
    });
    for (let d = prev.length; d > 0; d--) end[path[d]] = ids.length;
    end[0] = ids.length;
    // Children have larger ids than their parents: one backwards pass settles plainBelow.
    const plainBelow = new Uint8Array(nodes).fill(1);
    for (let n = nodes - 1; n > 0; n--) {
      if (!isPlainStringByte(byte[n]) || !plainBelow[n]) plainBelow[parent[n]] = 0;
    }
    this.nodes = nodes;
    this.firstChild = firstChild.slice(0, nodes);
    this.nextSibling = nextSibling.slice(0, nodes);
    this.byte = byte.slice(0, nodes);
    this.start = start.slice(0, nodes);
    this.end = end.slice(0, nodes);
    this.ownEnd = ownEnd.slice(0, nodes);
    this.order = Int32Array.from(ids);
    this.plainBelow = plainBelow;
    this.maxBytes = longest;
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}
