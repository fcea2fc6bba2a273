// The tool the example agents share: evaluates + - * / and parentheses over decimal numbers with
// a small recursive-descent parser (never eval), and the task/reward they are scored with.

/** A math word problem and its answer. */
export interface MathTask {
  question: string;
  answer: number;
}

/** Evaluates an arithmetic expression such as "(17 + 3) * 23 / 4"; throws on anything else. */
export function calculate(expression: string): number {
  const tokens = expression.match(/\d+(?:\.\d+)?|[-+*/()]|\S/g) ?? [];
  let pos = 0;
  const peek = () => tokens[pos];
  const next = () => tokens[pos++];
  const primary = (): number => {
    const token = next();
    if (token === "(") {
      const value = sum();
      if (next() !== ")") throw new Error(`expected ")" in ${JSON.stringify(expression)}`);
      return value;
    }
    if (token === "-") return -primary();
    if (token !== undefined && /^\d/.test(token)) return Number(token);
    throw new Error(
      `unexpected ${token === undefined ? "end" : JSON.stringify(token)} in ${JSON.stringify(expression)}`,
    );
  };
  const product = (): number => {
    let value = primary();
    while (peek() === "*" || peek() === "/") value = next() === "*" ? value * primary() : value / primary();
    return value;
  };
  const sum = (): number => {
    let value = product();
    while (peek() === "+" || peek() === "-") value = next() === "+" ? value + product() : value - product();
    return value;
  };
  const value = sum();
  if (pos !== tokens.length) throw new Error(`unexpected ${JSON.stringify(peek())} in ${JSON.stringify(expression)}`);
  return value;
}

/** 1 when the answer's number appears in the agent's final text, else 0. */
export function score(text: string, answer: number): number {
  const numbers = text.match(/-?\d+(?:\.\d+)?/g) ?? [];
  return numbers.some((n) => Math.abs(Number(n) - answer) < 1e-6) ? 1 : 0;
}
