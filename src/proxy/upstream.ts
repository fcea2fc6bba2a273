// `UpstreamBackend`: a ChatBackend that forwards to any OpenAI-compatible server (vLLM, Ollama,
// SGLang, a hosted API). It always asks for logprobs and, from vLLM, exact token ids
// (`return_token_ids: true`), so calls recorded through it are usable as RL data when the
// upstream can give them; fields an upstream does not return are recorded as null. Upstream
// errors come back OpenAI-shaped (4xx passed through; 5xx, network failures and bodies that are
// not the JSON expected → 502; silence past `timeoutMs`, before the answer or between two chunks
// of it → 504), never as a hang or a 500.
import type {
  BackendContext,
  ChatBackend,
  ChatChoiceOutcome,
  ChatDelta,
  ChatOutcome,
  ChatRequest,
  CompletionChoiceOutcome,
  CompletionDelta,
  CompletionOutcome,
  CompletionRequest,
  SamplingRequest,
  TokenLogprob,
  UsageCounts,
} from "./backend.ts";
import { badGateway, fromUpstreamError, gatewayTimeout, ProxyError } from "./errors.ts";
import type { ToolCallDelta, ToolCallOut } from "./openai-types.ts";
import { readSseData } from "./sse.ts";
import { parseToolCalls, StreamingToolCallParser, ToolCallAssembler } from "./tool-calls.ts";
import {
  estimateUsage,
  finishReason,
  toChatLogprobs,
  toCompletionLogprobs,
  toUsage,
  type UpstreamChatChoice,
  type UpstreamCompletionChoice,
  type UpstreamResponse,
} from "./upstream-wire.ts";

export interface UpstreamOptions {
  /** Base URL including the version prefix, e.g. `http://127.0.0.1:8001/v1`. */
  baseURL: string;
  /** Sent as `Authorization: Bearer …`. */
  apiKey?: string;
  /** Client model id → upstream model id (unmapped ids are sent as is). */
  modelMap?: Record<string, string>;
  /** Models to list; default: the upstream's own `GET /models` (cached for a minute). */
  models?: string[];
  /** Ask vLLM for exact token ids (`return_token_ids`). Turn off for servers that reject unknown fields. */
  returnTokenIds?: boolean;
  /** Ask for logprobs even when the client did not (they are stripped from its answer). Default true. */
  requestLogprobs?: boolean;
  /** Whether the upstream enforces `response_format` (true for vLLM, OpenAI). Default true. */
  constrainedJson?: boolean;
  /** Merged into every request body (before the client's own extra fields). */
  extraBody?: Record<string, unknown>;
  /** Extra headers for every upstream request. */
  headers?: Record<string, string>;
  /**
   * Longest silence from the upstream, ms: waiting for its answer, and between two chunks of the
   * body (so a long stream that keeps flowing is fine). Past it: 504. Default 300 000.
   */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

const MODEL_CACHE_MS = 60_000;
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 300_000;

function dropUndefined(body: Record<string, unknown>): Record<string, unknown> {
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
  return body;
}

/** Per-choice state while a streamed chat answer comes in. */
interface ChatChoiceState {
  raw: string;
  content: string;
  tokenIds: number[];
  haveTokenIds: boolean;
  logprobs: TokenLogprob[];
  haveLogprobs: boolean;
  finish: unknown;
  parser: StreamingToolCallParser | null;
  calls: ToolCallAssembler;
  upstreamParsedCalls: boolean;
}

/** Forwards chat and completion calls to an OpenAI-compatible server. */
export class UpstreamBackend implements ChatBackend {
  readonly constrainedJson: boolean;
  private readonly options: UpstreamOptions;
  private readonly baseURL: string;
  private readonly fetchImpl: typeof fetch;
  private readonly timeoutMs: number;
  private modelCache: { at: number; models: { id: string; ownedBy: string; created: number }[] } | null = null;

  constructor(options: UpstreamOptions) {
    if (!/^https?:\/\//.test(options.baseURL)) {
      throw new Error(
        `UpstreamBackend: baseURL must be an http(s) URL like http://127.0.0.1:8001/v1, got ${options.baseURL}`,
      );
    }
    this.options = options;
    this.baseURL = options.baseURL.replace(/\/+$/, "");
    this.constrainedJson = options.constrainedJson ?? true;
    this.fetchImpl = options.fetch ?? fetch;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0) {
      throw new Error(`UpstreamBackend: timeoutMs must be a positive number of ms, got ${options.timeoutMs}`);
    }
  }

