// Constrained decoding's grammar on the built-in model's real tokenizer, without a GPU: token
// bytes agree with the tokenizer, the byte machine accepts exactly the JSON the schema allows,
// and random walks through the token masks (any allowed token, the worst possible model) always
// end in output that parses and validates, within the token budget, for every supported feature.
import { zodResponseFormat } from "openai/helpers/zod";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  HERMES_TOOL_CALL,
  jsonGrammar,
  type TokenGrammar,
  toolCallGrammar,
  vocabularyOf,
} from "../../src/model/grammar/constraint.ts";
import { GrammarMachine } from "../../src/model/grammar/machine.ts";
import { SchemaCompiler, SchemaError } from "../../src/model/grammar/schema.ts";
import { ModelTokenizer } from "../../src/model/tokenizer.ts";
import { mulberry32 } from "../../src/random.ts";

const tok = await ModelTokenizer.load("models/fulgur-calc");
const vocab = vocabularyOf(tok, 1500);
const encoder = new TextEncoder();

function allowedIds(mask: Uint32Array): number[] {
  const ids: number[] = [];
  for (let id = 0; id < vocab.size; id++) if ((mask[id >>> 5] >>> (id & 31)) & 1) ids.push(id);
  return ids;
}

/** Samples uniformly among allowed tokens until EOS or the budget; returns the text and how it ended. */
function randomWalk(grammar: TokenGrammar, budget: number, seed: number): { text: string; eos: boolean } {
  const rand = mulberry32(seed);
  const c = grammar.constraint();
  const ids: number[] = [];
  for (let i = 0; i < budget; i++) {
    const allowed = allowedIds(c.allowed(budget - i)!);
    expect(allowed.length).toBeGreaterThan(0);
    const t = allowed[Math.floor(rand() * allowed.length)];
    c.accept(t);
    if (vocab.eos.includes(t)) return { text: tok.decode(ids), eos: true };
    ids.push(t);
  }
  return { text: tok.decode(ids), eos: false };
}

/** Whether the machine accepts `text` as a complete sentence. */
function accepts(schema: unknown, text: string): boolean {
  const machine = new GrammarMachine([{ value: new SchemaCompiler(schema).compileRoot() }]);
  let state = machine.initial();
  for (const b of encoder.encode(text)) {
    state = machine.step(state, b);
    if (state.length === 0) return false;
  }
  return machine.isComplete(state);
}

describe("token bytes", () => {
  it("concatenate to the tokenizer's own encoding of any text", () => {
    for (const text of ['{"a": [1, -2.5e3, true, null]}', "héllo wörld ✓ 🎉", "<tool_call>\n{}\n</tool_call>"]) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      const bytes = ids.flatMap((id) => Array.from(vocab.bytes[id] ?? []));
      expect(new TextDecoder().decode(Uint8Array.from(bytes))).toBe(text);
    }
    for (const id of tok.specialTokenIds) expect(vocab.bytes[id]).toBeNull();
  });
});

describe("token bytes of a SentencePiece-style tokenizer", () => {
  it("maps ▁ to a space and <0xNN> byte-fallback pieces to their byte; special tokens have none", () => {
    const vocabEntries = ["<unk>", "<s>", "</s>", "<0x0A>", "<0xE2>", "▁", "▁hello", "{", '":', "é"];
    const sp = new ModelTokenizer({
      tokenizer: {
        version: "1.0",
        added_tokens: [
          {
            id: 0,
            content: "<unk>",
            special: true,
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized: false,
          },
          {
            id: 2,
            content: "</s>",
            special: true,
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized: false,
          },
        ],
        normalizer: null,
        post_processor: null,
        pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
        decoder: {
          type: "Sequence",
          decoders: [
            { type: "Replace", pattern: { String: "▁" }, content: " " },
            { type: "ByteFallback" },
            { type: "Fuse" },
            { type: "Strip", content: " ", start: 1, stop: 0 },
          ],
        },
        model: {
          type: "BPE",
          unk_token: "<unk>",
          byte_fallback: true,
          fuse_unk: true,
          vocab: Object.fromEntries(vocabEntries.map((t, i) => [t, i])),
          merges: [],
        },
      },
      tokenizerConfig: { eos_token: "</s>" },
    });
    const bytes = vocabularyOf(sp, 12).bytes;
    const text = (id: number) => (bytes[id] ? Array.from(bytes[id]!) : null);
    expect(text(6)).toEqual(Array.from(encoder.encode(" hello")));
    expect(text(3)).toEqual([0x0a]);
    expect(text(4)).toEqual([0xe2]);
    expect(text(8)).toEqual(Array.from(encoder.encode('":')));
    expect(text(9)).toEqual(Array.from(encoder.encode("é")));
    expect(text(0)).toBeNull();
    expect(text(2)).toBeNull();
    // Ids past the tokenizer (a padded model vocabulary) have no bytes either.
    expect(text(11)).toBeNull();
  });
});

