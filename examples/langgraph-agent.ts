// The built-in calculator agent as a LangGraph.js graph: the model node (LangChain's ChatOpenAI on
// the Responses API, `useResponsesApi: true`) and a ToolNode, joined by `toolsCondition` — the
// tool-calling graph of LangGraph's quickstart. Fulgur-specific: the baseURL/apiKey/model come
// from ctx.llm. Trainable as is:
//   fulgur train --config train.json   with  "agent": "./examples/langgraph-agent.ts"
// Run on a server's queue: fulgur worker --server http://127.0.0.1:8000 --agent examples/langgraph-agent.ts
import { HumanMessage, SystemMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { END, GraphRecursionError, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import { ToolNode, toolsCondition } from "@langchain/langgraph/prebuilt";
import { ChatOpenAI } from "@langchain/openai";
import { z } from "zod";
import { CALCULATOR_TOOL, SYSTEM_PROMPT, userMessage } from "../src/demo/agent-spec.ts";
import { runTool } from "../src/demo/evaluate.ts";
import { type ArithmeticTask, reward } from "../src/demo/tasks.ts";
import type { CalculatorAgentContext } from "./calculator-agent.ts";

const MAX_TOOL_ROUNDS = 3;

const calculator = tool(({ expression }) => runTool("calculator", JSON.stringify({ expression })), {
  name: CALCULATOR_TOOL.function.name,
  description: CALCULATOR_TOOL.function.description,
  schema: z.object({ expression: z.string().describe("e.g. 17*23") }),
});

/** Solves one arithmetic word problem; returns the reward (1 = right final answer, else 0). */
export async function agent(task: ArithmeticTask, ctx: CalculatorAgentContext): Promise<number> {
  const model = new ChatOpenAI({
    model: ctx.llm.model,
    apiKey: ctx.llm.apiKey,
    configuration: { baseURL: ctx.llm.baseURL },
    useResponsesApi: true,
    maxTokens: 48,
  }).bindTools([calculator]);
  const graph = new StateGraph(MessagesAnnotation)
    .addNode("agent", async (state) => ({ messages: [await model.invoke(state.messages, { signal: ctx.signal })] }))
    .addNode("tools", new ToolNode([calculator]))
    .addEdge(START, "agent")
    .addConditionalEdges("agent", toolsCondition, ["tools", END])
    .addEdge("tools", "agent")
    .compile();
  try {
    const { messages } = await graph.invoke(
      { messages: [new SystemMessage(SYSTEM_PROMPT), new HumanMessage(userMessage(task))] },
      // Each tool round is two steps (agent, tools); the final answer is one more.
      { recursionLimit: 2 * MAX_TOOL_ROUNDS + 1, signal: ctx.signal },
    );
    return reward(task, messages.at(-1)?.text);
  } catch (error) {
    // The model calling tools past the limit is a failed task, not a broken agent.
    if (error instanceof GraphRecursionError) return 0;
    throw error;
  }
}
