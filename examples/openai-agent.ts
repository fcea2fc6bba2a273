// A tool-calling calculator agent written with the official openai SDK, as in its docs' function
// calling guide; the only Fulgur-specific line is the baseURL (and apiKey/model) from ctx.llm.
// Run it on a server's queue with: fulgur worker --server http://127.0.0.1:8000 --agent examples/openai-agent.ts
import OpenAI from "openai";
import type { AgentContext } from "../src/runner/types.ts";
import { calculate, type MathTask, score } from "./calculator.ts";

const tools: OpenAI.ChatCompletionTool[] = [
  {
    type: "function",
    function: {
      name: "calculator",
      description: "Evaluates an arithmetic expression with + - * / and parentheses",
      parameters: { type: "object", properties: { expression: { type: "string" } }, required: ["expression"] },
    },
  },
];

export async function agent(task: MathTask, ctx: AgentContext): Promise<number> {
  const client = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey });
  const messages: OpenAI.ChatCompletionMessageParam[] = [
    { role: "system", content: "Answer with a number. Use the calculator tool for arithmetic." },
    { role: "user", content: task.question },
  ];
  for (let turn = 0; turn < 4; turn++) {
    const response = await client.chat.completions.create(
      { model: ctx.llm.model, messages, tools, max_tokens: 32 },
      { signal: ctx.signal },
    );
    const message = response.choices[0].message;
    messages.push(message);
    if (!message.tool_calls?.length) return score(message.content ?? "", task.answer);
    for (const call of message.tool_calls) {
      if (call.type !== "function") continue;
      const content = await ctx.span(
        call.function.name,
        () => {
          try {
            return String(calculate(JSON.parse(call.function.arguments).expression));
          } catch (error) {
            return `error: ${(error as Error).message}`;
          }
        },
        { kind: "tool", arguments: call.function.arguments },
      );
      messages.push({ role: "tool", tool_call_id: call.id, content });
    }
  }
  return 0;
}
