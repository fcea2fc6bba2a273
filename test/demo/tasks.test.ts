// The demo's task set, reward, calculator evaluator and SFT corpus: all CPU-only.
import { describe, expect, it } from "vitest";
import { COMPACT_TOOLS_CHAT_TEMPLATE } from "../../src/demo/chat-template.ts";
import {
  BEHAVIOUR_MIX,
  conversation,
  corpusConversations,
  DEMO_TOOLS,
  tokenizeConversation,
} from "../../src/demo/corpus.ts";
import { evaluateArithmetic, formatResult, runTool } from "../../src/demo/evaluate.ts";
import { demoSplits, makeTasks, numbersIn, OPERATIONS, reward, seededRandom } from "../../src/demo/tasks.ts";
import { CHATML_ADDED_TOKENS, trainByteLevelBpe } from "../../src/model/bpe.ts";
import { ModelTokenizer } from "../../src/model/tokenizer.ts";
import { parseToolCalls } from "../../src/proxy/tool-calls.ts";

describe("makeTasks", () => {
  it("is deterministic in the seed and different across seeds", () => {
    expect(makeTasks(5, 20)).toEqual(makeTasks(5, 20));
    expect(makeTasks(5, 20).map((t) => t.question)).not.toEqual(makeTasks(6, 20).map((t) => t.question));
  });

  it("states both numbers in the question, and the answer is the expression's value", () => {
    for (const t of makeTasks(9, 200)) {
      expect(numbersIn(t.question).slice(0, 2)).toEqual([t.a, t.b]);
      expect(evaluateArithmetic(t.expression)).toBe(t.answer);
      expect(Number.isInteger(t.answer) && t.answer >= 0).toBe(true);
    }
  });

  it("balances the operations and keeps the fixed splits disjoint", () => {
    const { train, val } = demoSplits();
    expect(train).toHaveLength(256);
    expect(val).toHaveLength(128);
    for (const op of OPERATIONS) expect(val.filter((t) => t.op === op)).toHaveLength(32);
    const trainQuestions = new Set(train.map((t) => t.question));
    expect(val.filter((t) => trainQuestions.has(t.question)).length).toBeLessThan(2);
    expect(new Set(val.map((t) => t.id)).size).toBe(128);
  });

  it("keeps every number below 1000, so each is one token of the built-in model", () => {
    for (const t of makeTasks(4, 2000)) {
      for (const n of [t.a, t.b, t.answer]) expect(Number.isInteger(n) && n >= 0 && n < 1000).toBe(true);
    }
  });

  it("rejects bad arguments", () => {
    expect(() => makeTasks(1, -1)).toThrow(/non-negative integer/);
    expect(() => makeTasks(1.5, 3)).toThrow(/seed must be an integer/);
  });
});

describe("reward", () => {
  const task = makeTasks(3, 1)[0];
  it("is 1 only when the last number of the final text is the answer", () => {
    expect(reward(task, `The answer is ${task.answer}.`)).toBe(1);
    expect(reward(task, `${task.answer}`)).toBe(1);
    expect(reward(task, `The answer is ${task.answer + 1}.`)).toBe(0);
    expect(reward(task, `${task.answer} or maybe ${task.answer + 3}`)).toBe(0);
    expect(reward(task, "I do not know.")).toBe(0);
    expect(reward(task, null)).toBe(0);
  });
});

describe("evaluateArithmetic", () => {
  it("follows precedence, parentheses and unary minus", () => {
    expect(evaluateArithmetic("17*23")).toBe(391);
    expect(evaluateArithmetic("2+3*4")).toBe(14);
    expect(evaluateArithmetic("(2+3)*4")).toBe(20);
    expect(evaluateArithmetic("-3 - -4")).toBe(1);
    expect(evaluateArithmetic("7/2")).toBe(3.5);
    expect(evaluateArithmetic(" 10 - 2 - 3 ")).toBe(5);
  });

  it("refuses anything that is not arithmetic, with the reason", () => {
    expect(() => evaluateArithmetic("process.exit(1)")).toThrow(/unexpected/);
    expect(() => evaluateArithmetic("1/0")).toThrow(/division by zero/);
    expect(() => evaluateArithmetic("(1+2")).toThrow(/'\)' is missing/);
    expect(() => evaluateArithmetic("")).toThrow(/empty/);
    expect(() => evaluateArithmetic("2 3")).toThrow(/after the end/);
  });

  it("formats results and reports tool errors as text", () => {
    expect(formatResult(391)).toBe("391");
    expect(formatResult(1 / 3)).toBe("0.333333");
    expect(runTool("calculator", '{"expression": "6*7"}')).toBe("42");
    expect(runTool("calculator", '{"expr": "6*7"}')).toMatch(/^error: /);
    expect(runTool("calculator", "not json")).toMatch(/^error: /);
    expect(runTool("search", "{}")).toBe("error: unknown tool search");
  });
});

