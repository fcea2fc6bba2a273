// Gemma 3's chat template (the chat_template of gemma-3-1b-it's tokenizer_config.json, other
// fields trimmed, in test/fixtures/gemma3) rendered through @huggingface/jinja: <bos> first, turns
// as <start_of_turn>user|model … <end_of_turn>, the system prompt folded into the first user turn,
// content trimmed, strict user/model alternation. Expected strings are what the template's own
// logic produces (as transformers' apply_chat_template(tokenize=False) renders it).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { type ChatMessage, renderChatTemplate } from "../../src/model/chat-template.ts";

const config = JSON.parse(
  readFileSync(fileURLToPath(new URL("../fixtures/gemma3/tokenizer_config.json", import.meta.url)), "utf8"),
);
const template: string = config.chat_template;
const tokens = { bosToken: config.bos_token as string, eosToken: config.eos_token as string };

describe("Gemma 3 chat template", () => {
  it("renders a user turn and the model's generation prompt after <bos>", () => {
    const out = renderChatTemplate(template, [{ role: "user", content: "Hi" }], {
      ...tokens,
      addGenerationPrompt: true,
    });
    expect(out).toBe("<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  });

  it("folds the system prompt into the first user turn and calls the assistant 'model'", () => {
    const messages: ChatMessage[] = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "  What is 2+2?\n" },
      { role: "assistant", content: "4" },
      { role: "user", content: "And 3+3?" },
    ];
    const out = renderChatTemplate(template, messages, { ...tokens, addGenerationPrompt: true });
    expect(out).toBe(
      "<bos><start_of_turn>user\nBe brief.\n\nWhat is 2+2?<end_of_turn>\n" +
        "<start_of_turn>model\n4<end_of_turn>\n" +
        "<start_of_turn>user\nAnd 3+3?<end_of_turn>\n" +
        "<start_of_turn>model\n",
    );
  });

  it("takes OpenAI content parts (joined by toTemplateMessages with newlines before rendering)", () => {
    const out = renderChatTemplate(
      template,
      [
        {
          role: "user",
          content: [
            { type: "text", text: "Hello " },
            { type: "text", text: "there" },
          ],
        },
      ],
      tokens,
    );
    expect(out).toBe("<bos><start_of_turn>user\nHello \nthere<end_of_turn>\n");
  });

  it("each assistant turn's prompt is a prefix of the whole conversation (what SFT needs)", () => {
    const messages: ChatMessage[] = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "a" },
      { role: "assistant", content: "b" },
      { role: "user", content: "c" },
      { role: "assistant", content: "d" },
    ];
    const whole = renderChatTemplate(template, messages, tokens);
    for (const k of [2, 4]) {
      const prompt = renderChatTemplate(template, messages.slice(0, k), { ...tokens, addGenerationPrompt: true });
      expect(whole.startsWith(prompt), `prompt before message ${k}`).toBe(true);
    }
  });

  it("refuses conversations that do not alternate user/model, as transformers does", () => {
    const bad: ChatMessage[] = [
      { role: "user", content: "a" },
      { role: "user", content: "b" },
    ];
    expect(() => renderChatTemplate(template, bad, tokens)).toThrow(/Conversation roles must alternate/);
    // Gemma 3's template has no tool role: a tool result breaks the alternation too.
    const tool: ChatMessage[] = [
      { role: "user", content: "a" },
      { role: "assistant", content: "b" },
      { role: "tool", content: "c", tool_call_id: "x" },
    ];
    expect(() => renderChatTemplate(template, tool, tokens)).toThrow(/Conversation roles must alternate/);
  });
});
