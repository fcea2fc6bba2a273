// The built-in calculator agent written with the OpenAI Agents SDK (`@openai/agents`): an Agent
// with a function tool, run by the SDK's own loop on its default model class (the Responses API,
// `POST /v1/responses`). Fulgur-specific: the OpenAI client's baseURL/apiKey and the model name
// come from ctx.llm, and tracing export is off (no network at run time). Trainable as is:
//   fulgur train --config train.json   with  "agent": "./examples/agents-sdk-agent.ts"
// Run on a server's queue: fulgur worker --server http://127.0.0.1:8000 --agent examples/agents-sdk-agent.ts
import { Agent, MaxTurnsExceededError, ModelBehaviorError, OpenAIProvider, Runner, tool } from "@openai/agents";
import OpenAI from "openai";
import { z } from "zod";
import { CALCULATOR_TOOL, SYSTEM_PROMPT, userMessage } from "../src/demo/agent-spec.ts";
import { runTool } from "../src/demo/evaluate.ts";
import { type ArithmeticTask, reward } from "../src/demo/tasks.ts";
import type { CalculatorAgentContext } from "./calculator-agent.ts";

const MAX_TOOL_ROUNDS = 3;

const calculator = tool({
  name: CALCULATOR_TOOL.function.name,
  description: CALCULATOR_TOOL.function.description,
  parameters: z.object({ expression: z.string().describe("e.g. 17*23") }),
  execute: ({ expression }) => runTool("calculator", JSON.stringify({ expression })),
});

/** Solves one arithmetic word problem; returns the reward (1 = right final answer, else 0). */
export async function agent(task: ArithmeticTask, ctx: CalculatorAgentContext): Promise<number> {
  const openAIClient = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey });
  const runner = new Runner({ modelProvider: new OpenAIProvider({ openAIClient }), tracingDisabled: true });
  const math = new Agent({
    name: "Math helper",
    instructions: SYSTEM_PROMPT,
    model: ctx.llm.model,
    tools: [calculator],
    modelSettings: { maxTokens: 48 },
  });
  try {
    const result = await runner.run(math, userMessage(task), { maxTurns: MAX_TOOL_ROUNDS + 1, signal: ctx.signal });
    return reward(task, result.finalOutput ?? null);
  } catch (error) {
    // The model looping on tools or running out of tokens is a failed task, not a broken agent.
    if (error instanceof MaxTurnsExceededError || error instanceof ModelBehaviorError) return 0;
    throw error;
  }
}
