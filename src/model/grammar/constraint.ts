// Constrained decoding on a model's vocabulary: a grammar (machine.ts) lifted to token masks.
// `TokenGrammar` is one grammar on one vocabulary: the mask of a machine state is found by walking
// the vocabulary's byte trie from that state (a subtree is cut as soon as a byte is refused) and
// cached under the state's key, so repeated states (inside strings, between properties) cost a
// map lookup. `GrammarConstraint` follows one generation through it, and also keeps the output
// closable within max_tokens: near the end of the budget it allows only tokens after which the
// shortest completion (plus EOS) still fits. Builders for response_format and forced tool calls
// are at the bottom; both grammars and vocabularies are cached.

import type { TokenConstraint } from "../scheduler.ts";
import type { ModelTokenizer } from "../tokenizer.ts";
import { type GrammarItem, GrammarMachine, type Stack } from "./machine.ts";
import { SchemaCompiler, type ValueNode } from "./schema.ts";
import { TokenTrie, tokenBytes } from "./token-bytes.ts";

/** The bytes and trie of one tokenizer at one vocabulary size (the logits' width). */
export class TokenVocabulary {
  readonly size: number;
  readonly words: number;
  readonly bytes: (Uint8Array | null)[];
  readonly trie: TokenTrie;
  readonly eos: number[];
  private readonly grammars = new Map<string, TokenGrammar>();

  constructor(tok: ModelTokenizer, size: number) {
    this.size = size;
    this.words = Math.ceil(size / 32);
    this.bytes = tokenBytes(tok, size);
    this.trie = new TokenTrie(this.bytes);
    this.eos = tok.eosTokenIds.filter((id) => id < size);
  }

  /** The grammar for `items`, compiled once per `key` (most recently used 16 kept). */
  grammar(key: string, items: () => GrammarItem[]): TokenGrammar {
    let g = this.grammars.get(key);
    if (g) {
      this.grammars.delete(key);
    } else {
      g = new TokenGrammar(this, new GrammarMachine(items()));
      if (this.grammars.size >= 16) this.grammars.delete(this.grammars.keys().next().value as string);
    }
    this.grammars.set(key, g);
    return g;
  }
}

const vocabularies = new WeakMap<ModelTokenizer, Map<number, TokenVocabulary>>();

/** The (cached) vocabulary of a tokenizer at a model vocabulary size. */
export function vocabularyOf(tok: ModelTokenizer, size: number): TokenVocabulary {
  let bySize = vocabularies.get(tok);
  if (!bySize) {
    bySize = new Map();
    vocabularies.set(tok, bySize);
  }
  let v = bySize.get(size);
  if (!v) {
    v = new TokenVocabulary(tok, size);
    bySize.set(size, v);
  }
  return v;
}

/** The tokens allowed in one machine state. */
interface StateMask {
  bits: Uint32Array;
  /** Allowed tokens. */
  count: number;
  /**
   * Per token id (meaningful where allowed): the fewest bytes that complete the output after it,
   * saturated at 65535 (a saturated token is only allowed once the budget needs no filtering).
   */
  after: Uint16Array;
  /** Largest true value of `after`: budgets at or above it need no filtering. */
  worst: number;
}

/** One grammar on one vocabulary, with masks cached per machine state. */
export class TokenGrammar {
  readonly vocab: TokenVocabulary;
  readonly machine: GrammarMachine;
  private readonly masks = new Map<string, StateMask>();
  private readonly maxMasks: number;

  constructor(vocab: TokenVocabulary, machine: GrammarMachine) {
    this.vocab = vocab;
    this.machine = machine;
    // At most ~16 MB of cached masks per grammar (16 grammars: ~256 MB per model): a mask is
    // its bits plus a u16 per token (~50 masks at a 152k vocabulary).
    this.maxMasks = Math.max(8, Math.floor((16 * 1024 * 1024) / (vocab.size * 2.125)));
  }

  /** A fresh matcher for one generation. */
  constraint(): GrammarConstraint {
    return new GrammarConstraint(this);
  }

