// Qwen3's chat template (the chat_template of Qwen3's tokenizer_config.json, other fields trimmed,
// in test/fixtures/qwen3) rendered through @huggingface/jinja: no default system prompt, the
// enable_thinking switch, <think> blocks kept only after the last user query, Hermes-style tool
// calls and merged tool responses. Expected strings are what the template's own logic produces
// (as transformers' apply_chat_template(tokenize=False) renders it).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  type ChatMessage,
  QWEN3_CHAT_TEMPLATE,
  renderChatTemplate,
  type ToolSpec,
} from "../../src/model/chat-template.ts";

const template: string = JSON.parse(
  readFileSync(fileURLToPath(new URL("../fixtures/qwen3/tokenizer_config.json", import.meta.url)), "utf8"),
).chat_template;

const weatherTool: ToolSpec = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

describe("Qwen3 chat template", () => {
  it("is the template shipped as QWEN3_CHAT_TEMPLATE (what tiny Qwen3 models carry)", () => {
    expect(QWEN3_CHAT_TEMPLATE).toBe(template);
  });

  it("has no default system prompt; the generation prompt leaves room for thinking", () => {
    const out = renderChatTemplate(template, [{ role: "user", content: "Hi" }], { addGenerationPrompt: true });
    expect(out).toBe("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  });

  it("enable_thinking=false pre-fills an empty think block", () => {
    const messages: ChatMessage[] = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "2+2?" },
    ];
    const out = renderChatTemplate(template, messages, {
      addGenerationPrompt: true,
      extra: { enable_thinking: false },
    });
    expect(out).toBe(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n" +
        "<|im_start|>assistant\n<think>\n\n</think>\n\n",
    );
    // true (or unset) leaves the choice to the model.
    expect(
      renderChatTemplate(template, messages, { addGenerationPrompt: true, extra: { enable_thinking: true } }),
    ).toBe("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
  });

  it("drops the reasoning of turns before the last user query and keeps the final turn's", () => {
    const messages: ChatMessage[] = [
      { role: "user", content: "2+2?" },
      { role: "assistant", content: "<think>\nadd them\n</think>\n\n4" },
      { role: "user", content: "and 3+3?" },
      { role: "assistant", content: "<think>\nsix\n</think>\n\n6" },
    ];
    expect(renderChatTemplate(template, messages)).toBe(
      "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n" +
        "<|im_start|>user\nand 3+3?<|im_end|>\n<|im_start|>assistant\n<think>\nsix\n</think>\n\n6<|im_end|>\n",
    );
  });

  it("renders tools, tool calls (arguments as JSON), merged tool responses and reasoning_content", () => {
    const messages = [
      { role: "user", content: "Weather in Paris and Rome?" },
      {
        role: "assistant",
        content: "",
        tool_calls: [
          { type: "function", function: { name: "get_weather", arguments: '{"city": "Paris"}' } },
          { type: "function", function: { name: "get_weather", arguments: '{"city": "Rome"}' } },
        ],
      },
      { role: "tool", content: "18C" },
      { role: "tool", content: "24C" },
      { role: "assistant", content: "Paris 18C, Rome 24C.", reasoning_content: "both known" },
    ] as ChatMessage[];
    const out = renderChatTemplate(template, messages, { tools: [weatherTool] });
    expect(out).toBe(
      "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
        '{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather", ' +
        '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}' +
        "\n</tools>\n\nFor each function call, return a json object with function name and arguments within " +
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n' +
        "</tool_call><|im_end|>\n" +
        "<|im_start|>user\nWeather in Paris and Rome?<|im_end|>\n" +
        // After the last user query, but with no reasoning and not last: plain content (empty).
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n' +
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>\n' +
        "<|im_start|>user\n<tool_response>\n18C\n</tool_response>\n<tool_response>\n24C\n</tool_response><|im_end|>\n" +
        "<|im_start|>assistant\n<think>\nboth known\n</think>\n\nParis 18C, Rome 24C.<|im_end|>\n",
    );
  });
});
