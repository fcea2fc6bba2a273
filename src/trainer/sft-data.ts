// Chat conversations → SFT samples: the conversation rendered with the model's own chat template,
// tokenized once, and only the assistant turns (content, tool calls, closing <|im_end|>) marked
// as targets. The text before each assistant turn must tokenize to a prefix of the whole, so
// training sees exactly the tokens serving will feed the model.

import type { ChatMessage } from "../model/chat-template.ts";
import type { ChatTemplateOptions } from "../model/tokenizer.ts";
import type { SftSample } from "./sft.ts";

/** The tokenizer surface the masking needs (ModelTokenizer satisfies it). */
export interface ChatTokenizer {
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions): string;
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
}

/** One SFT record as a JSONL line holds it: OpenAI-style messages and, optionally, tools. */
export interface ChatRecord {
  messages: ChatMessage[];
  tools?: ChatTemplateOptions["tools"];
}

const ASSISTANT_HEADER = "<|im_start|>assistant\n";
const TURN_END = "<|im_end|>";

/** Renders and tokenizes `messages`, with a loss mask over the assistant turns. */
export function chatSample(
  tokenizer: ChatTokenizer,
  messages: ChatMessage[],
  options: { tools?: ChatTemplateOptions["tools"] } = {},
): SftSample & { text: string } {
  const text = tokenizer.applyChatTemplate(messages, { tools: options.tools });
  const tokens = tokenizer.encode(text, { addSpecialTokens: false });
  const lossMask = new Array<number>(tokens.length).fill(0);
  const prefixLength = (end: number) => {
    const prefix = tokenizer.encode(text.slice(0, end), { addSpecialTokens: false });
    for (let i = 0; i < prefix.length; i++) {
      if (prefix[i] !== tokens[i])
        throw new Error(`text before offset ${end} does not tokenize as a prefix of the whole`);
    }
    return prefix.length;
  };
  let from = 0;
  for (;;) {
    const header = text.indexOf(ASSISTANT_HEADER, from);
    if (header < 0) break;
    const start = header + ASSISTANT_HEADER.length;
    const close = text.indexOf(TURN_END, start);
    if (close < 0) throw new Error("an assistant turn has no <|im_end|>");
    const end = close + TURN_END.length;
    const a = prefixLength(start);
    const b = prefixLength(end);
    for (let i = a; i < b; i++) lossMask[i] = 1;
    from = end;
  }
  if (!lossMask.includes(1)) throw new Error("the conversation has no assistant turn to learn");
  return { tokens, lossMask, text };
}

/** Checks that a parsed JSONL record is a ChatRecord, naming the record on failure. */
export function asChatRecord(value: unknown, where: string): ChatRecord {
  const record = value as Partial<ChatRecord> | null;
  if (!record || typeof record !== "object" || !Array.isArray(record.messages) || record.messages.length === 0)
    throw new Error(`${where}: an SFT record needs a non-empty "messages" array`);
  for (const [i, m] of record.messages.entries()) {
    if (!m || typeof m !== "object" || typeof (m as ChatMessage).role !== "string")
      throw new Error(`${where}: messages[${i}] needs a string "role"`);
  }
  if (!record.messages.some((m) => m.role === "assistant"))
    throw new Error(`${where}: an SFT record needs at least one assistant message to learn`);
  if (record.tools !== undefined && record.tools !== null && !Array.isArray(record.tools))
    throw new Error(`${where}: "tools" must be an array`);
  return record as ChatRecord;
}