  /** The mask of a state (cached). */
  maskOf(state: Stack[]): StateMask {
    const key = this.machine.stateKey(state);
    const known = this.masks.get(key);
    if (known) return known;
    const mask = this.compute(state);
    if (this.masks.size >= this.maxMasks) this.masks.delete(this.masks.keys().next().value as string);
    this.masks.set(key, mask);
    return mask;
  }

  private compute(state: Stack[]): StateMask {
    const { trie, words } = this.vocab;
    const bits = new Uint32Array(words);
    const after = new Uint16Array(this.vocab.size);
    let count = 0;
    let worst = 0;
    const allow = (id: number, rest: number) => {
      bits[id >>> 5] |= 1 << (id & 31);
      after[id] = Math.min(rest, 0xffff);
      worst = Math.max(worst, rest);
      count++;
    };
    const machine = this.machine;
    const visit = (node: number, s: Stack[]) => {
      if (trie.ownEnd[node] > trie.start[node]) {
        const rest = machine.minRemaining(s);
        for (let i = trie.start[node]; i < trie.ownEnd[node]; i++) allow(trie.order[i], rest);
      }
      for (let child = trie.firstChild[node]; child >= 0; child = trie.nextSibling[child]) {
        const next = machine.step(s, trie.byte[child]);
        if (next.length === 0) continue;
        // Inside a string's body, plain bytes keep the very same state: a subtree of only such
        // bytes is allowed whole, with no further machine steps.
        if (next.length === 1 && s.length === 1 && next[0] === s[0] && trie.plainBelow[child]) {
          const rest = machine.minRemaining(s);
          for (let i = trie.start[child]; i < trie.end[child]; i++) allow(trie.order[i], rest);
          continue;
        }
        visit(child, next);
      }
    };
    visit(0, state);
    if (machine.isComplete(state)) {
      for (const id of this.vocab.eos) allow(id, 0);
    }
    return { bits, count, after, worst };
  }
}

/** Follows one generation through a grammar; the scheduler asks it for each step's mask. */
export class GrammarConstraint implements TokenConstraint {
  private state: Stack[];
  private readonly grammar: TokenGrammar;
  private finished = false;

  constructor(grammar: TokenGrammar) {
    this.grammar = grammar;
    this.state = grammar.machine.initial();
  }

  /** Whether the output so far is a complete sentence of the grammar. */
  get complete(): boolean {
    return this.finished || this.grammar.machine.isComplete(this.state);
  }

  allowed(tokensLeft: number): Uint32Array | null {
    const mask = this.grammar.maskOf(this.state);
    const eos = new Set(this.grammar.vocab.eos);
    if (this.finished || mask.count === 0) {
      // A model without EOS ids has nothing to allow here; an empty mask would fail the whole
      // GPU step, so the row goes unmasked instead.
      if (eos.size === 0) return null;
      // Past the end (or a dead end, which the masks never lead to): only EOS.
      const only = new Uint32Array(this.grammar.vocab.words);
      for (const id of eos) only[id >>> 5] |= 1 << (id & 31);
      return only;
    }
    // After this token, tokensLeft − 1 remain: the shortest completion plus EOS must fit, one
    // byte per token at worst (byte-level vocabularies have every single byte as a token).
    const room = tokensLeft - 2;
    if (mask.worst <= room) return mask.bits;
    const fit = new Uint32Array(mask.bits.length);
    let any = false;
    for (let w = 0; w < mask.bits.length; w++) {
      for (let word = mask.bits[w]; word !== 0; word &= word - 1) {
        const id = w * 32 + (31 - Math.clz32(word & -word));
        if (mask.after[id] <= room || eos.has(id)) {
          fit[w] |= word & -word;
          any = true;
        }
      }
    }
    // Too little room for any completion: keep the grammar, the output will be cut at the limit.
    return any ? fit : mask.bits;
  }

