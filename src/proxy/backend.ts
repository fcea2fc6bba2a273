// The contracts between the proxy's HTTP routes and whatever generates text: `ChatBackend` (the
// local GPU engine, or `UpstreamBackend` forwarding to vLLM/Ollama/a hosted API) and `Recorder`
// (the store, which turns each recorded call into a transition). The routes parse and validate
// the OpenAI request into a `ChatRequest`/`CompletionRequest`, call the backend, shape the answer
// for the client, and hand one `RecordedCall` per HTTP call to the recorder.
//
// A backend always returns everything it has (token ids, sampled logprobs), whatever the client
// asked for: RL needs them even when the agent did not request `logprobs`. The routes strip what
// the client did not ask for.
import type { ChatMessageParam, ResponseFormatParam, ToolCallDelta, ToolCallOut, ToolParam } from "./openai-types.ts";

// ---------------------------------------------------------------------------------------------
// Requests, as the routes hand them to a backend

/** Sampling parameters, normalised from OpenAI's snake_case (defaults already applied). */
export interface SamplingRequest {
  /** Choices to generate per prompt (OpenAI `n`), ≥ 1. */
  n: number;
  /** 0 = greedy; OpenAI's default is 1. */
  temperature: number;
  /** 1 = off. */
  topP: number;
  /** 0 = off (vLLM extension `top_k`; -1 is normalised to 0). */
  topK: number;
  /** Most tokens to generate per choice; null = up to the context window. */
  maxTokens: number | null;
  /** Stop strings (≤ 4); the returned text is cut before the stop string. */
  stop: string[];
  /** Same seed + same prompt → same tokens; null = the backend picks. */
  seed: number | null;
  /** Whether the client wants logprobs in the response (backends return them regardless). */
  logprobs: boolean;
  /** Alternatives per position the client asked for (chat: 0..20; completions: 0..5). */
  topLogprobs: number;
  /** Passed to upstream servers; the local engine does not implement penalties. */
  presencePenalty: number;
  frequencyPenalty: number;
}

/** OpenAI `tool_choice`, normalised. */
export type ToolChoice = "none" | "auto" | "required" | { type: "function"; function: { name: string } };

/** A validated `POST /v1/chat/completions` request. */
export interface ChatRequest {
  /** The model id the client asked for (already checked against the served models). */
  model: string;
  /** The messages as sent (image parts rejected, text parts kept as parts). */
  messages: ChatMessageParam[];
  /** Tools offered to the model; null when none. */
  tools: ToolParam[] | null;
  toolChoice: ToolChoice;
  /** Whether tool calls should be parsed out of the text (tools given and tool_choice ≠ none). */
  parseToolCalls: boolean;
  parallelToolCalls: boolean;
  responseFormat: ResponseFormatParam;
  sampling: SamplingRequest;
  stream: boolean;
  /** `stream_options.include_usage`. */
  includeUsage: boolean;
  /** OpenAI `user`. */
  user: string | null;
  /** Top-level fields the proxy does not know (vLLM extensions, SDK extras); upstreams forward them. */
  extra: Record<string, unknown>;
}

