// Limits checked at the edge, so that a call the proxy accepts is a call the store can record
// and the engine can serve fairly: 400 before any generation for requests that are too deep,
// too wide (prompts × n) or carry token ids no model has; 502 for an upstream answer whose token
// ids or logprobs cannot be stored as they are. Separate from normalize.ts (which applies
// OpenAI's schema and defaults) so each stays focused.

import type { ChatOutcome, ChatRequest, CompletionOutcome, CompletionRequest, TokenLogprob } from "./backend.ts";
import { invalidRequest, ProxyError } from "./errors.ts";

export interface RequestLimits {
  /** Most sequences one request may generate: n for chat, prompts × n for completions. */
  maxChoices: number;
  /** Deepest nesting of a message or tool definition (the store keeps JSON up to depth 64). */
  maxJsonDepth: number;
  /** Longest `model` name (the store keeps 500 characters). */
  maxModelNameLength: number;
}

export const DEFAULT_LIMITS: RequestLimits = { maxChoices: 128, maxJsonDepth: 32, maxModelNameLength: 256 };

/** Token ids are stored as unsigned 32-bit integers. */
const MAX_TOKEN_ID = 0xffffffff;

/** Depth of a JSON value (a scalar is 0), or Infinity once past `limit` (stops early on deep input). */
export function jsonDepth(value: unknown, limit: number): number {
  if (value === null || typeof value !== "object") return 0;
  if (limit <= 0) return Number.POSITIVE_INFINITY;
  let deepest = 0;
  for (const child of Object.values(value as Record<string, unknown>)) {
    deepest = Math.max(deepest, jsonDepth(child, limit - 1));
    if (deepest === Number.POSITIVE_INFINITY) break;
  }
  return deepest + 1;
}

function checkDepth(items: readonly unknown[] | null, param: string, limits: RequestLimits): void {
  if (!items) return;
  for (let i = 0; i < items.length; i++) {
    if (jsonDepth(items[i], limits.maxJsonDepth) > limits.maxJsonDepth) {
      throw invalidRequest(
        `${param}[${i}] is nested more than ${limits.maxJsonDepth} levels deep; this server accepts at most ${limits.maxJsonDepth}.`,
        `${param}[${i}]`,
        "nesting_too_deep",
      );
    }
  }
}

function checkModelName(model: string, limits: RequestLimits): void {
  if (model.length > limits.maxModelNameLength) {
    throw invalidRequest(
      `\`model\` is ${model.length} characters long; at most ${limits.maxModelNameLength} are accepted.`,
      "model",
      "model_name_too_long",
    );
  }
}

function checkChoices(choices: number, what: string, limits: RequestLimits): void {
  if (choices > limits.maxChoices) {
    throw invalidRequest(
      `${what} asks for ${choices} sequences; this server generates at most ${limits.maxChoices} per request ` +
        "(split the request, or lower n).",
      "n",
      "too_many_choices",
    );
  }
}

/** @throws ProxyError 400 when the chat request exceeds a limit. */
export function checkChatLimits(req: ChatRequest, limits: RequestLimits = DEFAULT_LIMITS): void {
  checkModelName(req.model, limits);
  checkChoices(req.sampling.n, `n=${req.sampling.n}`, limits);
  checkDepth(req.messages as readonly unknown[], "messages", limits);
  checkDepth(req.tools as readonly unknown[] | null, "tools", limits);
}

/** @throws ProxyError 400 when the completion request exceeds a limit or carries impossible token ids. */
export function checkCompletionLimits(req: CompletionRequest, limits: RequestLimits = DEFAULT_LIMITS): void {
  checkModelName(req.model, limits);
  const choices = req.prompts.length * req.sampling.n;
  checkChoices(choices, `${req.prompts.length} prompt(s) × n=${req.sampling.n}`, limits);
  req.prompts.forEach((p, i) => {
    if (typeof p !== "string") checkTokenIds(p, MAX_TOKEN_ID + 1, req.prompts.length > 1 ? `prompt[${i}]` : "prompt");
  });
}

/**
 * @throws ProxyError 400 (`invalid_token_id`) unless every id is an integer in [0, vocabSize).
 */
export function checkTokenIds(ids: readonly number[], vocabSize: number, param: string): void {
  for (let j = 0; j < ids.length; j++) {
    const id = ids[j];
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw invalidRequest(
        `${param}[${j}] is token id ${id}, outside this model's vocabulary (0..${vocabSize - 1}).`,
        `${param}[${j}]`,
        "invalid_token_id",
      );
    }
  }
}