describe("the byte machine", () => {
  const schema = {
    type: "object",
    properties: { a: { type: "integer" }, b: { type: ["string", "null"] }, c: { enum: ["x", 2] } },
    required: ["a", "c"],
    additionalProperties: false,
  };
  it("accepts compact JSON of the schema, with one space after : and , at most", () => {
    expect(accepts(schema, '{"a":1,"c":"x"}')).toBe(true);
    expect(accepts(schema, '{"a": -12, "b": null, "c": 2}')).toBe(true);
    expect(accepts(schema, '{"a":0,"b":"q\\u00e9\\n","c":"x"}')).toBe(true);
  });
  it("rejects what would not validate, or is not in schema order, or is padded", () => {
    expect(accepts(schema, '{"a":1}')).toBe(false); // c missing
    expect(accepts(schema, '{"c":"x","a":1}')).toBe(false); // order
    expect(accepts(schema, '{"a":1.5,"c":"x"}')).toBe(false); // integer
    expect(accepts(schema, '{"a":01,"c":"x"}')).toBe(false);
    expect(accepts(schema, '{"a":1,"c":"y"}')).toBe(false);
    expect(accepts(schema, '{"a":1,"c":"x","d":1}')).toBe(false);
    expect(accepts(schema, '{"a":1,  "c":"x"}')).toBe(false);
    expect(accepts(schema, ' {"a":1,"c":"x"}')).toBe(false);
    expect(accepts(schema, '{"a":1,"b":"\u0001","c":"x"}')).toBe(false);
  });
  it("supports $ref/$defs with recursion, anyOf, nullable, arrays with bounds", () => {
    const tree = {
      $ref: "#/$defs/node",
      $defs: {
        node: {
          type: "object",
          properties: { v: { type: "number" }, kids: { type: "array", items: { $ref: "#/$defs/node" }, maxItems: 2 } },
          required: ["v", "kids"],
          additionalProperties: false,
        },
      },
    };
    expect(accepts(tree, '{"v":1,"kids":[{"v":2,"kids":[]},{"v":3e2,"kids":[]}]}')).toBe(true);
    expect(accepts(tree, '{"v":1,"kids":[{"v":2,"kids":[]},{"v":3,"kids":[]},{"v":4,"kids":[]}]}')).toBe(false);
    expect(accepts({ anyOf: [{ type: "string" }, { type: "integer", minimum: 0 }] }, "-1")).toBe(false);
    expect(accepts({ type: "string", nullable: true }, "null")).toBe(true);
    expect(accepts({ type: "array", items: { type: "boolean" }, minItems: 2 }, "[true]")).toBe(false);
  });
});

describe("unsupported schema features", () => {
  for (const [schema, feature] of [
    [{ type: "string", pattern: "^a" }, "pattern"],
    [{ type: "string", format: "email" }, "format"],
    [{ type: "string", minLength: 2 }, "minLength"],
    [{ type: "number", minimum: 3 }, "minimum"],
    [{ type: "number", multipleOf: 2 }, "multipleOf"],
    [{ type: "object", properties: { a: { not: {} } } }, "not"],
    [{ $ref: "https://example.com/s.json" }, "$ref"],
  ] as const) {
    it(`names \`${feature}\``, () => {
      expect(() => new SchemaCompiler(schema).compileRoot()).toThrow(SchemaError);
      expect(() => new SchemaCompiler(schema).compileRoot()).toThrow(feature === "$ref" ? /\$ref/ : `\`${feature}\``);
    });
  }
});