/** A validated `POST /v1/completions` request. */
export interface CompletionRequest {
  model: string;
  /** One entry per prompt: text, or token ids sent as is (no re-tokenisation). */
  prompts: (string | number[])[];
  sampling: SamplingRequest;
  stream: boolean;
  includeUsage: boolean;
  user: string | null;
  extra: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Outcomes, what a backend returns

/** One alternative token at a position. `bytes`: its UTF-8 bytes, null when unknown. */
export interface TokenAlternative {
  token: string;
  logprob: number;
  bytes: number[] | null;
  /** Token id, when the backend knows it. */
  tokenId: number | null;
}

/** One generated token: its text, id, sampled logprob and the alternatives asked for. */
export interface TokenLogprob extends TokenAlternative {
  /** Most likely alternatives (empty unless `topLogprobs` > 0). */
  top: TokenAlternative[];
}

/**
 * Why a choice ended. "abort": the client went away (or the request was cancelled) before the
 * end; routes never send it to a client.
 */
export type ChoiceFinishReason = "stop" | "length" | "tool_calls" | "content_filter" | "abort";

/** One generated choice of a chat completion. */
export interface ChatChoiceOutcome {
  index: number;
  /** Everything the model wrote, tool-call markup included (what the tokens decode to). */
  text: string;
  /** The assistant message content after tool calls were taken out (null when empty). */
  content: string | null;
  toolCalls: ToolCallOut[];
  /** "tool_calls" when the model stopped after calling tools. */
  finishReason: ChoiceFinishReason;
  /**
   * The stop string that ended the choice (Anthropic's `stop_sequence`); null or absent when it
   * ended otherwise or the backend cannot tell.
   */
  stopSequence?: string | null;
  /** Exact sampled token ids (stop token included when one ended it); null when unavailable. */
  tokenIds: number[] | null;
  /** One entry per sampled token (parallel to `tokenIds`); null when unavailable. */
  logprobs: TokenLogprob[] | null;
  /** Set when decoding was constrained: `logprobs` are then under the masked distribution. */
  constrained?: ConstraintKind;
  /** Constrained choices: each token's logprob without the mask (null when unavailable). */
  unmaskedLogprobs?: number[] | null;
}

/** What constrained a choice's decoding (structured output). */
export type ConstraintKind = "json_object" | "json_schema" | "tool_call";

export interface UsageCounts {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

/** Where the time went, in milliseconds; null when the backend cannot tell. */
export interface CallTimings {
  /** Waiting for a slot before the prompt was first fed. */
  queueMs: number | null;
  /** From receiving the request to the first generated token. */
  ttftMs: number | null;
  /** From receiving the request to the last token. */
  totalMs: number;
}

/** What a chat call produced: everything a transition record needs. */
export interface ChatOutcome {
  /** The model that actually served (upstream name, or local checkpoint id). */
  model: string;
  /**
   * LoRA adapter version that generated (the store's resources version, 1, 2, 3…), or null for
   * the base model / unknown. A number, like `Transition.adapterVersion` in src/store/types.ts.
   */
  adapterVersion: number | null;
  /** The named LoRA adapter that generated (multi-agent, model "base:name"); null/absent: the default one or none. */
  adapter?: string | null;
  /** Exact prompt token ids the model saw (chat template applied); null when unavailable. */
  promptTokenIds: number[] | null;
  /** The rendered prompt text, when the backend rendered it itself. */
  promptText: string | null;
  choices: ChatChoiceOutcome[];
  usage: UsageCounts;
  timings: CallTimings;
}

/** One generated choice of a legacy completion. */
export interface CompletionChoiceOutcome {
  /** promptIndex * n + k, as OpenAI numbers them. */
  index: number;
  promptIndex: number;
  text: string;
  finishReason: ChoiceFinishReason;
  tokenIds: number[] | null;
  logprobs: TokenLogprob[] | null;
  constrained?: ConstraintKind;
  unmaskedLogprobs?: number[] | null;
}

export interface CompletionOutcome {
  model: string;
  adapterVersion: number | null;
  /** As ChatOutcome.adapter. */
  adapter?: string | null;
  /** Token ids per prompt (parallel to `CompletionRequest.prompts`); entries null when unavailable. */
  promptTokenIds: (number[] | null)[];
  choices: CompletionChoiceOutcome[];
  usage: UsageCounts;
  timings: CallTimings;
}

// ---------------------------------------------------------------------------------------------
// Streaming deltas

/** Incremental output of one chat choice, already in message space (tool calls parsed). */
export interface ChatDelta {
  /** Content text to show now. */
  content?: string;
  /** Tool call fragments in OpenAI's streaming shape. */
  toolCalls?: ToolCallDelta[];
  /** Tokens generated since the last delta (may arrive without text, e.g. inside a tool call). */
  logprobs?: TokenLogprob[];
}

/** Incremental output of one completion choice. */
export interface CompletionDelta {
  text: string;
  logprobs?: TokenLogprob[];
}

export interface BackendContext<Delta> {
  /** Aborted when the client disconnects: stop generating and resolve or reject promptly. */
  signal: AbortSignal;
  /** Present only for streaming requests; called in order per choice. */
  onDelta?: (choiceIndex: number, delta: Delta) => void;
  /** `performance.now()` when the HTTP request arrived, so timings include parsing and queueing. */
  receivedAt: number;
}

/** A model server the routes can call. */
export interface ChatBackend {
  /** Models this backend serves (GET /v1/models). */
  listModels(): Promise<{ id: string; ownedBy: string; created: number }[]>;
  /**
   * Whether the backend enforces `response_format` json_object/json_schema while decoding. When
   * false, the routes check afterwards that the text parses as JSON.
   */
  readonly constrainedJson: boolean;
  /**
   * Generates all `sampling.n` choices of a chat request. Must return exact token ids when it has
   * them, parse tool calls when `req.parseToolCalls`, and throw a `ProxyError` for client errors
   * (e.g. `contextLengthExceeded`) so the routes answer with the right status.
   */
  chat(req: ChatRequest, ctx: BackendContext<ChatDelta>): Promise<ChatOutcome>;
  /** Generates `n` choices per prompt of a legacy completion request. */
  completion(req: CompletionRequest, ctx: BackendContext<CompletionDelta>): Promise<CompletionOutcome>;
}

// ---------------------------------------------------------------------------------------------
// Recording

/** A failure recorded with a call. */
export interface RecordedError {
  status: number;
  message: string;
  type: string;
  code: string | null;
}

interface RecordedCallBase {
  /** The id returned to the client (`chatcmpl-…` / `cmpl-…`). */
  id: string;
  rolloutId: string | null;
  attemptId: string | null;
  /** Epoch ms when the request arrived. */
  startedAt: number;
  /** Model id that served (backend's), or the requested one when the backend failed first. */
  model: string;
  adapterVersion: number | null;
  timings: CallTimings;
  /** Set when the call failed after reaching the backend, or the client disconnected. */
  error: RecordedError | null;
}

/** One `/v1/chat/completions` call that reached the backend. */
export interface RecordedChatCall extends RecordedCallBase {
  kind: "chat";
  request: ChatRequest;
  /** Null when the backend failed before producing anything. */
  outcome: ChatOutcome | null;
}

/** One `/v1/completions` call that reached the backend. */
export interface RecordedCompletionCall extends RecordedCallBase {
  kind: "completion";
  request: CompletionRequest;
  outcome: CompletionOutcome | null;
}

export type RecordedCall = RecordedChatCall | RecordedCompletionCall;

/** Where calls go once answered. Must not block the response: queue the write and return. */
export interface Recorder {
  /** Durable recorders resolve once the call is stored; the routes wait before answering. */
  record(call: RecordedCall): void | Promise<void>;
}