  async listModels(): Promise<{ id: string; ownedBy: string; created: number }[]> {
    if (this.options.models) {
      return this.options.models.map((id) => ({ id, ownedBy: "upstream", created: 0 }));
    }
    if (this.modelCache && performance.now() - this.modelCache.at < MODEL_CACHE_MS) return this.modelCache.models;
    const res = await this.send("GET", "/models", undefined, AbortSignal.timeout(10_000));
    const body = (await this.readJson(res, "GET /models")) as {
      data?: { id: string; owned_by?: string; created?: number }[];
    };
    if (!Array.isArray(body.data) || !body.data.every((m) => typeof m?.id === "string")) {
      throw badGateway(`Upstream ${this.baseURL}/models answered JSON that is not a model list.`);
    }
    const models = body.data.map((m) => ({
      id: m.id,
      ownedBy: m.owned_by ?? "upstream",
      created: m.created ?? 0,
    }));
    this.modelCache = { at: performance.now(), models };
    return models;
  }

  async chat(req: ChatRequest, ctx: BackendContext<ChatDelta>): Promise<ChatOutcome> {
    return this.readable(() => this.forwardChat(req, ctx), ctx.signal);
  }

  async completion(req: CompletionRequest, ctx: BackendContext<CompletionDelta>): Promise<CompletionOutcome> {
    return this.readable(() => this.forwardCompletion(req, ctx), ctx.signal);
  }

