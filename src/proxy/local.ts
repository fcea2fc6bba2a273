// The local GPU engine as a ChatBackend: renders the chat template (with tools, as HF does),
// tokenizes once, and submits every choice to the continuous-batching engine, so concurrent
// agents' calls share GPU steps. Returns the exact sampled token ids and logprobs (nothing is
// re-tokenised), parses Hermes/Qwen-style <tool_call> blocks, and streams deltas as tokens arrive.
// Structured output (response_format, forced tool calls) is enforced while decoding: each choice
// gets a grammar constraint whose token mask the GPU sampler applies (see constrain.ts).
// Multi-agent: model "<id>:<name>" is served with the model's named adapter <name> (in the same
// engine steps as every other adapter's requests); "<id>" with the default adapter.

import type { ChatMessage, ToolSpec } from "../model/chat-template.ts";
import { vocabularyOf } from "../model/grammar/constraint.ts";
import type { Model } from "../model/model.ts";
import type { Generation, TokenChoice } from "../model/scheduler.ts";
import type {
  BackendContext,
  ChatBackend,
  ChatChoiceOutcome,
  ChatDelta,
  ChatOutcome,
  ChatRequest,
  ChoiceFinishReason,
  CompletionChoiceOutcome,
  CompletionDelta,
  CompletionOutcome,
  CompletionRequest,
  SamplingRequest,
  TokenLogprob,
} from "./backend.ts";
import { chatConstraint, formatConstraint, type RequestConstraint } from "./constrain.ts";
import { contextLengthExceeded, invalidRequest, modelNotFound } from "./errors.ts";
import { checkTokenIds } from "./limits.ts";
import type { ResponseFormatParam } from "./openai-types.ts";
import { parseToolCalls, StreamingToolCallParser } from "./tool-calls.ts";

export interface LocalBackendOptions {
  /** The id served at /v1/models and accepted in requests. */
  modelId: string;
  /**
   * Group each request's sequences so the scheduler admits round-robin across requests (default
   * true); false is first come, first served by sequence (for comparisons in bench/fairness.ts).
   */
  fairAdmission?: boolean;
}

export class LocalBackend implements ChatBackend {
  readonly constrainedJson = true;
  private readonly model: Model;
  private readonly modelId: string;
  private readonly fair: boolean;
  private readonly created = Math.floor(Date.now() / 1000);

  constructor(model: Model, options: LocalBackendOptions) {
    this.model = model;
    this.modelId = options.modelId;
    this.fair = options.fairAdmission ?? true;
  }

  /** The base id, then "<id>:<name>" for each named adapter. */
  async listModels(): Promise<{ id: string; ownedBy: string; created: number }[]> {
    return this.modelIds().map((id) => ({ id, ownedBy: "fulgur", created: this.created }));
  }

  private modelIds(): string[] {
    return [this.modelId, ...[...this.model.adapters.keys()].map((name) => `${this.modelId}:${name}`)];
  }

  /**
   * Which adapter a request's model names: "<id>:<name>" a named one (404 when there is none), any
   * other name (the id itself, or whatever an agent hard-codes when any model is accepted) the
   * default. Its version is read now: the version the call records.
   */
  private adapterFor(model: string): { name: string | undefined; modelId: string; version: number | null } {
    const prefix = `${this.modelId}:`;
    if (!model.startsWith(prefix))
      return { name: undefined, modelId: this.modelId, version: this.model.adapterVersion };
    const name = model.slice(prefix.length);
    const lora = this.model.adapters.get(name);
    if (!lora) throw modelNotFound(model, this.modelIds());
    return { name, modelId: model, version: lora.version };
  }

