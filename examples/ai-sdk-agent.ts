// The calculator agent with the Vercel AI SDK: generateText with a tool and a step limit, as in
// the SDK's docs, on the OpenAI provider's default model (`openai(model)`, the Responses API);
// only the provider's baseURL points at Fulgur (from ctx.llm).
// Run it with: fulgur worker --server http://127.0.0.1:8000 --agent examples/ai-sdk-agent.ts
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, tool } from "ai";
import { z } from "zod";
import type { AgentContext } from "../src/runner/types.ts";
import { calculate, type MathTask, score } from "./calculator.ts";

export async function agent(task: MathTask, ctx: AgentContext): Promise<number> {
  const openai = createOpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey });
  const { text } = await generateText({
    model: openai(ctx.llm.model),
    system: "Answer with a number. Use the calculator tool for arithmetic.",
    prompt: task.question,
    tools: {
      calculator: tool({
        description: "Evaluates an arithmetic expression with + - * / and parentheses",
        inputSchema: z.object({ expression: z.string() }),
        execute: ({ expression }) => ctx.span("calculator", () => String(calculate(expression)), { kind: "tool" }),
      }),
    },
    stopWhen: stepCountIs(4),
    maxOutputTokens: 32,
    abortSignal: ctx.signal,
  });
  return score(text, task.answer);
}
