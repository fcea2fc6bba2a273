// ModelTokenizer: loading a model directory's tokenizer files, encode/decode, chat encoding, and
// where the end-of-generation ids come from.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { ModelTokenizer } from "../../src/model/tokenizer.ts";

const root = mkdtempSync(join(tmpdir(), "fulgur-tok-"));
const dir = join(root, "tiny");
let tok: ModelTokenizer;
let tokenizerJson: Record<string, unknown>;

beforeAll(async () => {
  const tiny = await writeTinyModel(dir, { seed: 1, hidden: 16, heads: 2, kvHeads: 1, layers: 1 });
  tokenizerJson = tiny.tokenizer;
  tok = await ModelTokenizer.load(dir);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const qwenFixture = (name: string) =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`../fixtures/qwen2.5-instruct/${name}`, import.meta.url)), "utf8"));

describe("ModelTokenizer", () => {
  it("reads special tokens, eos ids and vocabulary size from the model directory", () => {
    const imEnd = tok.tokenToId("<|im_end|>")!;
    const eot = tok.tokenToId("<|endoftext|>")!;
    expect(tok.eosTokenIds).toEqual([imEnd, eot]);
    expect(tok.specialTokenIds).toEqual([eot, tok.tokenToId("<|im_start|>"), imEnd]);
    expect(tok.vocabSize).toBe(512);
    expect(tok.eosToken).toBe("<|im_end|>");
    expect(tok.idToToken(imEnd)).toBe("<|im_end|>");
  });

  it("round-trips text including emoji and CJK, and decodes [] to ''", () => {
    for (const text of ["plain text", "naïve 🎉 日本語 \t\n", " leading space", "a  .  b ,c"]) {
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
    expect(tok.decode([])).toBe("");
  });

  it("drops only special tokens when asked: <tool_call> tags are kept like Qwen's", () => {
    const ids = tok.encode("<|im_start|>assistant\n<tool_call>\n{}\n</tool_call><|im_end|>");
    expect(tok.decode(ids)).toBe("<|im_start|>assistant\n<tool_call>\n{}\n</tool_call><|im_end|>");
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("assistant\n<tool_call>\n{}\n</tool_call>");
  });

  it("rejects ids outside the vocabulary and non-string input", () => {
    expect(() => tok.decode([1, 512])).toThrow(/token id 512 is outside the vocabulary \[0, 512\)/);
    expect(() => tok.decode([-1])).toThrow(/outside the vocabulary/);
    expect(() => tok.encode(42 as unknown as string)).toThrow(/encode expects a string/);
  });

  it("encodes chats through the ChatML template with each special token as one id", () => {
    const messages = [{ role: "user" as const, content: "What is 2+2?" }];
    const text = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
    expect(text.endsWith("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")).toBe(true);
    const ids = tok.encodeChat(messages, { addGenerationPrompt: true });
    expect(ids).toEqual(tok.encode(text, { addSpecialTokens: false }));
    expect(ids[0]).toBe(tok.tokenToId("<|im_start|>"));
    expect(ids.filter((id) => id === tok.tokenToId("<|im_end|>")).length).toBe(2);
    expect(tok.decode(ids)).toBe(text);
    // transformers' default is no generation prompt.
    expect(tok.applyChatTemplate(messages).endsWith("<|im_end|>\n")).toBe(true);
  });

  it("honours a post-processor that adds BOS, but not inside encodeChat", () => {
    const eot = tok.tokenToId("<|endoftext|>")!;
    const withBos = new ModelTokenizer({
      tokenizer: {
        ...tokenizerJson,
        post_processor: {
          type: "TemplateProcessing",
          single: [{ SpecialToken: { id: "<|endoftext|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
          special_tokens: { "<|endoftext|>": { id: "<|endoftext|>", ids: [eot], tokens: ["<|endoftext|>"] } },
        },
      },
      tokenizerConfig: { chat_template: "{{ bos_token }}{{ messages[0].content }}", bos_token: "<|endoftext|>" },
    });
    expect(withBos.encode("hi")[0]).toBe(eot);
    expect(withBos.encode("hi", { addSpecialTokens: false })[0]).not.toBe(eot);
    const chat = withBos.encodeChat([{ role: "user", content: "hi" }]);
    expect(chat.filter((id) => id === eot).length).toBe(1);
    expect(chat[0]).toBe(eot);
  });

  it("takes eos ids from generation_config first, then config.json, then tokenizer_config's eos_token", () => {
    const t = new ModelTokenizer({
      tokenizer: tokenizerJson,
      tokenizerConfig: qwenFixture("tokenizer_config.json"),
      generationConfig: qwenFixture("generation_config.json"),
      modelConfig: { eos_token_id: 151645 },
    });
    const imEnd = t.tokenToId("<|im_end|>")!;
    expect(t.eosTokenIds).toEqual([151645, 151643, imEnd]);
    const bare = new ModelTokenizer({
      tokenizer: tokenizerJson,
      tokenizerConfig: { eos_token: { content: "<|endoftext|>" } },
    });
    expect(bare.eosTokenIds).toEqual([t.tokenToId("<|endoftext|>")]);
  });

  it("picks the default of named templates, prefers chat_template.jinja, and errors without one", async () => {
    const named = new ModelTokenizer({
      tokenizer: tokenizerJson,
      tokenizerConfig: {
        chat_template: [
          { name: "tool_use", template: "TOOLS" },
          { name: "default", template: "DEFAULT {{ messages | length }}" },
        ],
      },
    });
    expect(named.applyChatTemplate([{ role: "user", content: "x" }])).toBe("DEFAULT 1");

    const jinjaDir = join(root, "jinja");
    await writeTinyModel(jinjaDir, { seed: 1, hidden: 16, heads: 2, kvHeads: 1, layers: 1, tokenizer: tokenizerJson });
    writeFileSync(
      join(jinjaDir, "chat_template.jinja"),
      "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}",
    );
    const fromFile = await ModelTokenizer.load(jinjaDir);
    expect(fromFile.applyChatTemplate([{ role: "user", content: "x" }])).toBe("[user]x");

    const none = new ModelTokenizer({ tokenizer: tokenizerJson });
    expect(() => none.applyChatTemplate([{ role: "user", content: "x" }])).toThrow(/no chat_template/);
    await expect(ModelTokenizer.load(root)).rejects.toThrow(/no tokenizer.json/);
  });
});
