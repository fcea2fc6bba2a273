// The calculator agent's loop run straight against a loaded model (no HTTP): the same messages,
// template, tool-call parsing and tool execution as examples/calculator-agent.ts through the
// proxy. The base-model script uses it to measure accuracy quickly.

import type { ChatMessage } from "../model/chat-template.ts";
import type { Model } from "../model/model.ts";
import { parseToolCalls } from "../proxy/tool-calls.ts";
import { CALCULATOR_TOOL, SYSTEM_PROMPT, userMessage } from "./agent-spec.ts";
import { runTool } from "./evaluate.ts";
import { type ArithmeticTask, reward } from "./tasks.ts";

export interface DirectRunOptions {
  /** 0 = greedy (default). */
  temperature?: number;
  seed?: number;
  /** Tool rounds before the agent gives up (default 3). */
  maxRounds?: number;
  maxTokens?: number;
}

export interface DirectRunResult {
  reward: number;
  finalText: string;
  usedTool: boolean;
  messages: ChatMessage[];
  /** Tokens the model generated over all rounds. */
  generatedTokens: number;
}

/** One episode of the calculator agent on `task`, generating with `model` directly. */
export async function runAgentDirect(
  model: Model,
  task: ArithmeticTask,
  options: DirectRunOptions = {},
): Promise<DirectRunResult> {
  const messages: ChatMessage[] = [
    { role: "system", content: SYSTEM_PROMPT },
    { role: "user", content: userMessage(task) },
  ];
  let usedTool = false;
  let generatedTokens = 0;
  for (let round = 0; round <= (options.maxRounds ?? 3); round++) {
    const prompt = model.tokenizer.encodeChat(messages, { tools: [CALCULATOR_TOOL], addGenerationPrompt: true });
    const g = await model.generateOne(prompt, {
      temperature: options.temperature ?? 0,
      seed: options.seed === undefined ? undefined : options.seed * 7 + round,
      maxTokens: options.maxTokens ?? 48,
    });
    generatedTokens += g.tokens.length;
    const text = model.tokenizer.decode(g.tokens, { skipSpecialTokens: true });
    const parsed = parseToolCalls(text, () => `call_${round}`);
    if (parsed.toolCalls.length === 0) {
      messages.push({ role: "assistant", content: text });
      return { reward: reward(task, text), finalText: text, usedTool, messages, generatedTokens };
    }
    usedTool = true;
    messages.push({ role: "assistant", content: parsed.content, tool_calls: parsed.toolCalls });
    for (const call of parsed.toolCalls) {
      const content = runTool(call.function.name, call.function.arguments);
      messages.push({ role: "tool", tool_call_id: call.id, content });
    }
  }
  return { reward: 0, finalText: "", usedTool, messages, generatedTokens };
}
