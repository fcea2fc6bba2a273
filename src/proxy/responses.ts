// Shaping backend outcomes into what OpenAI clients expect: ChatCompletion / Completion bodies and
// the streamed ChatCompletionChunk / Completion chunks, field for field (logprobs only when asked,
// top alternatives cut to the number asked, "abort" never shown to a client).
import { randomBytes } from "node:crypto";
import type {
  ChatChoiceOutcome,
  ChatDelta,
  ChatOutcome,
  ChatRequest,
  ChoiceFinishReason,
  CompletionDelta,
  CompletionOutcome,
  CompletionRequest,
  TokenLogprob,
  UsageCounts,
} from "./backend.ts";
import type {
  ChatChoiceLogprobs,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionChunkChoice,
  ChatFinishReason,
  Completion,
  CompletionLogprobs,
  Usage,
} from "./openai-types.ts";

/** A fresh response id with OpenAI's prefix (`chatcmpl-…`, `cmpl-…`). */
export function newResponseId(prefix: "chatcmpl" | "cmpl"): string {
  return `${prefix}-${randomBytes(18).toString("base64url")}`;
}

export function toUsage(u: UsageCounts): Usage {
  return { prompt_tokens: u.promptTokens, completion_tokens: u.completionTokens, total_tokens: u.totalTokens };
}

function clientFinishReason(reason: ChoiceFinishReason): ChatFinishReason {
  return reason === "abort" ? "stop" : reason;
}

/** Chat logprobs in OpenAI's shape, alternatives cut to `topN`. */
export function toChatLogprobs(lps: TokenLogprob[], topN: number): ChatChoiceLogprobs {
  return {
    content: lps.map((lp) => ({
      token: lp.token,
      logprob: lp.logprob,
      bytes: lp.bytes,
      top_logprobs: lp.top.slice(0, topN).map((alt) => ({ token: alt.token, logprob: alt.logprob, bytes: alt.bytes })),
    })),
    refusal: null,
  };
}

/** Legacy completion logprobs (parallel arrays), offsets counted from the start of the completion. */
export function toCompletionLogprobs(lps: TokenLogprob[], topN: number): CompletionLogprobs {
  const textOffset: number[] = [];
  let offset = 0;
  for (const lp of lps) {
    textOffset.push(offset);
    offset += lp.token.length;
  }
  return {
    tokens: lps.map((lp) => lp.token),
    token_logprobs: lps.map((lp) => lp.logprob),
    top_logprobs:
      topN > 0 ? lps.map((lp) => Object.fromEntries(lp.top.slice(0, topN).map((a) => [a.token, a.logprob]))) : null,
    text_offset: textOffset,
  };
}

function chatChoiceLogprobs(req: ChatRequest, choice: ChatChoiceOutcome): ChatChoiceLogprobs | null {
  if (!req.sampling.logprobs) return null;
  return toChatLogprobs(choice.logprobs ?? [], req.sampling.topLogprobs);
}

/** The non-streaming chat answer. */
export function chatCompletionBody(
  id: string,
  created: number,
  req: ChatRequest,
  outcome: ChatOutcome,
): ChatCompletion {
  return {
    id,
    object: "chat.completion",
    created,
    model: req.model,
    choices: outcome.choices.map((choice) => ({
      index: choice.index,
      message: {
        role: "assistant",
        content: choice.content,
        refusal: null,
        ...(choice.toolCalls.length > 0 ? { tool_calls: choice.toolCalls } : {}),
      },
      logprobs: chatChoiceLogprobs(req, choice),
      finish_reason: clientFinishReason(choice.finishReason),
    })),
    usage: toUsage(outcome.usage),
    system_fingerprint: null,
  };
}

/** Builds the chunks of one streamed chat answer, remembering which choices have started. */
export class ChatChunker {
  private readonly started = new Set<number>();
  private readonly id: string;
  private readonly created: number;
  private readonly req: ChatRequest;

  constructor(id: string, created: number, req: ChatRequest) {
    this.id = id;
    this.created = created;
    this.req = req;
  }

  private chunk(choices: ChatCompletionChunkChoice[]): ChatCompletionChunk {
    const chunk: ChatCompletionChunk = {
      id: this.id,
      object: "chat.completion.chunk",
      created: this.created,
      model: this.req.model,
      choices,
      system_fingerprint: null,
    };
    if (this.req.includeUsage) chunk.usage = null;
    return chunk;
  }

  /** The role chunk a choice opens with, once per choice ([] when already sent). */
  private opening(index: number): ChatCompletionChunk[] {
    if (this.started.has(index)) return [];
    this.started.add(index);
    return [this.chunk([{ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }])];
  }

  /** Chunks for one backend delta (empty when there is nothing to tell the client). */
  delta(index: number, d: ChatDelta): ChatCompletionChunk[] {
    const wantLogprobs = this.req.sampling.logprobs && d.logprobs !== undefined && d.logprobs.length > 0;
    const hasText = d.content !== undefined && d.content !== "";
    const hasCalls = d.toolCalls !== undefined && d.toolCalls.length > 0;
    if (!hasText && !hasCalls && !wantLogprobs) return [];
    const delta: ChatCompletionChunkChoice["delta"] = {};
    if (hasText) delta.content = d.content;
    if (hasCalls) delta.tool_calls = d.toolCalls;
    const logprobs = wantLogprobs ? toChatLogprobs(d.logprobs ?? [], this.req.sampling.topLogprobs) : null;
    return [...this.opening(index), this.chunk([{ index, delta, logprobs, finish_reason: null }])];
  }

  /** Closing chunks: a finish_reason per choice, then usage when asked for. */
  finish(outcome: ChatOutcome): ChatCompletionChunk[] {
    const out: ChatCompletionChunk[] = [];
    for (const choice of outcome.choices) {
      out.push(...this.opening(choice.index));
      out.push(
        this.chunk([
          { index: choice.index, delta: {}, logprobs: null, finish_reason: clientFinishReason(choice.finishReason) },
        ]),
      );
    }
    if (this.req.includeUsage) out.push({ ...this.chunk([]), usage: toUsage(outcome.usage) });
    return out;
  }
}

/** The non-streaming legacy completion answer. */
export function completionBody(
  id: string,
  created: number,
  req: CompletionRequest,
  outcome: CompletionOutcome,
): Completion {
  return {
    id,
    object: "text_completion",
    created,
    model: req.model,
    choices: outcome.choices.map((choice) => ({
      index: choice.index,
      text: choice.text,
      logprobs: req.sampling.logprobs ? toCompletionLogprobs(choice.logprobs ?? [], req.sampling.topLogprobs) : null,
      finish_reason: choice.finishReason === "length" ? "length" : "stop",
    })),
    usage: toUsage(outcome.usage),
    system_fingerprint: null,
  };
}

/** One streamed legacy completion chunk. */
export function completionChunk(
  id: string,
  created: number,
  req: CompletionRequest,
  index: number,
  d: CompletionDelta | null,
  finishReason: ChoiceFinishReason | null,
): Completion {
  const logprobs =
    req.sampling.logprobs && d?.logprobs ? toCompletionLogprobs(d.logprobs, req.sampling.topLogprobs) : null;
  const chunk: Completion = {
    id,
    object: "text_completion",
    created,
    model: req.model,
    choices: [
      {
        index,
        text: d?.text ?? "",
        logprobs,
        finish_reason: finishReason === null ? null : finishReason === "length" ? "length" : "stop",
      },
    ],
    system_fingerprint: null,
  };
  if (req.includeUsage) chunk.usage = null;
  return chunk;
}
