// Chat template rendering against Qwen2.5-Instruct's real template (fixture copy of its
// tokenizer_config.json): exact strings as transformers' apply_chat_template(tokenize=False)
// produces them, including tools, parallel tool calls and merged tool responses.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  type ChatMessage,
  QWEN2_5_CHAT_TEMPLATE,
  renderChatTemplate,
  type ToolSpec,
  toTemplateMessages,
} from "../../src/model/chat-template.ts";

const fixture = JSON.parse(
  readFileSync(fileURLToPath(new URL("../fixtures/qwen2.5-instruct/tokenizer_config.json", import.meta.url)), "utf8"),
);
const template: string = fixture.chat_template;
const SYSTEM_DEFAULT =
  "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";

const weatherTool: ToolSpec = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const TOOLS_HEADER =
  "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
  "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
const TOOLS_FOOTER =
  "\n</tools>\n\nFor each function call, return a json object with function name and arguments within " +
  '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n' +
  "</tool_call><|im_end|>\n";
const WEATHER_JSON =
  '{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather", ' +
  '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}';

describe("Qwen2.5 chat template", () => {
  it("is the template shipped in the fixture tokenizer_config.json", () => {
    expect(QWEN2_5_CHAT_TEMPLATE).toBe(template);
  });

  it("adds the default system prompt and the generation prompt", () => {
    const out = renderChatTemplate(template, [{ role: "user", content: "Hi there" }], { addGenerationPrompt: true });
    expect(out).toBe(`${SYSTEM_DEFAULT}<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n`);
  });

  it("renders a multi-turn chat with a system prompt and no generation prompt", () => {
    const messages: ChatMessage[] = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "2+2?" },
      { role: "assistant", content: "4" },
      { role: "user", content: "And 3+3?" },
    ];
    expect(renderChatTemplate(template, messages)).toBe(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n" +
        "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n",
    );
  });

  it("renders tools, parallel tool calls with JSON-string arguments, and merged tool responses", () => {
    const messages: ChatMessage[] = [
      { role: "system", content: "You are a weather bot." },
      { role: "user", content: "Weather in Paris and Zürich?" },
      {
        role: "assistant",
        content: "Let me check.",
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris"}' } },
          {
            id: "call_2",
            type: "function",
            function: { name: "get_weather", arguments: '{"city":"Zürich","days":2}' },
          },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: '{"temp": 21}' },
      { role: "tool", tool_call_id: "call_2", content: '{"temp": 15}' },
      { role: "assistant", content: "Paris 21°C, Zürich 15°C." },
      { role: "user", content: "Thanks" },
    ];
    const out = renderChatTemplate(template, messages, { tools: [weatherTool], addGenerationPrompt: true });
    expect(out).toBe(
      `<|im_start|>system\nYou are a weather bot.${TOOLS_HEADER}\n${WEATHER_JSON}${TOOLS_FOOTER}` +
        "<|im_start|>user\nWeather in Paris and Zürich?<|im_end|>\n" +
        "<|im_start|>assistant\nLet me check.\n" +
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n' +
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich", "days": 2}}\n</tool_call><|im_end|>\n' +
        '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response>\n' +
        '<tool_response>\n{"temp": 15}\n</tool_response><|im_end|>\n' +
        "<|im_start|>assistant\nParis 21°C, Zürich 15°C.<|im_end|>\n" +
        "<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("uses the default system prompt inside the tools header, and wraps bare function schemas", () => {
    const bare: ToolSpec = {
      name: "get_weather",
      description: "Get the current weather",
      parameters: weatherTool.function.parameters,
    };
    const messages: ChatMessage[] = [
      { role: "user", content: "Weather?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ function: { name: "get_weather", arguments: { city: "Oslo" } } }],
      },
      { role: "tool", content: "cold" },
    ];
    const out = renderChatTemplate(template, messages, { tools: [bare] });
    expect(out).toBe(
      `<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.${TOOLS_HEADER}\n${WEATHER_JSON}${TOOLS_FOOTER}` +
        "<|im_start|>user\nWeather?<|im_end|>\n" +
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>\n' +
        "<|im_start|>user\n<tool_response>\ncold\n</tool_response><|im_end|>\n",
    );
  });

  it("joins text content parts and keeps unparseable arguments as the original string", () => {
    const messages: ChatMessage[] = [
      {
        role: "user",
        content: [
          { type: "text", text: "first" },
          { type: "text", text: "second" },
        ],
      },
      { role: "assistant", content: "", tool_calls: [{ function: { name: "f", arguments: "not json" } }] },
    ];
    expect(renderChatTemplate(template, messages)).toBe(
      `${SYSTEM_DEFAULT}<|im_start|>user\nfirst\nsecond<|im_end|>\n` +
        '<|im_start|>assistant\n<tool_call>\n{"name": "f", "arguments": "not json"}\n</tool_call><|im_end|>\n',
    );
  });

  it("provides raise_exception, bos_token and eos_token like transformers", () => {
    const strict =
      "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}{{ bos_token }}{{ messages[0].content }}{{ eos_token }}";
    expect(renderChatTemplate(strict, [{ role: "user", content: "x" }], { bosToken: "<s>", eosToken: "</s>" })).toBe(
      "<s>x</s>",
    );
    expect(() => renderChatTemplate(strict, [{ role: "assistant", content: "x" }])).toThrow(
      /first message must be from the user/,
    );
  });

  it("rejects non-text content parts and malformed messages clearly", () => {
    expect(() =>
      toTemplateMessages([
        {
          role: "user",
          content: [{ type: "image_url", image_url: { url: "x" } } as unknown as { type: "text"; text: string }],
        },
      ]),
    ).toThrow(/messages\[0\]\.content\[0\] has type "image_url"; only \{type:"text", text\} parts are supported/);
    expect(() => toTemplateMessages([{ content: "x" } as unknown as ChatMessage])).toThrow(
      /messages\[0\] must be an object with a string "role"/,
    );
    expect(() =>
      toTemplateMessages([{ role: "assistant", tool_calls: [{ function: {} }] }] as unknown as ChatMessage[]),
    ).toThrow(/tool_calls\[0\]\.function\.name must be a string/);
  });
});
