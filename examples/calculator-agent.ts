// The built-in demo agent: ordinary openai-SDK code that gives the model a `calculator` tool,
// runs the calls it makes with a safe arithmetic evaluator (no eval), feeds the results back,
// and scores the final answer (1 when its last number is the task's answer). Training changes
// nothing here: the runner only points ctx.llm at Fulgur's proxy.
// Run on a server's queue: fulgur worker --server http://127.0.0.1:8000 --agent examples/calculator-agent.ts
import OpenAI from "openai";
import { CALCULATOR_TOOL, SYSTEM_PROMPT, userMessage } from "../src/demo/agent-spec.ts";
import { runTool } from "../src/demo/evaluate.ts";
import { type ArithmeticTask, reward } from "../src/demo/tasks.ts";

/** Where the model is; a runner's AgentContext satisfies this. */
export interface CalculatorAgentContext {
  llm: { baseURL: string; apiKey: string; model: string };
  /** "train" samples (temperature 1, the exploration RL learns from); "val"/"test" decode greedily. */
  mode?: "train" | "val" | "test";
  signal?: AbortSignal;
}

const MAX_TOOL_ROUNDS = 3;

/** Solves one arithmetic word problem; returns the reward (1 = right final answer, else 0). */
export async function agent(task: ArithmeticTask, ctx: CalculatorAgentContext): Promise<number> {
  const client = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey });
  const messages: OpenAI.ChatCompletionMessageParam[] = [
    { role: "system", content: SYSTEM_PROMPT },
    { role: "user", content: userMessage(task) },
  ];
  // Greedy outside training, so a validation's accuracy depends on the policy alone, not on luck.
  const temperature = ctx.mode === undefined || ctx.mode === "train" ? undefined : 0;
  for (let round = 0; round <= MAX_TOOL_ROUNDS; round++) {
    const response = await client.chat.completions.create(
      { model: ctx.llm.model, messages, tools: [CALCULATOR_TOOL], max_tokens: 48, temperature },
      { signal: ctx.signal },
    );
    const message = response.choices[0].message;
    messages.push(message);
    if (!message.tool_calls?.length) return reward(task, message.content);
    for (const call of message.tool_calls) {
      if (call.type !== "function") continue;
      messages.push({
        role: "tool",
        tool_call_id: call.id,
        content: runTool(call.function.name, call.function.arguments),
      });
    }
  }
  return 0;
}
