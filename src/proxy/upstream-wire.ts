// What OpenAI-compatible upstreams send back, as loosely as they send it (every field optional,
// vLLM's token-id extensions included), and the conversions into the proxy's own logprob and
// usage types. Kept apart from upstream.ts so the forwarding logic reads without wire details.
import type { ChoiceFinishReason, TokenAlternative, TokenLogprob, UsageCounts } from "./backend.ts";

export interface UpstreamUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
}

export interface UpstreamTopLogprob {
  token: string;
  logprob: number;
  bytes?: number[] | null;
}

export interface UpstreamChatLogprob extends UpstreamTopLogprob {
  top_logprobs?: UpstreamTopLogprob[];
}

export interface UpstreamToolCall {
  index?: number;
  id: string;
  type?: string;
  function: { name: string; arguments: string };
}

export interface UpstreamChatChoice {
  index: number;
  message?: { content?: string | null; tool_calls?: UpstreamToolCall[] };
  delta?: {
    content?: string | null;
    tool_calls?: { index: number; id?: string; type?: "function"; function?: { name?: string; arguments?: string } }[];
  };
  logprobs?: { content?: UpstreamChatLogprob[] | null } | null;
  finish_reason?: string | null;
  /** vLLM with `return_token_ids`. */
  token_ids?: number[] | null;
  prompt_token_ids?: number[] | null;
}

export interface UpstreamCompletionChoice {
  index: number;
  text?: string;
  logprobs?: {
    tokens?: string[];
    token_logprobs?: (number | null)[];
    top_logprobs?: (Record<string, number> | null)[] | null;
  } | null;
  finish_reason?: string | null;
  token_ids?: number[] | null;
  prompt_token_ids?: number[] | null;
}

export interface UpstreamResponse<Choice> {
  id?: string;
  model?: string;
  choices?: Choice[];
  usage?: UpstreamUsage | null;
  /** vLLM with `return_token_ids` (chat: top level). */
  prompt_token_ids?: number[] | null;
}

/** vLLM's `return_tokens_as_token_ids` spells tokens "token_id:123". */
function idFromTokenString(token: string): number | null {
  const match = /^token_id:(\d+)$/.exec(token);
  return match ? Number(match[1]) : null;
}

function utf8Bytes(token: string): number[] {
  return [...new TextEncoder().encode(token)];
}

/** Chat logprobs → ours; `tokenIds` (same chunk, same order) fill in ids when lengths match. */
export function toChatLogprobs(
  content: UpstreamChatLogprob[] | null | undefined,
  tokenIds: number[] | null,
): TokenLogprob[] | null {
  if (!content || content.length === 0) return null;
  const aligned = tokenIds !== null && tokenIds.length === content.length;
  return content.map((lp, i) => ({
    token: lp.token,
    logprob: lp.logprob,
    bytes: lp.bytes ?? null,
    tokenId: aligned ? tokenIds[i] : idFromTokenString(lp.token),
    top: (lp.top_logprobs ?? []).map(
      (alt): TokenAlternative => ({
        token: alt.token,
        logprob: alt.logprob,
        bytes: alt.bytes ?? null,
        tokenId: idFromTokenString(alt.token),
      }),
    ),
  }));
}

/** Legacy completion logprobs (parallel arrays) → ours. */
export function toCompletionLogprobs(
  lp: UpstreamCompletionChoice["logprobs"],
  tokenIds: number[] | null,
): TokenLogprob[] | null {
  const tokens = lp?.tokens;
  if (!lp || !tokens || tokens.length === 0) return null;
  const aligned = tokenIds !== null && tokenIds.length === tokens.length;
  return tokens.map((token, i) => ({
    token,
    logprob: lp.token_logprobs?.[i] ?? Number.NaN,
    bytes: utf8Bytes(token),
    tokenId: aligned ? tokenIds[i] : idFromTokenString(token),
    top: Object.entries(lp.top_logprobs?.[i] ?? {}).map(([alt, logprob]) => ({
      token: alt,
      logprob,
      bytes: utf8Bytes(alt),
      tokenId: idFromTokenString(alt),
    })),
  }));
}

/** An upstream usage object in our terms (total filled in when missing). */
export function toUsage(u: UpstreamUsage): UsageCounts {
  const promptTokens = u.prompt_tokens ?? 0;
  const completionTokens = u.completion_tokens ?? 0;
  return { promptTokens, completionTokens, totalTokens: u.total_tokens ?? promptTokens + completionTokens };
}

/** An upstream's finish_reason in our terms (missing → "abort" when the client left, else "stop"). */
export function finishReason(value: unknown, aborted: boolean): ChoiceFinishReason {
  if (value === "stop" || value === "length" || value === "tool_calls" || value === "content_filter") return value;
  if (value === "function_call") return "tool_calls";
  return aborted ? "abort" : "stop";
}

/** Usage from token ids when an upstream sent none (0 where unknown). */
export function estimateUsage(
  prompts: (number[] | null)[],
  choices: { tokenIds: number[] | null; logprobs: TokenLogprob[] | null }[],
): UsageCounts {
  const promptTokens = prompts.reduce((sum, p) => sum + (p?.length ?? 0), 0);
  const completionTokens = choices.reduce((sum, c) => sum + (c.tokenIds?.length ?? c.logprobs?.length ?? 0), 0);
  return { promptTokens, completionTokens, totalTokens: promptTokens + completionTokens };
}
