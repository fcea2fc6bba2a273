// Hermes tool-call parsing: the whole-text parser against vLLM's behaviour, and the streaming
// parser fed the same texts split at every possible point (tags cut across deltas included), which
// must assemble to the same calls and content.
import { describe, expect, it } from "vitest";
import type { ToolCallDelta } from "../../src/proxy/openai-types.ts";
import {
  newToolCallId,
  parseToolCallBody,
  parseToolCalls,
  StreamingToolCallParser,
  ToolCallAssembler,
} from "../../src/proxy/tool-calls.ts";
import { rng } from "../helpers/random.ts";

const call = (name: string, args: unknown) => `<tool_call>\n${JSON.stringify({ name, arguments: args })}\n</tool_call>`;

function counterIds(): () => string {
  let i = 0;
  return () => `call_${i++}`;
}

/** Runs the streaming parser over `pieces` and assembles what it emitted. */
function stream(pieces: string[]) {
  const parser = new StreamingToolCallParser(counterIds());
  let content = "";
  const deltas: ToolCallDelta[] = [];
  for (const piece of pieces) {
    const out = parser.push(piece);
    content += out.content;
    deltas.push(...out.toolCalls);
  }
  const end = parser.finish();
  content += end.content;
  deltas.push(...end.toolCalls);
  const assembler = new ToolCallAssembler();
  assembler.add(deltas);
  return { content, deltas, calls: assembler.result() };
}

/** Splits text into pieces at random points (code-point safe). */
function randomSplit(text: string, seed: number): string[] {
  const chars = [...text];
  const r = rng(seed);
  const pieces: string[] = [];
  let current = "";
  for (const ch of chars) {
    current += ch;
    if (r() < 0.3) {
      pieces.push(current);
      current = "";
    }
  }
  if (current) pieces.push(current);
  return pieces;
}

const CASES: { name: string; text: string; content: string | null; calls: { name: string; arguments: string }[] }[] = [
  { name: "plain text", text: "Hello there.", content: "Hello there.", calls: [] },
  { name: "empty", text: "", content: "", calls: [] },
  {
    name: "one call",
    text: call("get_weather", { city: "Paris" }),
    content: null,
    calls: [{ name: "get_weather", arguments: '{"city":"Paris"}' }],
  },
  {
    name: "content then call",
    text: `Let me check.\n${call("search", { q: "x" })}`,
    content: "Let me check.\n",
    calls: [{ name: "search", arguments: '{"q":"x"}' }],
  },
  {
    name: "two calls",
    text: `${call("a", { i: 1 })}\n${call("b", { i: 2 })}`,
    content: null,
    calls: [
      { name: "a", arguments: '{"i":1}' },
      { name: "b", arguments: '{"i":2}' },
    ],
  },
  {
    name: "unicode and nested JSON",
    text: call("book", { who: "Zoë 🚀 東京", nested: { list: [1, { deep: "</tool" }], s: "a}b{" } }),
    content: null,
    calls: [
      {
        name: "book",
        arguments: JSON.stringify({ who: "Zoë 🚀 東京", nested: { list: [1, { deep: "</tool" }], s: "a}b{" } }),
      },
    ],
  },
  {
    // A constrained call may write the closing tag inside a string argument.
    name: "closing tag inside a string argument",
    text: call("calc", { expression: '1+2 </tool_call> "3\\" </tool_call>' }),
    content: null,
    calls: [{ name: "calc", arguments: JSON.stringify({ expression: '1+2 </tool_call> "3\\" </tool_call>' }) }],
  },
  {
    name: "an unbalanced quote leaves the call malformed",
    text: '<tool_call>{"name": "a", "arguments": {"x": "1}}</tool_call>',
    content: '<tool_call>{"name": "a", "arguments": {"x": "1}}</tool_call>',
    calls: [],
  },
  {
    name: "unclosed final call (stopped at EOS)",
    text: '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n',
    content: null,
    calls: [{ name: "f", arguments: '{"x":1}' }],
  },
  {
    name: "missing arguments",
    text: '<tool_call>{"name": "ping"}</tool_call>',
    content: null,
    calls: [{ name: "ping", arguments: "{}" }],
  },
  {
    name: "text after calls is dropped",
    text: `${call("a", {})} trailing words`,
    content: null,
    calls: [{ name: "a", arguments: "{}" }],
  },
  {
    name: "lone '<' is content",
    text: "a < b and <tool is not a tag",
    content: "a < b and <tool is not a tag",
    calls: [],
  },
];

