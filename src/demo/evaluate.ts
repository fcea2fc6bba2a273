// A safe arithmetic evaluator for the calculator tool: numbers, + - * /, parentheses and unary
// minus, parsed by recursive descent (never `eval`), with clear errors for anything else; and
// `runTool`, the agent's tool call → the text the model sees as the tool's reply.

/** Evaluates an arithmetic expression like "17*23" or "(4+5)/3"; throws on anything else. */
export function evaluateArithmetic(expression: string): number {
  if (typeof expression !== "string") throw new Error("expression must be a string");
  if (expression.length > 200) throw new Error(`expression is too long (${expression.length} > 200 characters)`);
  const tokens = expression.match(/\d+(?:\.\d+)?|[-+*/()]|\S/g) ?? [];
  let at = 0;
  const peek = () => tokens[at];
  const fail = (what: string): never => {
    throw new Error(`cannot evaluate "${expression}": ${what}`);
  };
  const primary = (): number => {
    const t = tokens[at++];
    if (t === undefined) return fail("it ends where a number was expected");
    if (t === "(") {
      const v = sum();
      if (tokens[at++] !== ")") fail("a ')' is missing");
      return v;
    }
    if (t === "-") return -primary();
    if (t === "+") return primary();
    if (/^\d/.test(t)) return Number(t);
    return fail(`unexpected "${t}" (only numbers, + - * / and parentheses are allowed)`);
  };
  const product = (): number => {
    let v = primary();
    while (peek() === "*" || peek() === "/") {
      const op = tokens[at++];
      const rhs = primary();
      if (op === "/" && rhs === 0) fail("division by zero");
      v = op === "*" ? v * rhs : v / rhs;
    }
    return v;
  };
  const sum = (): number => {
    let v = product();
    while (peek() === "+" || peek() === "-") {
      const op = tokens[at++];
      const rhs = product();
      v = op === "+" ? v + rhs : v - rhs;
    }
    return v;
  };
  if (tokens.length === 0) fail("it is empty");
  const value = sum();
  if (at < tokens.length) fail(`unexpected "${tokens[at]}" after the end`);
  return value;
}

/** The tool's reply text: integers as integers, other values rounded to 6 decimals. */
export function formatResult(value: number): string {
  if (!Number.isFinite(value)) throw new Error(`result is not finite: ${value}`);
  return Number.isInteger(value) ? String(value) : String(Number(value.toFixed(6)));
}

/** Runs one tool call of the calculator agent: the result text, or an error line the model reads. */
export function runTool(name: string, argumentsJson: string): string {
  if (name !== "calculator") return `error: unknown tool ${name}`;
  try {
    const { expression } = JSON.parse(argumentsJson) as { expression?: unknown };
    if (typeof expression !== "string") return "error: arguments need a string 'expression'";
    return formatResult(evaluateArithmetic(expression));
  } catch (error) {
    return `error: ${(error as Error).message}`;
  }
}
