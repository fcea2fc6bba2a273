// Request validation and normalisation without HTTP: OpenAI's defaults, which field an error names,
// and that parsed messages and tools fit the chat template's types (checked by the compiler).
import { describe, expect, it } from "vitest";
import type { ChatMessage, ToolSpec } from "../../src/model/chat-template.ts";
import { formatParamPath, ProxyError } from "../../src/proxy/errors.ts";
import { parseChatRequest, parseCompletionRequest } from "../../src/proxy/normalize.ts";

const user = (content: unknown) => ({ role: "user", content });

function rejection(fn: () => unknown): ProxyError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ProxyError) return err;
    throw err;
  }
  throw new Error("expected a ProxyError");
}

describe("parseChatRequest", () => {
  it("applies OpenAI's defaults", () => {
    const req = parseChatRequest({ model: "m", messages: [user("hi")] });
    expect(req.sampling).toEqual({
      n: 1,
      temperature: 1,
      topP: 1,
      topK: 0,
      maxTokens: null,
      stop: [],
      seed: null,
      logprobs: false,
      topLogprobs: 0,
      presencePenalty: 0,
      frequencyPenalty: 0,
    });
    expect(req).toMatchObject({
      tools: null,
      toolChoice: "none",
      parseToolCalls: false,
      responseFormat: { type: "text" },
      stream: false,
      includeUsage: false,
      user: null,
      extra: {},
    });
  });

  it("prefers max_completion_tokens, turns a stop string into a list, keeps unknown fields", () => {
    const req = parseChatRequest({
      model: "m",
      messages: [user("hi")],
      max_tokens: 10,
      max_completion_tokens: 20,
      stop: "END",
      top_k: -1,
      repetition_penalty: 1.1,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(req.sampling.maxTokens).toBe(20);
    expect(req.sampling.stop).toEqual(["END"]);
    expect(req.sampling.topK).toBe(0);
    expect(req.extra).toEqual({ repetition_penalty: 1.1 });
    expect(req.includeUsage).toBe(true);
  });

  it("defaults tool_choice to auto when tools are given and parses calls then", () => {
    const tools = [{ type: "function", function: { name: "f", parameters: { type: "object" } } }];
    const req = parseChatRequest({ model: "m", messages: [user("hi")], tools });
    expect(req.toolChoice).toBe("auto");
    expect(req.parseToolCalls).toBe(true);
    const named = parseChatRequest({
      model: "m",
      messages: [user("hi")],
      tools,
      tool_choice: { type: "function", function: { name: "f" } },
    });
    expect(named.toolChoice).toEqual({ type: "function", function: { name: "f" } });
    // The parsed shapes are what the chat template takes.
    const messages: ChatMessage[] = named.messages;
    const specs: ToolSpec[] = named.tools ?? [];
    expect(messages).toHaveLength(1);
    expect(specs).toHaveLength(1);
  });

  it("keeps assistant tool calls and tool results as sent", () => {
    const messages = [
      user("weather?"),
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "call_1", type: "function", function: { name: "w", arguments: '{"c":"Oslo"}' } }],
      },
      { role: "tool", tool_call_id: "call_1", content: "sunny" },
      { role: "developer", content: [{ type: "text", text: "be nice" }] },
    ];
    expect(parseChatRequest({ model: "m", messages }).messages).toEqual(messages);
  });

  const bad: [string, Record<string, unknown>, string, RegExp][] = [
    ["assistant without content or calls", { messages: [{ role: "assistant" }] }, "messages[0].content", /content/],
    ["message that is not an object", { messages: ["hi"] }, "messages[0]", /object/],
    ["audio part", { messages: [user([{ type: "input_audio" }])] }, "messages[0].content[0].type", /not supported/],
    ["text part without text", { messages: [user([{ type: "text" }])] }, "messages[0].content[0].text", /text/],
    ["n = 0", { messages: [user("x")], n: 0 }, "n", /n/],
    ["top_p > 1", { messages: [user("x")], top_p: 1.5 }, "top_p", /top_p/],
    ["max_tokens 0", { messages: [user("x")], max_tokens: 0 }, "max_tokens", /max_tokens/],
    [
      "stream_options without stream",
      { messages: [user("x")], stream_options: { include_usage: true } },
      "stream_options",
      /stream/,
    ],
    ["tool_choice without tools", { messages: [user("x")], tool_choice: "required" }, "tool_choice", /tools/],
    [
      "tool_choice naming a missing tool",
      {
        messages: [user("x")],
        tools: [{ type: "function", function: { name: "a" } }],
        tool_choice: { type: "function", function: { name: "b" } },
      },
      "tool_choice.function.name",
      /"b"/,
    ],
    [
      "bad function name",
      { messages: [user("x")], tools: [{ type: "function", function: { name: "a b" } }] },
      "tools[0].function.name",
      /name/,
    ],
    [
      "unknown response_format",
      { messages: [user("x")], response_format: { type: "yaml" } },
      "response_format.type",
      /type/,
    ],
  ];
  for (const [name, body, param, message] of bad) {
    it(`rejects ${name} with param ${param}`, () => {
      const err = rejection(() => parseChatRequest({ model: "m", ...body }));
      expect(err.status).toBe(400);
      expect(err.param).toBe(param);
      expect(err.message).toMatch(message);
      expect(err.toBody().error.type).toBe("invalid_request_error");
    });
  }
});

describe("parseCompletionRequest", () => {
  it("normalises every prompt form and applies the legacy max_tokens default", () => {
    expect(parseCompletionRequest({ model: "m", prompt: "a" }).prompts).toEqual(["a"]);
    expect(parseCompletionRequest({ model: "m", prompt: ["a", "b"] }).prompts).toEqual(["a", "b"]);
    expect(parseCompletionRequest({ model: "m", prompt: [1, 2] }).prompts).toEqual([[1, 2]]);
    expect(parseCompletionRequest({ model: "m", prompt: [[1], [2, 3]] }).prompts).toEqual([[1], [2, 3]]);
    const req = parseCompletionRequest({ model: "m", prompt: "a", logprobs: 3 });
    expect(req.sampling).toMatchObject({ maxTokens: 16, logprobs: true, topLogprobs: 3 });
  });

  it("rejects logprobs > 5, echo, suffix and empty prompts", () => {
    expect(rejection(() => parseCompletionRequest({ model: "m", prompt: "a", logprobs: 6 })).param).toBe("logprobs");
    expect(rejection(() => parseCompletionRequest({ model: "m", prompt: "a", echo: true })).param).toBe("echo");
    expect(rejection(() => parseCompletionRequest({ model: "m", prompt: "a", suffix: "z" })).param).toBe("suffix");
    expect(rejection(() => parseCompletionRequest({ model: "m", prompt: [] })).param).toBe("prompt");
    expect(rejection(() => parseCompletionRequest({ model: "m" })).message).toMatch(
      /Missing required parameter: 'prompt'/,
    );
  });
});

describe("formatParamPath", () => {
  it("writes paths the way OpenAI names params", () => {
    expect(formatParamPath(["messages", 0, "content", 1, "type"])).toBe("messages[0].content[1].type");
    expect(formatParamPath(["tools", 2, "function", "name"])).toBe("tools[2].function.name");
    expect(formatParamPath([])).toBeNull();
  });
});
