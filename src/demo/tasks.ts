// The built-in demo's task set: seeded arithmetic word problems (one operation on two numbers),
// fixed train/val splits, and the reward (1 when the agent's final answer is the right number).
// Everything is a pure function of the seed, so every machine sees the same tasks.

import { mulberry32 } from "../random.ts";

/** The four operations a problem can need. */
export type Operation = "add" | "sub" | "mul" | "div";

export const OPERATIONS: readonly Operation[] = ["add", "sub", "mul", "div"];

export const OPERATOR: Record<Operation, string> = { add: "+", sub: "-", mul: "*", div: "/" };

// A type alias, not an interface, so a task is a JsonValue (store input) as it is.
export type ArithmeticTask = {
  /** Stable id, e.g. "train-12". */
  id: string;
  question: string;
  /** The two numbers in the order the question mentions them. */
  a: number;
  b: number;
  op: Operation;
  /** The expression that solves it, e.g. "17*23". */
  expression: string;
  answer: number;
};

/** The seeded uniform source the task set draws from (mulberry32, identical on every platform). */
export const seededRandom = mulberry32;

const NAMES = ["Ann", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ivy", "Jack", "Kim", "Leo", "Mia", "Noah"];
const ITEMS = ["pens", "apples", "books", "cards", "coins", "eggs", "shells", "stamps", "balls", "cups"];
const BOXES = ["boxes", "bags", "jars", "packs", "crates", "baskets"];

const int = (next: () => number, lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
const pick = <T>(next: () => number, list: readonly T[]): T => list[Math.floor(next() * list.length)];

/**
 * One problem for operation `op`. Every number in a problem, its answer included, is an integer in
 * [0, 1000): the built-in model's tokenizer has one token for each of them.
 */
function makeProblem(next: () => number, op: Operation): Omit<ArithmeticTask, "id"> {
  const name = pick(next, NAMES);
  const item = pick(next, ITEMS);
  const box = pick(next, BOXES);
  let a: number;
  let b: number;
  let question: string;
  switch (op) {
    case "add":
      a = int(next, 11, 99);
      b = int(next, 11, 99);
      question = `${name} has ${a} ${item} and gets ${b} more. How many ${item} does ${name} have now?`;
      break;
    case "sub":
      a = int(next, 30, 99);
      b = int(next, 11, a - 1);
      question = `${name} has ${a} ${item} and gives away ${b}. How many ${item} are left?`;
      break;
    case "mul":
      a = int(next, 11, 99);
      b = int(next, 2, 9);
      question = `${name} has ${a} ${box} with ${b} ${item} in each. How many ${item} are there in all?`;
      break;
    case "div": {
      b = int(next, 2, 9);
      const quotient = int(next, 11, 99);
      a = b * quotient;
      question = `${name} shares ${a} ${item} equally among ${b} friends. How many ${item} does each friend get?`;
      break;
    }
  }
  const answer = op === "add" ? a + b : op === "sub" ? a - b : op === "mul" ? a * b : a / b;
  return { question, a, b, op, expression: `${a}${OPERATOR[op]}${b}`, answer };
}

/** `n` tasks from `seed`, operations in rotation (so every split is balanced), ids `${prefix}-i`. */
export function makeTasks(seed: number, n: number, prefix = "task"): ArithmeticTask[] {
  if (!Number.isInteger(n) || n < 0) throw new Error(`makeTasks: n must be a non-negative integer, got ${n}`);
  if (!Number.isInteger(seed)) throw new Error(`makeTasks: seed must be an integer, got ${seed}`);
  const next = seededRandom(seed);
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}-${i}`,
    ...makeProblem(next, OPERATIONS[i % OPERATIONS.length]),
  }));
}

/** Seeds of the fixed splits; the base model's SFT corpus uses yet another seed. */
export const TRAIN_SEED = 1001;
export const VAL_SEED = 2002;

/**
 * The demo's fixed splits: 256 training tasks and 128 validation tasks (disjoint seeds). 128, not
 * fewer, because validation samples one rollout per task: the accuracy's noise is ~4 points.
 */
export function demoSplits(): { train: ArithmeticTask[]; val: ArithmeticTask[] } {
  return { train: makeTasks(TRAIN_SEED, 256, "train"), val: makeTasks(VAL_SEED, 128, "val") };
}

/** Numbers written in a text, in order (integers or decimals, optional minus sign). */
export function numbersIn(text: string): number[] {
  return [...text.matchAll(/-?\d+(?:\.\d+)?/g)].map((m) => Number(m[0]));
}

/**
 * 1 when the last number in the agent's final answer equals the task's answer, else 0. Only the
 * last number counts, so listing many numbers cannot game the reward.
 */
export function reward(task: ArithmeticTask, finalText: string | null | undefined): number {
  if (!finalText) return 0;
  const numbers = numbersIn(finalText);
  if (numbers.length === 0) return 0;
  return Math.abs(numbers[numbers.length - 1] - task.answer) < 1e-9 ? 1 : 0;
}