function upstreamGarbage(message: string): ProxyError {
  return new ProxyError(502, `The upstream answered with data that cannot be recorded: ${message}`, {
    code: "invalid_upstream_response",
  });
}

function idsProblem(ids: unknown, what: string): string | null {
  if (ids === null || ids === undefined) return null;
  if (!Array.isArray(ids)) return `${what} is not an array`;
  for (let j = 0; j < ids.length; j++) {
    const id = ids[j];
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > MAX_TOKEN_ID) {
      return `${what}[${j}] is ${JSON.stringify(id)}, not a token id`;
    }
  }
  return null;
}

function choiceProblem(
  c: { index: number; tokenIds: unknown; logprobs: TokenLogprob[] | null },
  what: string,
): string | null {
  const ids = idsProblem(c.tokenIds, `${what}.token_ids`);
  if (ids) return ids;
  if (!c.logprobs || !Array.isArray(c.tokenIds)) return null;
  if (c.logprobs.length !== c.tokenIds.length) {
    return `${what} has ${c.tokenIds.length} token ids but ${c.logprobs.length} logprobs`;
  }
  for (let j = 0; j < c.logprobs.length; j++) {
    const lp = c.logprobs[j]?.logprob;
    if (typeof lp !== "number" || Number.isNaN(lp)) return `${what}.logprobs[${j}] is ${JSON.stringify(lp)}`;
  }
  return null;
}

/**
 * Checks what a backend returned against what the store accepts, so a 200 is never sent for a
 * call whose record would be refused. Returns a 502 error to answer with, or null.
 */
export function outcomeProblem(outcome: ChatOutcome | CompletionOutcome): ProxyError | null {
  if (typeof outcome.model !== "string" || outcome.model.length > DEFAULT_LIMITS.maxModelNameLength) {
    return upstreamGarbage(`the model name is not a string of at most ${DEFAULT_LIMITS.maxModelNameLength} characters`);
  }
  const prompts = outcome.promptTokenIds;
  if (prompts !== null && Array.isArray(prompts) && prompts.length > 0 && Array.isArray(prompts[0])) {
    for (let i = 0; i < prompts.length; i++) {
      const problem = idsProblem(prompts[i], `prompt_token_ids[${i}]`);
      if (problem) return upstreamGarbage(problem);
    }
  } else {
    const problem = idsProblem(prompts, "prompt_token_ids");
    if (problem) return upstreamGarbage(problem);
  }
  const usage = outcome.usage as unknown as Record<string, unknown> | null;
  for (const [field, key] of [
    ["prompt_tokens", "promptTokens"],
    ["completion_tokens", "completionTokens"],
  ] as const) {
    const n = usage?.[key];
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
      return upstreamGarbage(`usage.${field} is ${JSON.stringify(n)}, not a token count`);
    }
  }
  for (const choice of outcome.choices as { index: number; tokenIds: unknown; logprobs: TokenLogprob[] | null }[]) {
    const problem =
      choiceProblem(choice, `choices[${choice.index}]`) ?? textProblem(choice, `choices[${choice.index}]`);
    if (problem) return upstreamGarbage(problem);
  }
  return null;
}

/**
 * The text fields of a choice are strings, as in OpenAI's schema (tool-call arguments included):
 * an upstream that answers an object there (nested past what the store keeps, say) is not sending
 * a completion.
 */
function textProblem(choice: object, what: string): string | null {
  const c = choice as { text?: unknown; content?: unknown; toolCalls?: unknown };
  if ("content" in c && c.content !== null && typeof c.content !== "string") {
    return `${what}.message.content is ${typeName(c.content)}, not a string`;
  }
  if (typeof c.text !== "string") return `${what} text is ${typeName(c.text)}, not a string`;
  if (!("toolCalls" in c)) return null;
  if (!Array.isArray(c.toolCalls)) return `${what}.message.tool_calls is not an array`;
  for (let j = 0; j < c.toolCalls.length; j++) {
    const f = (c.toolCalls[j] as { function?: { name?: unknown; arguments?: unknown } } | null)?.function;
    if (typeof f?.name !== "string" || typeof f.arguments !== "string") {
      return `${what}.message.tool_calls[${j}].function needs a string name and string arguments`;
    }
  }
  return null;
}

function typeName(value: unknown): string {
  return value === null
    ? "null"
    : Array.isArray(value)
      ? "an array"
      : typeof value === "object"
        ? "an object"
        : typeof value;
}