  async chat(req: ChatRequest, ctx: BackendContext<ChatDelta>): Promise<ChatOutcome> {
    const tok = this.model.tokenizer;
    const adapter = this.adapterFor(req.model);
    const tools = req.tools && req.toolChoice !== "none" ? (req.tools as unknown as ToolSpec[]) : null;
    // vLLM's `chat_template_kwargs`: extra template variables, e.g. Qwen3's enable_thinking.
    const kwargs = req.extra.chat_template_kwargs;
    if (kwargs !== undefined && (typeof kwargs !== "object" || kwargs === null || Array.isArray(kwargs))) {
      throw invalidRequest("chat_template_kwargs must be an object of chat template variables", "chat_template_kwargs");
    }
    let promptText: string;
    try {
      promptText = tok.applyChatTemplate(req.messages as unknown as ChatMessage[], {
        tools,
        addGenerationPrompt: true,
        extra: kwargs as Record<string, unknown> | undefined,
      });
    } catch (err) {
      throw invalidRequest(`the chat template rejected the messages: ${(err as Error).message}`, "messages");
    }
    const prompt = tok.encode(promptText, { addSpecialTokens: false });
    const constraint = chatConstraint(() => this.vocabulary(), req);
    const choices = await Promise.all(
      Array.from({ length: req.sampling.n }, (_, index) => {
        const stream = ctx.onDelta
          ? new DeltaStream(tok, req.sampling.stop, req.parseToolCalls, (d) => ctx.onDelta?.(index, d))
          : undefined;
        return this.generate(prompt, req.sampling, index, ctx, "messages", stream, constraint, adapter.name).then((g) =>
          this.chatChoice(index, g, req, stream, constraint),
        );
      }),
    );
    return {
      model: adapter.modelId,
      adapterVersion: adapter.version,
      adapter: adapter.name ?? null,
      promptTokenIds: prompt,
      promptText,
      choices: choices.map((c) => c.choice),
      usage: usage(
        prompt.length,
        choices.map((c) => c.tokens),
      ),
      timings: timings(
        ctx,
        choices.map((c) => c.ttft),
      ),
    };
  }

  async completion(req: CompletionRequest, ctx: BackendContext<CompletionDelta>): Promise<CompletionOutcome> {
    const tok = this.model.tokenizer;
    const adapter = this.adapterFor(req.model);
    const vocab = this.model.config.vocabSize;
    const prompts = req.prompts.map((p, i) => {
      if (typeof p === "string") return tok.encode(p);
      // An id past the embedding table would read outside it on the GPU.
      checkTokenIds(p, vocab, req.prompts.length > 1 ? `prompt[${i}]` : "prompt");
      return p;
    });
    // vLLM-style `response_format` on completions (OpenAI's legacy endpoint has none).
    const constraint = formatConstraint(
      () => this.vocabulary(),
      completionFormat(req.extra.response_format),
      "response_format",
    );
    const n = req.sampling.n;
    const results = await Promise.all(
      prompts.flatMap((prompt, promptIndex) =>
        Array.from({ length: n }, (_, k) => {
          const index = promptIndex * n + k;
          const stream = ctx.onDelta
            ? new DeltaStream(tok, req.sampling.stop, false, (d) =>
                ctx.onDelta?.(index, { text: d.content ?? "", logprobs: d.logprobs }),
              )
            : undefined;
          return this.generate(prompt, req.sampling, index, ctx, "prompt", stream, constraint, adapter.name).then(
            (g) => {
              stream?.finish(g);
              const { text, stopped } = cutAtStop(tok.decode(g.tokens, { skipSpecialTokens: true }), req.sampling.stop);
              const choice: CompletionChoiceOutcome = {
                index,
                promptIndex,
                text,
                finishReason: stopped ? "stop" : finish(g),
                tokenIds: g.tokens,
                logprobs: tokenLogprobs(tok, g.tokens, g.logprobs, g.topLogprobs),
                ...constrainedFields(g, constraint),
              };
              return { choice, tokens: g.tokens.length, ttft: g.timeToFirstTokenMs };
            },
          );
        }),
      ),
    );
    const promptTokens = prompts.reduce((a, p) => a + p.length, 0);
    return {
      model: adapter.modelId,
      adapterVersion: adapter.version,
      adapter: adapter.name ?? null,
      promptTokenIds: prompts,
      choices: results.map((r) => r.choice),
      usage: {
        promptTokens,
        completionTokens: sum(results.map((r) => r.tokens)),
        totalTokens: promptTokens + sum(results.map((r) => r.tokens)),
      },
      timings: timings(
        ctx,
        results.map((r) => r.ttft),
      ),
    };
  }