describe("SFT corpus", () => {
  const tasks = makeTasks(77, 400);
  const conversations = corpusConversations(tasks, 1);
  const tokenizer = new ModelTokenizer({
    tokenizer: trainByteLevelBpe(
      conversations.slice(0, 50).map((c) => JSON.stringify(c.messages)),
      { vocabSize: 1400, specialTokens: CHATML_ADDED_TOKENS, wholeNumbers: 1000 },
    ),
    tokenizerConfig: { chat_template: COMPACT_TOOLS_CHAT_TEMPLATE, eos_token: "<|im_end|>" },
  });

  it("mixes behaviours per operation roughly as BEHAVIOUR_MIX says", () => {
    for (const op of OPERATIONS) {
      const ofOp = conversations.filter((_, i) => tasks[i].op === op);
      const toolShare = ofOp.filter((c) => c.behaviour === "tool").length / ofOp.length;
      // 100 draws per operation: 4 standard deviations of a binomial share is ≤ 0.2.
      expect(Math.abs(toolShare - BEHAVIOUR_MIX[op].tool)).toBeLessThan(0.2);
    }
  });

  it("masks exactly the assistant turns, whose text parses as the proxy will parse it", () => {
    const task = tasks[2];
    const { tokens, lossMask } = tokenizeConversation(
      tokenizer,
      conversation(task, "tool", () => 0.5),
    );
    const learned: string[] = [];
    let run: number[] = [];
    for (let i = 0; i <= tokens.length; i++) {
      if (i < tokens.length && lossMask[i]) run.push(tokens[i]);
      else if (run.length) {
        learned.push(tokenizer.decode(run));
        run = [];
      }
    }
    expect(learned).toHaveLength(2);
    const call = parseToolCalls(learned[0].replace("<|im_end|>", ""));
    expect(call.toolCalls).toHaveLength(1);
    expect(JSON.parse(call.toolCalls[0].function.arguments)).toEqual({ expression: task.expression });
    expect(learned[1]).toBe(`The answer is ${task.answer}.<|im_end|>`);
    expect(lossMask[0]).toBe(0);
    // Each number the model copies is a single token.
    for (const n of [task.a, task.b, task.answer]) expect(tokenizer.encode(String(n))).toHaveLength(1);
  });

  it("guesses stay in the tokenizer's whole-number range and are never the answer", () => {
    for (const [i, task] of tasks.entries()) {
      const messages = conversation(task, "guess", seededRandom(i));
      const guess = numbersIn(messages[messages.length - 1].content as string).pop()!;
      expect(guess >= 0 && guess < 1000 && guess !== task.answer).toBe(true);
    }
  });

  it("the compact template lists tools in one line and renders calls like Qwen2.5", () => {
    const text = tokenizer.applyChatTemplate(
      conversation(tasks[0], "tool", () => 0.5),
      { tools: DEMO_TOOLS },
    );
    expect(text).toContain("\nTools: calculator<|im_end|>");
    expect(text).not.toContain("<tools>");
    expect(text).toContain(
      `<tool_call>\n{"name": "calculator", "arguments": {"expression": "${tasks[0].expression}"}}\n</tool_call>`,
    );
    expect(text).toContain(`<|im_start|>user\n<tool_response>\n${tasks[0].answer}\n</tool_response><|im_end|>`);
  });

  it("wrong-operator and guess conversations end on a wrong answer", () => {
    const task = tasks[2];
    for (const behaviour of ["wrong", "guess"] as const) {
      const messages = conversation(task, behaviour, () => 0.9);
      expect(reward(task, messages[messages.length - 1].content as string)).toBe(0);
    }
  });
});