  /**
   * Runs one forwarded call; whatever it throws that is not already an HTTP error came from an
   * answer of an unexpected shape (`choices: [null]`, a chunk that is a number): a 502, not a 500.
   */
  private async readable<T>(run: () => Promise<T>, signal: AbortSignal): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof ProxyError || signal.aborted) throw err;
      throw badGateway(
        `Upstream ${this.baseURL} answered something that is not a valid completion: ${(err as Error).message}`,
      );
    }
  }

  private async forwardChat(req: ChatRequest, ctx: BackendContext<ChatDelta>): Promise<ChatOutcome> {
    const streaming = ctx.onDelta !== undefined;
    const body = dropUndefined({
      ...this.commonBody(req.model, req.sampling, req.extra, streaming),
      messages: req.messages,
      tools: req.tools ?? undefined,
      tool_choice: req.tools ? req.toolChoice : undefined,
      parallel_tool_calls: req.tools ? req.parallelToolCalls : undefined,
      response_format: req.responseFormat.type === "text" ? undefined : req.responseFormat,
      logprobs: this.wantLogprobs(req.sampling) ? true : undefined,
      top_logprobs: req.sampling.topLogprobs > 0 ? req.sampling.topLogprobs : undefined,
    });
    const res = await this.send("POST", "/chat/completions", body, ctx.signal);
    if (!streaming) {
      const json = await this.readJson(res, "POST /chat/completions", true);
      return this.chatFromJson(req, json as UpstreamResponse<UpstreamChatChoice>, ctx);
    }
    return this.chatFromStream(req, res, ctx);
  }

  private async forwardCompletion(
    req: CompletionRequest,
    ctx: BackendContext<CompletionDelta>,
  ): Promise<CompletionOutcome> {
    const streaming = ctx.onDelta !== undefined;
    const wanted = req.sampling.logprobs ? req.sampling.topLogprobs : this.options.requestLogprobs === false ? null : 0;
    const body = dropUndefined({
      ...this.commonBody(req.model, req.sampling, req.extra, streaming),
      prompt: req.prompts.length === 1 ? req.prompts[0] : req.prompts,
      logprobs: wanted ?? undefined,
    });
    const res = await this.send("POST", "/completions", body, ctx.signal);
    const promptTokenIds: (number[] | null)[] = req.prompts.map((p) => (typeof p === "string" ? null : p));
    const states = new Map<number, CompletionChoiceOutcome & { ids: number[]; lps: TokenLogprob[] }>();
    let usage: UsageCounts | null = null;
    let model = req.model;
    let ttftMs: number | null = null;
    const n = req.sampling.n;
    const absorb = (choice: UpstreamCompletionChoice, isStream: boolean) => {
      let s = states.get(choice.index);
      if (!s) {
        s = {
          index: choice.index,
          promptIndex: Math.floor(choice.index / n),
          text: "",
          finishReason: "stop",
          tokenIds: null,
          logprobs: null,
          ids: [],
          lps: [],
        };
        states.set(choice.index, s);
      }
      const text = choice.text ?? "";
      s.text += text;
      if (Array.isArray(choice.prompt_token_ids)) promptTokenIds[s.promptIndex] = choice.prompt_token_ids;
      if (Array.isArray(choice.token_ids)) {
        s.ids.push(...choice.token_ids);
        s.tokenIds = s.ids;
      }
      const lps = toCompletionLogprobs(choice.logprobs, choice.token_ids ?? null);
      if (lps) {
        s.lps.push(...lps);
        s.logprobs = s.lps;
      }
      if (choice.finish_reason) s.finishReason = finishReason(choice.finish_reason, false);
      if (isStream && (text !== "" || lps)) {
        ttftMs ??= performance.now() - ctx.receivedAt;
        ctx.onDelta?.(choice.index, { text, logprobs: lps ?? undefined });
      }
    };
    if (streaming) {
      for await (const chunk of this.chunks<UpstreamCompletionChoice>(res)) {
        model = chunk.model ?? model;
        if (chunk.usage) usage = toUsage(chunk.usage);
        for (const choice of chunk.choices ?? []) absorb(choice, true);
      }
    } else {
      const json = (await this.readJson(res, "POST /completions", true)) as UpstreamResponse<UpstreamCompletionChoice>;
      model = json.model ?? model;
      usage = json.usage ? toUsage(json.usage) : null;
      for (const choice of json.choices ?? []) absorb(choice, false);
    }
    if (ctx.signal.aborted) for (const s of states.values()) s.finishReason = "abort";
    const choices = [...states.values()]
      .sort((a, b) => a.index - b.index)
      .map(({ ids: _ids, lps: _lps, ...choice }) => choice);
    return {
      model,
      adapterVersion: null,
      promptTokenIds,
      choices,
      usage: usage ?? estimateUsage(promptTokenIds, choices),
      timings: { queueMs: null, ttftMs, totalMs: performance.now() - ctx.receivedAt },
    };
  }

  // -------------------------------------------------------------------------------------------

  private wantLogprobs(sampling: SamplingRequest): boolean {
    return sampling.logprobs || this.options.requestLogprobs !== false;
  }

  private commonBody(
    model: string,
    s: SamplingRequest,
    extra: Record<string, unknown>,
    stream: boolean,
  ): Record<string, unknown> {
    const vllm = this.options.returnTokenIds !== false;
    return {
      ...this.options.extraBody,
      ...extra,
      model: this.options.modelMap?.[model] ?? model,
      n: s.n === 1 ? undefined : s.n,
      temperature: s.temperature,
      top_p: s.topP === 1 ? undefined : s.topP,
      top_k: vllm && s.topK > 0 ? s.topK : undefined,
      max_tokens: s.maxTokens ?? undefined,
      stop: s.stop.length > 0 ? s.stop : undefined,
      seed: s.seed ?? undefined,
      presence_penalty: s.presencePenalty || undefined,
      frequency_penalty: s.frequencyPenalty || undefined,
      return_token_ids: vllm ? true : undefined,
      stream: stream || undefined,
      // Usage always: the record needs token counts even when the client did not ask.
      stream_options: stream ? { include_usage: true } : undefined,
    };
  }

  /** The body as a JSON object; anything else (an HTML error page, a truncated body) is a 502. */
  private async readJson(res: Response, what: string, completion = false): Promise<Record<string, unknown>> {
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      if (err instanceof ProxyError) throw err;
      throw badGateway(`Upstream ${this.baseURL} (${what}) broke off its answer: ${(err as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw badGateway(
        `Upstream ${this.baseURL} (${what}) answered with a body that is not JSON: ${JSON.stringify(text.slice(0, 200))}`,
      );
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw badGateway(`Upstream ${this.baseURL} (${what}) answered JSON that is not an object.`);
    }
    if (completion && !Array.isArray((parsed as { choices?: unknown }).choices)) {
      throw badGateway(
        `Upstream ${this.baseURL} (${what}) answered JSON without a \`choices\` list: ${text.slice(0, 200)}`,
      );
    }
    return parsed as Record<string, unknown>;
  }

  /**
   * One upstream request under the silence limit: a timer armed while waiting for the answer and
   * re-armed by every chunk of its body; when it fires the request is aborted and the read fails
   * with a 504. The client's own disconnect (`signal`) aborts it too.
   */
  private async send(method: string, path: string, body: unknown, signal: AbortSignal): Promise<Response> {
    const url = `${this.baseURL}${path}`;
    const headers: Record<string, string> = { accept: "application/json", ...this.options.headers };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    const timeoutMs = this.timeoutMs;
    const abort = new AbortController();
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const disarm = () => clearTimeout(timer);
    const arm = () => {
      disarm();
      timer = setTimeout(() => {
        timedOut = true;
        abort.abort(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      (timer as { unref?: () => void }).unref?.();
    };
    const late = () =>
      gatewayTimeout(`Upstream ${url} did not answer within ${timeoutMs} ms (its timeout; --upstream-timeout-ms).`);
    const onClientAbort = () => abort.abort(signal.reason);
    if (signal.aborted) onClientAbort();
    else signal.addEventListener("abort", onClientAbort, { once: true });
    const done = () => {
      disarm();
      signal.removeEventListener("abort", onClientAbort);
    };
    arm();
    let res: Response;
    try {
      res = await this.fetchImpl(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: abort.signal,
      });
    } catch (err) {
      done();
      // The caller's own deadline (listModels' 10 s) is an upstream timeout too, not a 500.
      if (timedOut || (signal.aborted && (signal.reason as Error | undefined)?.name === "TimeoutError")) throw late();
      if (signal.aborted) throw err;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = [cause?.code, cause?.message].filter(Boolean).join(" ") || (err as Error).message;
      throw badGateway(`Upstream ${url} is unreachable: ${why}`);
    }
    if (!res.ok) {
      let text = "";
      try {
        text = await res.text();
      } catch {
        if (timedOut) {
          done();
          throw late();
        }
      }
      done();
      throw fromUpstreamError(res.status, text, url);
    }
    const upstreamBody = res.body;
    if (!upstreamBody) {
      done();
      return res;
    }
    arm();
    const reader = upstreamBody.getReader();
    const guarded = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const chunk = await reader.read();
          if (chunk.done) {
            done();
            controller.close();
            return;
          }
          arm();
          controller.enqueue(chunk.value);
        } catch (err) {
          done();
          controller.error(timedOut ? late() : err);
        }
      },
      cancel(reason) {
        done();
        return reader.cancel(reason);
      },
    });
    return new Response(guarded, { status: res.status, headers: res.headers });
  }

  private async *chunks<Choice>(res: Response): AsyncGenerator<UpstreamResponse<Choice>> {
    if (!res.body) throw badGateway("Upstream answered a streaming request without a body.");
    const events = readSseData(res.body)[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<string>;
      try {
        next = await events.next();
      } catch (err) {
        if (err instanceof ProxyError) throw err;
        throw badGateway(`Upstream ${this.baseURL} broke off its stream: ${(err as Error).message}`);
      }
      if (next.done) return;
      const data = next.value;
      let chunk: UpstreamResponse<Choice> & { error?: unknown };
      try {
        chunk = JSON.parse(data);
      } catch {
        throw badGateway(`Upstream sent a stream event that is not JSON: ${data.slice(0, 200)}`);
      }
      if (chunk.error) throw fromUpstreamError(400, JSON.stringify(chunk), this.baseURL);
      yield chunk;
    }
  }

  private chatFromJson(
    req: ChatRequest,
    json: UpstreamResponse<UpstreamChatChoice>,
    ctx: BackendContext<ChatDelta>,
  ): ChatOutcome {
    const choices: ChatChoiceOutcome[] = (json.choices ?? []).map((c) => {
      const raw = c.message?.content ?? "";
      const tokenIds = Array.isArray(c.token_ids) ? c.token_ids : null;
      let content: string | null = c.message?.content ?? null;
      let toolCalls: ToolCallOut[] = (c.message?.tool_calls ?? []).map((t) => ({
        id: t.id,
        type: "function" as const,
        function: { name: t.function.name, arguments: t.function.arguments },
      }));
      if (toolCalls.length === 0 && req.parseToolCalls) ({ content, toolCalls } = parseToolCalls(raw));
      let finish = finishReason(c.finish_reason, ctx.signal.aborted);
      if (toolCalls.length > 0 && finish === "stop") finish = "tool_calls";
      return {
        index: c.index,
        text: raw,
        content,
        toolCalls,
        finishReason: finish,
        tokenIds,
        logprobs: toChatLogprobs(c.logprobs?.content, tokenIds),
      };
    });
    choices.sort((a, b) => a.index - b.index);
    const promptTokenIds = json.prompt_token_ids ?? json.choices?.[0]?.prompt_token_ids ?? null;
    return {
      model: json.model ?? req.model,
      adapterVersion: null,
      promptTokenIds,
      promptText: null,
      choices,
      usage: json.usage ? toUsage(json.usage) : estimateUsage([promptTokenIds], choices),
      timings: { queueMs: null, ttftMs: null, totalMs: performance.now() - ctx.receivedAt },
    };
  }

  private async chatFromStream(req: ChatRequest, res: Response, ctx: BackendContext<ChatDelta>): Promise<ChatOutcome> {
    const states = new Map<number, ChatChoiceState>();
    const state = (index: number): ChatChoiceState => {
      let s = states.get(index);
      if (!s) {
        s = {
          raw: "",
          content: "",
          tokenIds: [],
          haveTokenIds: false,
          logprobs: [],
          haveLogprobs: false,
          finish: null,
          parser: req.parseToolCalls ? new StreamingToolCallParser() : null,
          calls: new ToolCallAssembler(),
          upstreamParsedCalls: false,
        };
        states.set(index, s);
      }
      return s;
    };
    let model = req.model;
    let usage: UsageCounts | null = null;
    let promptTokenIds: number[] | null = null;
    let ttftMs: number | null = null;
    const emit = (
      index: number,
      s: ChatChoiceState,
      content: string,
      toolCalls: ToolCallDelta[],
      lps?: TokenLogprob[],
    ) => {
      s.content += content;
      if (toolCalls.length > 0) s.calls.add(toolCalls);
      if (content === "" && toolCalls.length === 0 && !lps) return;
      ttftMs ??= performance.now() - ctx.receivedAt;
      const delta: ChatDelta = {};
      if (content !== "") delta.content = content;
      if (toolCalls.length > 0) delta.toolCalls = toolCalls;
      if (lps) delta.logprobs = lps;
      ctx.onDelta?.(index, delta);
    };
    for await (const chunk of this.chunks<UpstreamChatChoice>(res)) {
      model = chunk.model ?? model;
      if (chunk.usage) usage = toUsage(chunk.usage);
      if (Array.isArray(chunk.prompt_token_ids)) promptTokenIds = chunk.prompt_token_ids;
      for (const c of chunk.choices ?? []) {
        const s = state(c.index);
        if (Array.isArray(c.prompt_token_ids)) promptTokenIds = c.prompt_token_ids;
        const ids = Array.isArray(c.token_ids) ? c.token_ids : null;
        if (ids) {
          s.tokenIds.push(...ids);
          s.haveTokenIds = true;
        }
        const lps = toChatLogprobs(c.logprobs?.content, ids) ?? undefined;
        if (lps) {
          s.logprobs.push(...lps);
          s.haveLogprobs = true;
        }
        const text = c.delta?.content ?? "";
        s.raw += text;
        const upstreamCalls = c.delta?.tool_calls ?? [];
        if (upstreamCalls.length > 0) s.upstreamParsedCalls = true;
        if (s.parser && text !== "" && !s.upstreamParsedCalls) {
          const out = s.parser.push(text);
          emit(c.index, s, out.content, out.toolCalls, lps);
        } else {
          emit(c.index, s, text, upstreamCalls, lps);
        }
        if (c.finish_reason) s.finish = c.finish_reason;
      }
    }
    const choices: ChatChoiceOutcome[] = [];
    for (const [index, s] of [...states.entries()].sort((a, b) => a[0] - b[0])) {
      if (s.parser && !s.upstreamParsedCalls) {
        const out = s.parser.finish();
        emit(index, s, out.content, out.toolCalls);
      }
      const toolCalls = s.calls.result();
      let finish = finishReason(s.finish, ctx.signal.aborted);
      if (toolCalls.length > 0 && finish === "stop") finish = "tool_calls";
      const content = toolCalls.length > 0 && s.content.trim() === "" ? null : s.content;
      choices.push({
        index,
        text: s.raw,
        content,
        toolCalls,
        finishReason: finish,
        tokenIds: s.haveTokenIds ? s.tokenIds : null,
        logprobs: s.haveLogprobs ? s.logprobs : null,
      });
    }
    return {
      model,
      adapterVersion: null,
      promptTokenIds,
      promptText: null,
      choices,
      usage: usage ?? estimateUsage([promptTokenIds], choices),
      timings: { queueMs: null, ttftMs, totalMs: performance.now() - ctx.receivedAt },
    };
  }
}