  private generate(
    prompt: number[],
    s: SamplingRequest,
    index: number,
    ctx: { signal: AbortSignal },
    param: string,
    stream?: DeltaStream,
    constraint?: RequestConstraint | null,
    adapter?: string,
  ): Promise<Generation> {
    const engine = this.model.engine;
    const room = engine.maxSeqLen - prompt.length;
    const maxTokens = s.maxTokens ?? room;
    if (prompt.length >= engine.maxSeqLen || maxTokens > room) {
      throw contextLengthExceeded(engine.maxSeqLen, prompt.length + maxTokens, param);
    }
    return engine.submit(prompt, {
      temperature: s.temperature,
      topP: s.topP,
      topK: s.topK,
      maxTokens,
      stop: s.stop,
      seed: s.seed === null ? undefined : (s.seed + index) >>> 0,
      topLogprobs: s.topLogprobs,
      signal: ctx.signal,
      // One request's choices share a group: the scheduler admits round-robin across requests.
      group: this.fair ? ctx : undefined,
      onToken: stream ? (t) => stream.push(t) : undefined,
      constraint: constraint?.grammar.constraint(),
      adapter,
    });
  }

  /** The tokenizer's bytes and trie at the logits' width (built once, for constrained decoding). */
  private vocabulary() {
    return vocabularyOf(this.model.tokenizer, this.model.config.vocabSize);
  }

  private chatChoice(
    index: number,
    g: Generation,
    req: ChatRequest,
    stream: DeltaStream | undefined,
    constraint: RequestConstraint | null,
  ): { choice: ChatChoiceOutcome; tokens: number; ttft: number } {
    const tok = this.model.tokenizer;
    stream?.finish(g);
    const text = cutAtStop(tok.decode(g.tokens, { skipSpecialTokens: true }), req.sampling.stop);
    const parsed = req.parseToolCalls ? parseToolCalls(text.text) : { content: text.text || null, toolCalls: [] };
    const choice: ChatChoiceOutcome = {
      index,
      text: text.text,
      content: parsed.content,
      toolCalls: parsed.toolCalls,
      finishReason: parsed.toolCalls.length > 0 ? "tool_calls" : text.stopped ? "stop" : finish(g),
      stopSequence: parsed.toolCalls.length === 0 ? text.matched : null,
      tokenIds: g.tokens,
      logprobs: tokenLogprobs(tok, g.tokens, g.logprobs, g.topLogprobs),
      ...constrainedFields(g, constraint),
    };
    return { choice, tokens: g.tokens.length, ttft: g.timeToFirstTokenMs };
  }
}

/** What a constrained choice records: the constraint and the logprobs without the mask. */
function constrainedFields(g: Generation, constraint: RequestConstraint | null | undefined) {
  if (!constraint) return {};
  return { constrained: constraint.kind, unmaskedLogprobs: g.unmaskedLogprobs ?? null };
}

/** A completions `response_format` (kept among the request's extra fields), checked like chat's. */
function completionFormat(raw: unknown): ResponseFormatParam | undefined {
  if (raw === undefined || raw === null) return undefined;
  const f = raw as { type?: unknown; json_schema?: { schema?: unknown } };
  if (typeof raw !== "object" || !["text", "json_object", "json_schema"].includes(f.type as string)) {
    throw invalidRequest("`response_format.type` must be one of text, json_object, json_schema", "response_format");
  }
  if (f.type === "json_schema" && (typeof f.json_schema !== "object" || f.json_schema === null)) {
    throw invalidRequest("`response_format.json_schema` must be an object with a `schema`", "response_format");
  }
  return raw as ResponseFormatParam;
}

/**
 * Incremental decoding for streams: as tokens arrive, emits the text that can no longer change
 * (held back: an unfinished UTF-8 sequence, and the tail that could still start a stop string),
 * through the tool-call parser for chat, with the logprobs of the tokens since the last delta.
 */