  accept(token: number): void {
    if (this.finished) return;
    if (this.grammar.vocab.eos.includes(token)) {
      this.finished = true;
      return;
    }
    const bytes = this.grammar.vocab.bytes[token];
    let state = this.state;
    for (const b of bytes ?? []) state = this.grammar.machine.step(state, b);
    if (!bytes || state.length === 0) {
      throw new Error(`constrained decoding: token ${token} is not allowed here (the mask allowed it)`);
    }
    this.state = state;
  }
}

// ---------------------------------------------------------------------------------------------
// Grammars for the proxy

/** What `response_format` asks for, model-side. */
export type JsonFormat = { type: "json_object" } | { type: "json_schema"; schema: unknown };

/**
 * The grammar for a JSON answer: any object (json_object) or a value of the schema.
 * @throws SchemaError naming an unsupported schema feature.
 */
export function jsonGrammar(vocab: TokenVocabulary, format: JsonFormat): TokenGrammar {
  const key = format.type === "json_object" ? "json_object" : `schema:${JSON.stringify(format.schema ?? {})}`;
  // Compiled before the cache so an unsupported schema throws on every request, not just the first.
  const compiler = new SchemaCompiler(format.type === "json_object" ? {} : (format.schema ?? {}));
  const value = format.type === "json_object" ? compiler.anyValue(true) : compiler.compileRoot();
  return vocab.grammar(key, () => [{ value }]);
}

/** A function the model may be forced to call, with its parameter schema. */
export interface ToolSchema {
  name: string;
  /** JSON schema of the arguments; absent = any object. */
  parameters?: unknown;
}

/** Where a tool call sits in the model's output (Hermes/Qwen: `<tool_call>\n{...}\n</tool_call>`). */
export interface ToolCallFormat {
  open: string;
  close: string;
}

export const HERMES_TOOL_CALL: ToolCallFormat = { open: "<tool_call>\n", close: "\n</tool_call>" };

/**
 * The grammar for exactly one tool call to one of `tools`: `{"name": <one of them>,
 * "arguments": <that tool's parameter schema>}` between the format's tags, then EOS.
 * @throws SchemaError naming an unsupported feature of a tool's parameter schema.
 */
export function toolCallGrammar(vocab: TokenVocabulary, tools: ToolSchema[], format = HERMES_TOOL_CALL): TokenGrammar {
  const encoder = new TextEncoder();
  const build = (): ValueNode => {
    const options: ValueNode[] = [];
    let id = 1_000_000;
    for (const tool of tools) {
      const compiler = new SchemaCompiler(tool.parameters ?? { type: "object" });
      const args = tool.parameters === undefined ? compiler.anyValue(true) : compiler.compileRoot();
      // Each tool's nodes get their own id range (ids key the machine's caches).
      const shift = (n: ValueNode, seen = new Set<ValueNode>()): void => {
        if (seen.has(n)) return;
        seen.add(n);
        (n as { id: number }).id += id;
        if (n.kind === "object") {
          for (const p of n.props) shift(p.node, seen);
          if (n.free) shift(n.free, seen);
        } else if (n.kind === "array") shift(n.items, seen);
        else if (n.kind === "union") for (const o of n.options) shift(o, seen);
        else if (n.kind === "ref" && n.target) shift(n.target, seen);
      };
      shift(args);
      id += 1_000_000;
      options.push({
        kind: "object",
        id: id - 1,
        free: null,
        props: [
          {
            key: encoder.encode('"name"'),
            name: "name",
            node: { kind: "literal", id: id - 2, values: [encoder.encode(JSON.stringify(tool.name))] },
            required: true,
          },
          { key: encoder.encode('"arguments"'), name: "arguments", node: args, required: true },
        ],
      });
    }
    return options.length === 1 ? options[0] : { kind: "union", id: 0, options };
  };
  // Compiled outside the cache too, so a bad parameter schema always throws.
  const value = build();
  const key = `tools:${JSON.stringify([format, tools])}`;
  return vocab.grammar(key, () => [
    { bytes: encoder.encode(format.open) },
    { value },
    { bytes: encoder.encode(format.close) },
  ]);
}