describe("random walks through the token masks always end in valid output", () => {
  const Inner = z.object({ deep: z.boolean(), list: z.array(z.number().int()) });
  const schemas: [string, z.ZodType][] = [
    [
      "object with every type",
      z.object({
        name: z.string(),
        qty: z.number().int(),
        price: z.number(),
        tags: z.array(z.enum(["a", "b", "c"])),
        note: z.string().nullable(),
        flag: z.boolean(),
        none: z.null(),
        kind: z.union([z.literal("x"), Inner]),
        fixed: z.literal("k"),
      }),
    ],
    ["nested objects and optional properties", z.object({ a: Inner, b: Inner.optional(), c: z.string().optional() })],
    ["top-level array", z.array(z.object({ id: z.number().int() }))],
  ];
  for (const [label, zodSchema] of schemas) {
    it(label, () => {
      const g = jsonGrammar(vocab, { type: "json_schema", schema: z.toJSONSchema(zodSchema) });
      for (let seed = 0; seed < 12; seed++) {
        // Above the shortest valid output (~100 bytes for the first schema), so EOS must fit.
        const budget = 110 + seed * 10;
        const { text, eos } = randomWalk(g, budget, seed);
        expect(eos, text).toBe(true);
        const parsed = zodSchema.safeParse(JSON.parse(text));
        expect(parsed.success, `${text}\n${parsed.error}`).toBe(true);
      }
    });
  }

  it("zodResponseFormat output with $ref/definitions (a reused and a recursive sub-schema)", () => {
    const Point = z.object({ x: z.number(), y: z.number() });
    type Tree = { label: string; children: Tree[] };
    const Tree: z.ZodType<Tree> = z.lazy(() => z.object({ label: z.string(), children: z.array(Tree) }));
    const Shape = z.object({ from: Point, to: Point, tree: Tree });
    const schema = zodResponseFormat(Shape, "shape").json_schema.schema;
    expect(JSON.stringify(schema)).toMatch(/"\$ref"/);
    const g = jsonGrammar(vocab, { type: "json_schema", schema });
    for (let seed = 0; seed < 10; seed++) {
      const { text, eos } = randomWalk(g, 120, seed);
      expect(eos, text).toBe(true);
      const parsed = Shape.safeParse(JSON.parse(text));
      expect(parsed.success, `${text}\n${parsed.error}`).toBe(true);
    }
  });

  it("json_object: any object", () => {
    const g = jsonGrammar(vocab, { type: "json_object" });
    for (let seed = 0; seed < 12; seed++) {
      const { text, eos } = randomWalk(g, 50, seed);
      expect(eos, text).toBe(true);
      const value = JSON.parse(text);
      expect(typeof value === "object" && value !== null && !Array.isArray(value), text).toBe(true);
    }
  });

  it("a forced tool call: the tags, one of the tools, its arguments' schema", () => {
    const tools = [
      {
        name: "calc",
        parameters: {
          type: "object",
          properties: { expression: { type: "string" } },
          required: ["expression"],
          additionalProperties: false,
        },
      },
      { name: "lookup", parameters: { type: "object", properties: { id: { type: "integer" } }, required: ["id"] } },
    ];
    const g = toolCallGrammar(vocab, tools);
    const names = new Set<string>();
    for (let seed = 0; seed < 16; seed++) {
      const { text, eos } = randomWalk(g, 60, seed);
      expect(eos, text).toBe(true);
      expect(text.startsWith(HERMES_TOOL_CALL.open) && text.endsWith(HERMES_TOOL_CALL.close), text).toBe(true);
      const call = JSON.parse(text.slice(HERMES_TOOL_CALL.open.length, -HERMES_TOOL_CALL.close.length));
      names.add(call.name);
      if (call.name === "calc") expect(Object.keys(call.arguments)).toEqual(["expression"]);
      else expect(Number.isInteger(call.arguments.id), text).toBe(true);
    }
    expect(names).toEqual(new Set(["calc", "lookup"]));
  });

  it("EOS is allowed only once the JSON is complete, and alone after it", () => {
    const g = jsonGrammar(vocab, { type: "json_schema", schema: { type: "object", properties: {} } });
    const c = g.constraint();
    for (const id of vocab.eos) expect(allowedIds(c.allowed(100)!)).not.toContain(id);
    for (const id of tok.encode("{}", { addSpecialTokens: false })) c.accept(id);
    expect(allowedIds(c.allowed(100)!)).toEqual([...vocab.eos].sort((a, b) => a - b));
  });

  it("masks are cached per machine state", () => {
    const g = jsonGrammar(vocab, { type: "json_object" });
    const a = g.constraint();
    const b = g.constraint();
    expect(a.allowed(100)).toBe(b.allowed(100));
  });
});