class DeltaStream {
  private readonly tokens: number[] = [];
  private readonly lps: number[] = [];
  private sent = 0;
  private sentTokens = 0;
  private readonly hold: number;
  private readonly parser: StreamingToolCallParser | null;
  private done = false;

  constructor(
    private readonly tok: Model["tokenizer"],
    private readonly stop: string[],
    parseTools: boolean,
    private readonly emit: (delta: ChatDelta) => void,
  ) {
    this.hold = Math.max(0, ...stop.map((s) => s.length - 1));
    this.parser = parseTools ? new StreamingToolCallParser() : null;
  }

  push(t: TokenChoice): void {
    if (this.done) return;
    this.tokens.push(t.token);
    this.lps.push(t.logprob);
    const text = this.tok.decode(this.tokens, { skipSpecialTokens: true });
    if (text.endsWith("\uFFFD")) return;
    const cut = cutAtStop(text, this.stop);
    const stable = cut.stopped ? cut.text.length : Math.max(this.sent, cut.text.length - this.hold);
    this.send(cut.text.slice(this.sent, stable), false);
    this.sent = stable;
    if (cut.stopped) this.done = true;
  }

  finish(g: Generation): void {
    const cut = cutAtStop(this.tok.decode(g.tokens, { skipSpecialTokens: true }), this.stop);
    const rest = this.done ? "" : cut.text.slice(this.sent);
    this.sent = cut.text.length;
    this.done = true;
    this.send(rest, true);
  }

  private send(text: string, last: boolean): void {
    const out = this.parser ? this.parser.push(text) : { content: text, toolCalls: [] };
    if (last && this.parser) {
      const end = this.parser.finish();
      out.content += end.content;
      out.toolCalls.push(...end.toolCalls);
    }
    const newTokens = this.tokens.slice(this.sentTokens);
    const logprobs = newTokens.length ? tokenLogprobs(this.tok, newTokens, this.lps.slice(this.sentTokens)) : undefined;
    if (!out.content && out.toolCalls.length === 0 && !logprobs) return;
    this.sentTokens = this.tokens.length;
    this.emit({
      content: out.content || undefined,
      toolCalls: out.toolCalls.length ? out.toolCalls : undefined,
      logprobs,
    });
  }
}

function cutAtStop(text: string, stop: string[]): { text: string; stopped: boolean; matched: string | null } {
  let at = -1;
  let matched: string | null = null;
  for (const s of stop) {
    if (!s) continue;
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) {
      at = i;
      matched = s;
    }
  }
  return at < 0 ? { text, stopped: false, matched } : { text: text.slice(0, at), stopped: true, matched };
}

function tokenLogprobs(
  tok: Model["tokenizer"],
  ids: number[],
  logprobs: number[],
  top?: TokenChoice[][],
): TokenLogprob[] {
  return ids.map((id, i) => {
    const token = tok.decode([id]);
    return {
      token,
      logprob: logprobs[i],
      // The token's own bytes: a piece of a multibyte character decodes to U+FFFD but has real bytes.
      bytes: Array.from(tok.tokenBytes(id)),
      tokenId: id,
      top: (top?.[i] ?? []).map((alt) => {
        const t = tok.decode([alt.token]);
        return { token: t, logprob: alt.logprob, bytes: Array.from(tok.tokenBytes(alt.token)), tokenId: alt.token };
      }),
    };
  });
}

function finish(g: Generation): ChoiceFinishReason {
  return g.finishReason === "abort" ? "abort" : g.finishReason;
}

function usage(promptTokens: number, completions: number[]) {
  const completionTokens = sum(completions);
  return { promptTokens, completionTokens, totalTokens: promptTokens + completionTokens };
}

function timings(ctx: { receivedAt: number }, ttfts: number[]) {
  const now = performance.now();
  return { queueMs: null, ttftMs: ttfts.length ? Math.min(...ttfts) : null, totalMs: now - ctx.receivedAt };
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}
