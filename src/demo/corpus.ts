// The base model's SFT corpus: chat conversations of the calculator agent rendered with the
// model's own template, with a deliberate mix of behaviours so the base model solves some but
// not all tasks — and what separates right from wrong is a choice RL can shift:
//   "tool":  calls calculator with the right expression, then answers with the tool's result;
//   "wrong": calls calculator with the wrong operator, then answers with that (wrong) result;
//   "guess": skips the tool and guesses a nearby wrong number.
// The mix depends on the problem type, so even greedy decoding is right on only part of them.

import type { ChatMessage } from "../model/chat-template.ts";
import { type ChatTokenizer, chatSample } from "../trainer/sft-data.ts";
import { answerSentence, CALCULATOR_TOOL, SYSTEM_PROMPT, userMessage } from "./agent-spec.ts";
import { formatResult } from "./evaluate.ts";
import { type ArithmeticTask, OPERATOR, type Operation, seededRandom } from "./tasks.ts";

export type Behaviour = "tool" | "wrong" | "guess";

/** Probability of each behaviour per operation (rows sum to 1). */
export const BEHAVIOUR_MIX: Record<Operation, Record<Behaviour, number>> = {
  add: { tool: 0.5, wrong: 0.2, guess: 0.3 },
  sub: { tool: 0.5, wrong: 0.2, guess: 0.3 },
  mul: { tool: 0.25, wrong: 0.35, guess: 0.4 },
  div: { tool: 0.25, wrong: 0.35, guess: 0.4 },
};

/** The operator a "wrong" call uses instead of the right one. */
const WRONG_OPERATION: Record<Operation, Operation> = { add: "sub", sub: "add", mul: "add", div: "sub" };

function apply(op: Operation, a: number, b: number): number {
  return op === "add" ? a + b : op === "sub" ? a - b : op === "mul" ? a * b : a / b;
}

function chooseBehaviour(op: Operation, u: number): Behaviour {
  const mix = BEHAVIOUR_MIX[op];
  if (u < mix.tool) return "tool";
  if (u < mix.tool + mix.wrong) return "wrong";
  return "guess";
}

/** One training conversation for `task` showing `behaviour`; `next` draws the guess. */
export function conversation(task: ArithmeticTask, behaviour: Behaviour, next: () => number): ChatMessage[] {
  const messages: ChatMessage[] = [
    { role: "system", content: SYSTEM_PROMPT },
    { role: "user", content: userMessage(task) },
  ];
  if (behaviour === "guess") {
    let offset = 0;
    while (offset === 0) offset = Math.floor(next() * 21) - 10;
    // Guesses stay in [0, 1000) like every number the tokenizer has one token for.
    const guess = task.answer + offset < 0 || task.answer + offset > 999 ? task.answer - offset : task.answer + offset;
    messages.push({ role: "assistant", content: answerSentence(guess) });
    return messages;
  }
  const op = behaviour === "tool" ? task.op : WRONG_OPERATION[task.op];
  const expression = `${task.a}${OPERATOR[op]}${task.b}`;
  const result = formatResult(apply(op, task.a, task.b));
  messages.push(
    {
      role: "assistant",
      content: null,
      tool_calls: [
        { id: "call_0", type: "function", function: { name: "calculator", arguments: JSON.stringify({ expression }) } },
      ],
    },
    { role: "tool", tool_call_id: "call_0", content: result },
    { role: "assistant", content: answerSentence(result) },
  );
  return messages;
}

/** Conversations for `tasks`, each with a behaviour drawn from BEHAVIOUR_MIX (seeded). */
export function corpusConversations(
  tasks: ArithmeticTask[],
  seed: number,
): { messages: ChatMessage[]; behaviour: Behaviour }[] {
  const next = seededRandom(seed);
  return tasks.map((task) => {
    const behaviour = chooseBehaviour(task.op, next());
    return { messages: conversation(task, behaviour, next), behaviour };
  });
}

export const DEMO_TOOLS = [CALCULATOR_TOOL];

/** The calculator conversation as an SFT sample (assistant turns masked), with the demo's tools. */
export function tokenizeConversation(
  tokenizer: ChatTokenizer,
  messages: ChatMessage[],
): { tokens: number[]; lossMask: number[]; text: string } {
  return chatSample(tokenizer, messages, { tools: DEMO_TOOLS });
}
