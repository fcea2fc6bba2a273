// What the built-in calculator agent says to the model: its system prompt, the `calculator` tool
// (OpenAI function-tool shape) and the user message for a task. Shared by the agent in
// examples/, the base model's SFT corpus and its evaluation, so all three render identical text.

import type { ArithmeticTask } from "./tasks.ts";

export const SYSTEM_PROMPT = "You are a math helper. Use the calculator tool, then give the answer.";

export const CALCULATOR_TOOL = {
  type: "function" as const,
  function: {
    name: "calculator",
    description: "Evaluate an arithmetic expression with + - * / and parentheses.",
    parameters: {
      type: "object",
      properties: { expression: { type: "string", description: "e.g. 17*23" } },
      required: ["expression"],
    },
  },
};

/** The user turn for a task. */
export function userMessage(task: ArithmeticTask): string {
  return task.question;
}

/** The final answer sentence the base model is taught to write. */
export function answerSentence(value: string | number): string {
  return `The answer is ${value}.`;
}
