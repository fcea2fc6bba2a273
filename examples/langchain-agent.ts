// The calculator agent in LangChain.js: ChatOpenAI with a bound tool and the tool-calling loop
// from LangChain's docs; only `configuration.baseURL` points at Fulgur (from ctx.llm).
// Run it with: fulgur worker --server http://127.0.0.1:8000 --agent examples/langchain-agent.ts
import { type BaseMessage, HumanMessage, SystemMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { ChatOpenAI } from "@langchain/openai";
import type { AgentContext } from "../src/runner/types.ts";
import { calculate, type MathTask, score } from "./calculator.ts";

// A JSON-schema tool (LangChain also takes a zod schema, as examples/langgraph-agent.ts does).
const calculator = tool(async (input) => String(calculate((input as { expression: string }).expression)), {
  name: "calculator",
  description: "Evaluates an arithmetic expression with + - * / and parentheses",
  schema: { type: "object", properties: { expression: { type: "string" } }, required: ["expression"] },
});

export async function agent(task: MathTask, ctx: AgentContext): Promise<number> {
  const llm = new ChatOpenAI({
    model: ctx.llm.model,
    apiKey: ctx.llm.apiKey,
    configuration: { baseURL: ctx.llm.baseURL },
    maxTokens: 32,
  }).bindTools([calculator]);
  const messages: BaseMessage[] = [
    new SystemMessage("Answer with a number. Use the calculator tool for arithmetic."),
    new HumanMessage(task.question),
  ];
  for (let turn = 0; turn < 4; turn++) {
    const reply = await llm.invoke(messages, { signal: ctx.signal });
    messages.push(reply);
    if (!reply.tool_calls?.length) return score(String(reply.content), task.answer);
    for (const call of reply.tool_calls) {
      messages.push(await ctx.span("calculator", () => calculator.invoke(call), { kind: "tool" }));
    }
  }
  return 0;
}