describe("parseToolCalls (non-streaming)", () => {
  for (const c of CASES) {
    it(c.name, () => {
      const parsed = parseToolCalls(c.text, counterIds());
      expect(parsed.content).toBe(c.content);
      expect(parsed.toolCalls.map((t) => t.function)).toEqual(c.calls);
      parsed.toolCalls.forEach((t, i) => {
        expect(t.id).toBe(`call_${i}`);
        expect(t.type).toBe("function");
      });
    });
  }

  it("leaves malformed JSON as content without throwing", () => {
    const text = `Sure.\n<tool_call>\n{"name": "f", "arguments": {"x": }\n</tool_call>`;
    expect(parseToolCalls(text)).toEqual({ content: text, toolCalls: [] });
    const noName = '<tool_call>{"arguments": {}}</tool_call>';
    expect(parseToolCalls(noName)).toEqual({ content: noName, toolCalls: [] });
    const notObject = "<tool_call>[1, 2]</tool_call>";
    expect(parseToolCalls(notObject)).toEqual({ content: notObject, toolCalls: [] });
  });

  it("one malformed call among good ones keeps the whole text as content", () => {
    const text = `${call("a", {})}\n<tool_call>{oops}</tool_call>`;
    expect(parseToolCalls(text)).toEqual({ content: text, toolCalls: [] });
  });

  it("passes string arguments through and accepts 'parameters'", () => {
    expect(parseToolCallBody('{"name":"f","arguments":"{\\"a\\":1}"}')).toEqual({ name: "f", arguments: '{"a":1}' });
    expect(parseToolCallBody('{"name":"f","parameters":{"a":1}}')).toEqual({ name: "f", arguments: '{"a":1}' });
  });

  it("makes distinct OpenAI-style ids", () => {
    const ids = new Set(Array.from({ length: 50 }, newToolCallId));
    expect(ids.size).toBe(50);
    for (const id of ids) expect(id).toMatch(/^call_[A-Za-z0-9_-]{24}$/);
  });
});

describe("StreamingToolCallParser", () => {
  for (const c of CASES) {
    it(`${c.name}: same result whole, per character and split at random`, () => {
      const splits = [[c.text], [...c.text], randomSplit(c.text, 1), randomSplit(c.text, 2), randomSplit(c.text, 3)];
      for (const pieces of splits) {
        const out = stream(pieces);
        expect(out.calls.map((t) => t.function)).toEqual(c.calls);
        // Streaming cannot send null: content before the first call (or all text) arrives as text.
        expect(out.content).toBe(
          c.content ?? (c.calls.length > 0 ? c.text.slice(0, c.text.indexOf("<tool_call>")) : ""),
        );
      }
    });
  }

  it("holds back a tag split across deltas, and releases a false alarm", () => {
    const parser = new StreamingToolCallParser(counterIds());
    expect(parser.push("Hi <tool")).toEqual({ content: "Hi ", toolCalls: [] });
    expect(parser.push("box> ok")).toEqual({ content: "<toolbox> ok", toolCalls: [] });
    expect(parser.push(" <")).toEqual({ content: " ", toolCalls: [] });
    expect(parser.finish()).toEqual({ content: "<", toolCalls: [] });
  });

  it("emits each call once complete, in OpenAI's delta shape", () => {
    const parser = new StreamingToolCallParser(counterIds());
    expect(parser.push('<tool_call>\n{"name": "f", "arguments": {"a"')).toEqual({ content: "", toolCalls: [] });
    const out = parser.push(': "é"}}\n</tool_');
    expect(out.toolCalls).toEqual([]);
    const done = parser.push("call>\n<tool_call>");
    expect(done.toolCalls).toEqual([
      { index: 0, id: "call_0", type: "function", function: { name: "f", arguments: "" } },
      { index: 0, function: { arguments: '{"a":"é"}' } },
    ]);
    const second = parser.push('{"name": "g", "arguments": {}}</tool_call>');
    expect(second.toolCalls[0]).toMatchObject({ index: 1, id: "call_1", function: { name: "g" } });
    expect(parser.toolCallCount).toBe(2);
  });

  it("sends a malformed call as content instead of failing", () => {
    const out = stream(["Hmm ", "<tool_call>{bad json}</tool_call>"]);
    expect(out.calls).toEqual([]);
    expect(out.content).toBe("Hmm <tool_call>{bad json}</tool_call>");
    const unclosed = stream(["<tool_call>{bad"]);
    expect(unclosed.content).toBe("<tool_call>{bad");
  });
});
