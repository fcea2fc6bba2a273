// From a raw JSON body to the request a backend receives: zod validation (400 with `param` on the
// first problem), then OpenAI's defaults applied and snake_case turned into `ChatRequest` /
// `CompletionRequest`, so backends never re-check or re-default anything.
import type { ChatRequest, CompletionRequest, SamplingRequest, ToolChoice } from "./backend.ts";
import { fromZodError } from "./errors.ts";
import { chatCompletionRequestSchema, completionRequestSchema, extraFields } from "./openai-types.ts";

function stopList(stop: string | string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return (typeof stop === "string" ? [stop] : stop).filter((s) => s !== "");
}

/**
 * Validates a chat completions body and applies OpenAI's defaults.
 * @throws ProxyError 400 naming the offending field.
 */
export function parseChatRequest(body: Record<string, unknown>): ChatRequest {
  const parsed = chatCompletionRequestSchema.safeParse(body);
  if (!parsed.success) throw fromZodError(parsed.error);
  const b = parsed.data;
  const tools = b.tools && b.tools.length > 0 ? b.tools : null;
  const toolChoice: ToolChoice = (b.tool_choice as ToolChoice | null | undefined) ?? (tools ? "auto" : "none");
  const sampling: SamplingRequest = {
    n: b.n ?? 1,
    temperature: b.temperature ?? 1,
    topP: b.top_p ?? 1,
    topK: Math.max(0, b.top_k ?? 0),
    maxTokens: b.max_completion_tokens ?? b.max_tokens ?? null,
    stop: stopList(b.stop),
    seed: b.seed ?? null,
    logprobs: b.logprobs === true,
    topLogprobs: b.logprobs === true ? (b.top_logprobs ?? 0) : 0,
    presencePenalty: b.presence_penalty ?? 0,
    frequencyPenalty: b.frequency_penalty ?? 0,
  };
  return {
    model: b.model,
    messages: b.messages,
    tools,
    toolChoice,
    parseToolCalls: tools !== null && toolChoice !== "none",
    parallelToolCalls: b.parallel_tool_calls ?? true,
    responseFormat: b.response_format ?? { type: "text" },
    sampling,
    stream: b.stream === true,
    includeUsage: b.stream === true && b.stream_options?.include_usage === true,
    user: b.user ?? null,
    extra: extraFields(body, "chat"),
  };
}

/**
 * Validates a legacy completions body and applies OpenAI's defaults (max_tokens 16).
 * @throws ProxyError 400 naming the offending field.
 */
export function parseCompletionRequest(body: Record<string, unknown>): CompletionRequest {
  const parsed = completionRequestSchema.safeParse(body);
  if (!parsed.success) throw fromZodError(parsed.error);
  const b = parsed.data;
  let prompts: (string | number[])[];
  if (typeof b.prompt === "string") prompts = [b.prompt];
  else if (b.prompt.every((p) => typeof p === "number")) prompts = [b.prompt as number[]];
  else prompts = b.prompt as (string | number[])[];
  const logprobs = b.logprobs ?? null;
  return {
    model: b.model,
    prompts,
    sampling: {
      n: b.n ?? 1,
      temperature: b.temperature ?? 1,
      topP: b.top_p ?? 1,
      topK: Math.max(0, b.top_k ?? 0),
      // OpenAI's legacy default.
      maxTokens: b.max_tokens ?? 16,
      stop: stopList(b.stop),
      seed: b.seed ?? null,
      logprobs: logprobs !== null,
      topLogprobs: logprobs ?? 0,
      presencePenalty: b.presence_penalty ?? 0,
      frequencyPenalty: b.frequency_penalty ?? 0,
    },
    stream: b.stream === true,
    includeUsage: b.stream === true && b.stream_options?.include_usage === true,
    user: b.user ?? null,
    extra: extraFields(body, "completion"),
  };
}
