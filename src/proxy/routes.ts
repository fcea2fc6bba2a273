// The OpenAI-compatible HTTP surface: `POST /v1/chat/completions`, `POST /v1/completions`,
// `POST /v1/responses` (+ `GET`/`DELETE /v1/responses/:id`), `GET /v1/models`, served at the
// root and under `/rollouts/:rolloutId/attempts/:attemptId` so an agent's base URL says which
// attempt its calls belong to (headers `x-fulgur-rollout-id` / `x-fulgur-attempt-id` work too).
// Requests are validated before the backend sees them; every call that reaches the backend is
// handed to the recorder exactly once, with its error if it failed; calls rejected earlier are
// not recorded. Anthropic's `POST /v1/messages` is served by `messages-api.ts` on the same
// paths, with the same backend and recorder.

import type { Context } from "hono";
import { Hono } from "hono";
import { attemptScopeOf } from "../http/auth.ts";
import { bodyLimits } from "../http/limits.ts";
import type {
  ChatBackend,
  ChatDelta,
  ChatOutcome,
  ChatRequest,
  CompletionDelta,
  CompletionOutcome,
  RecordedCall,
  RecordedError,
  Recorder,
} from "./backend.ts";
import {
  modelNotFound,
  openAIErrorHandler,
  openAINotFoundHandler,
  ProxyError,
  readJsonBody,
  toProxyError,
} from "./errors.ts";
import {
  checkChatLimits,
  checkCompletionLimits,
  DEFAULT_LIMITS,
  outcomeProblem,
  type RequestLimits,
} from "./limits.ts";
import { messagesRoutes } from "./messages-api.ts";
import { parseChatRequest, parseCompletionRequest } from "./normalize.ts";
import type { ModelList } from "./openai-types.ts";
import { ChatChunker, chatCompletionBody, completionBody, completionChunk, newResponseId } from "./responses.ts";
import { newItemId, parseResponsesRequest, ResponseStore, responseBody, responseSkeleton } from "./responses-api.ts";
import { ResponseEventStream } from "./responses-sse.ts";
import { sseResponse } from "./sse.ts";

export interface ProxyRoutesOptions {
  backend: ChatBackend;
  recorder: Recorder;
  /** The model id clients must ask for; default: whatever `backend.listModels()` lists. */
  modelName?: string;
  /** Serve any `model` the client names (agents with a hard-coded model id). Default false. */
  acceptAnyModel?: boolean;
  /** Largest request body accepted, in bytes (default 8 MiB); larger → 413. */
  maxBodyBytes?: number;
  /** Per-request limits (choices, nesting, model name); see src/proxy/limits.ts. */
  limits?: Partial<RequestLimits>;
  /** Where `store: true` responses are kept for `previous_response_id` (default: 4096 / 64 MiB in memory). */
  responseStore?: ResponseStore;
}

export const ROLLOUT_HEADER = "x-fulgur-rollout-id";
export const ATTEMPT_HEADER = "x-fulgur-attempt-id";
const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;

interface Attribution {
  rolloutId: string | null;
  attemptId: string | null;
}

/**
 * Path parameters win over headers; empty values count as absent. A request made with an attempt
 * token is that attempt's (the access check already refused any other attribution).
 */
export function attributionOf(c: Context): Attribution {
  const scope = attemptScopeOf(c);
  if (scope) return { rolloutId: scope.rolloutId, attemptId: scope.attemptId };
  const pick = (param: string, header: string) => {
    const value = c.req.param(param) || c.req.header(header) || "";
    return value.trim() === "" ? null : value.trim();
  };
  return { rolloutId: pick("rolloutId", ROLLOUT_HEADER), attemptId: pick("attemptId", ATTEMPT_HEADER) };
}

export function recordedError(err: unknown, clientGone: boolean): RecordedError {
  if (clientGone) {
    return {
      status: 499,
      message: "The client disconnected before the answer was complete.",
      type: "client_disconnected",
      code: null,
    };
  }
  const e = toProxyError(err);
  return { status: e.status, message: e.message, type: e.type, code: e.code };
}

/**
 * A chat-pipeline error as the Responses API names its params: the chat request's
 * `response_format` came from `text.format` (whose schema sits at `text.format.schema`).
 */
function asResponsesError(err: unknown): never {
  if (!(err instanceof ProxyError) || !err.param?.startsWith("response_format")) throw err;
  const param = err.param.replace(/^response_format(\.json_schema)?/, "text.format");
  throw new ProxyError(err.status, err.message, { type: err.type, param, code: err.code });
}

/**
 * A streamed outcome, or the 502 it is when the store could not take it (outcomeProblem): thrown
 * through the run, so every streaming route ends such a call with its error event and records it.
 */
function storable<O extends ChatOutcome | CompletionOutcome>(outcome: O): O {
  const problem = outcomeProblem(outcome);
  if (problem) throw problem;
  return outcome;
}

/** 503 for a call that was generated but could not be recorded: the client must not count on it. */
function notRecorded(err: unknown): ProxyError {
  return new ProxyError(
    503,
    `The call was not recorded, so it is not answered: ${err instanceof Error ? err.message : String(err)}`,
    { type: "server_error", code: "recording_failed" },
  );
}

/** Records a failed call; the call's own error is what the client gets, even if recording fails too. */
async function recordFailure(
  record: (outcome: null, error: RecordedError) => Promise<void>,
  err: unknown,
  clientGone: boolean,
): Promise<void> {
  await record(null, recordedError(err, clientGone)).catch(() => {});
}

/**
 * Without constrained decoding, `response_format: json_object/json_schema` is checked after the
 * fact: an answer whose text is not JSON is an error instead of a silent contract breach.
 */
function jsonOutputError(req: ChatRequest, outcome: ChatOutcome, backend: ChatBackend): ProxyError | null {
  if (req.responseFormat.type === "text" || backend.constrainedJson) return null;
  for (const choice of outcome.choices) {
    if (choice.toolCalls.length > 0) continue;
    try {
      JSON.parse(choice.content ?? "");
    } catch {
      return new ProxyError(
        500,
        `response_format ${req.responseFormat.type} was requested but choice ${choice.index} is not valid JSON ` +
          `(this backend cannot constrain decoding; the output was checked afterwards): ${JSON.stringify((choice.content ?? "").slice(0, 200))}`,
        { type: "server_error", code: "invalid_json_output" },
      );
    }
  }
  return null;
}

function responseNotFound(id: string): ProxyError {
  return new ProxyError(404, `No response found with id '${id}'.`, { param: "response_id", code: "not_found" });
}

/** A streaming backend run whose deltas are buffered until the SSE response is ready for them. */
export interface GatedRun<Delta, Outcome> {
  outcome: Promise<Outcome>;
  /** Aborts when the client goes away (before or during the stream). */
  signal: AbortSignal;
  /** Sends deltas to `sink` from now on, replaying those that arrived before. */
  open(sink: (index: number, delta: Delta) => void): void;
  /** Links the SSE writer's disconnect signal to the run. */
  follow(signal: AbortSignal): void;
}

/**
 * Starts a streaming run and waits for its first delta. If the run fails before any output, the
 * error is thrown here, so the route still answers with its real HTTP status (a context window
 * overflow is a 400, not a 200 stream carrying an error event).
 */
export async function startStreaming<Delta, Outcome>(
  c: Context,
  run: (signal: AbortSignal, onDelta: (index: number, delta: Delta) => void) => Promise<Outcome>,
): Promise<GatedRun<Delta, Outcome>> {
  const abort = new AbortController();
  const onAbort = () => abort.abort(new Error("client disconnected"));
  c.req.raw.signal.addEventListener("abort", onAbort, { once: true });
  const buffered: [number, Delta][] = [];
  let sink: ((index: number, delta: Delta) => void) | null = null;
  let wake = () => {};
  const firstOrEnd = new Promise<void>((resolve) => {
    wake = resolve;
  });
  let failure: { error: unknown } | null = null;
  const outcome = run(abort.signal, (index, delta) => {
    if (sink) sink(index, delta);
    else {
      buffered.push([index, delta]);
      wake();
    }
  });
  outcome.then(wake, (error) => {
    failure = { error };
    wake();
  });
  await firstOrEnd;
  if (failure) throw (failure as { error: unknown }).error;
  return {
    outcome,
    signal: abort.signal,
    open(next) {
      sink = next;
      for (const [index, delta] of buffered.splice(0)) next(index, delta);
    },
    follow(signal) {
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    },
  };
}

/**
 * The proxy's Hono app. Mount it on the server with `app.route("/", proxyRoutes({...}))`.
 */
export function proxyRoutes(options: ProxyRoutesOptions): Hono {
  const { backend, recorder } = options;
  const responseStore = options.responseStore ?? new ResponseStore();
  /** Stored responses as the caller may see them: an attempt token, only its attempt's own. */
  const responsesFor = (c: Context) => responseStore.view(attemptScopeOf(c)?.attemptId ?? null);
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const limits: RequestLimits = { ...DEFAULT_LIMITS, ...options.limits };
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes <= 0) {
    throw new Error(`proxyRoutes: maxBodyBytes must be a positive integer, got ${maxBodyBytes}`);
  }

  async function servedModels(): Promise<string[]> {
    if (options.modelName) return [options.modelName];
    return (await backend.listModels()).map((m) => m.id);
  }

  async function checkModel(model: string): Promise<void> {
    if (options.acceptAnyModel) return;
    const served = await servedModels();
    if (!served.includes(model)) throw modelNotFound(model, served);
  }

  /**
   * Returns a function that records the call once (later calls are ignored) and resolves when
   * the recorder has it durably; a recorder that cannot store it makes that a 503 for the client.
   */
  function recordOnce(base: Omit<RecordedCall, "outcome" | "error" | "model" | "adapterVersion" | "timings">) {
    let done = false;
    const receivedAt = performance.now();
    return async (outcome: ChatOutcome | CompletionOutcome | null, error: RecordedError | null): Promise<void> => {
      if (done) return;
      done = true;
      const call = {
        ...base,
        outcome,
        error,
        model: outcome?.model ?? base.request.model,
        adapterVersion: outcome?.adapterVersion ?? null,
        timings: outcome?.timings ?? { queueMs: null, ttftMs: null, totalMs: performance.now() - receivedAt },
      } as RecordedCall;
      try {
        await recorder.record(call);
      } catch (err) {
        throw notRecorded(err);
      }
    };
  }

  const v1 = new Hono();
  v1.onError(openAIErrorHandler);
  v1.use(
    "/v1/*",
    bodyLimits({
      maxBytes: maxBodyBytes,
      answer: (c, f) => c.json(new ProxyError(f.status, f.message, { code: f.code }).toBody(), f.status),
    }),
  );

  v1.get("/v1/models", async (c) => {
    const listed = options.modelName
      ? [{ id: options.modelName, ownedBy: "fulgur", created: 0 }]
      : await backend.listModels();
    const body: ModelList = {
      object: "list",
      data: listed.map((m) => ({ id: m.id, object: "model", created: m.created, owned_by: m.ownedBy })),
    };
    return c.json(body);
  });

  /**
   * One non-streaming chat call: generates, checks the outcome, and resolves once the call is
   * recorded (durable group commit: the caller answers only then). A failed or unusable call is
   * recorded with its error, which is then thrown for the route's error handler.
   */
  async function chatRecorded(
    c: Context,
    req: ChatRequest,
    record: (outcome: ChatOutcome | null, error: RecordedError | null) => Promise<void>,
    receivedAt: number,
  ): Promise<ChatOutcome> {
    let outcome: ChatOutcome;
    try {
      outcome = await backend.chat(req, { signal: c.req.raw.signal, receivedAt });
    } catch (err) {
      await recordFailure(record, err, c.req.raw.signal.aborted);
      throw err;
    }
    const problem = jsonOutputError(req, outcome, backend) ?? outcomeProblem(outcome);
    if (problem) {
      await record(problem.status === 502 ? null : outcome, recordedError(problem, false));
      throw problem;
    }
    await record(outcome, null);
    return outcome;
  }

  /** Starts a streaming chat call; a call that fails before its first delta is recorded and thrown. */
  async function chatStreamed(
    c: Context,
    req: ChatRequest,
    record: (outcome: ChatOutcome | null, error: RecordedError | null) => Promise<void>,
    receivedAt: number,
  ): Promise<GatedRun<ChatDelta, ChatOutcome>> {
    try {
      return await startStreaming<ChatDelta, ChatOutcome>(c, (signal, onDelta) =>
        backend.chat(req, { signal, onDelta, receivedAt }).then(storable),
      );
    } catch (err) {
      await recordFailure(record, err, c.req.raw.signal.aborted);
      throw err;
    }
  }

  v1.post("/v1/chat/completions", async (c) => {
    const receivedAt = performance.now();
    const startedAt = Date.now();
    const req = parseChatRequest(await readJsonBody(c));
    checkChatLimits(req, limits);
    await checkModel(req.model);
    const id = newResponseId("chatcmpl");
    const created = Math.floor(startedAt / 1000);
    const record = recordOnce({ kind: "chat", id, ...attributionOf(c), startedAt, request: req });

    if (!req.stream) {
      const outcome = await chatRecorded(c, req, record, receivedAt);
      return c.json(chatCompletionBody(id, created, req, outcome));
    }

    const gated = await chatStreamed(c, req, record, receivedAt);
    const chunker = new ChatChunker(id, created, req);
    return sseResponse(
      c,
      async (writer) => {
        gated.follow(writer.signal);
        let pending = Promise.resolve();
        gated.open((index, delta) => {
          for (const chunk of chunker.delta(index, delta)) pending = pending.then(() => writer.send(chunk));
        });
        const outcome = await gated.outcome;
        await pending;
        for (const chunk of chunker.finish(outcome)) await writer.send(chunk);
        const clientGone = gated.signal.aborted;
        const jsonError = clientGone ? null : jsonOutputError(req, outcome, backend);
        // The terminator waits for the record: [DONE] means the call is stored.
        await record(
          outcome,
          clientGone ? recordedError(null, true) : jsonError ? recordedError(jsonError, false) : null,
        );
        await writer.done();
      },
      (err) => recordFailure(record, err, gated.signal.aborted),
    );
  });

  v1.post("/v1/completions", async (c) => {
    const receivedAt = performance.now();
    const startedAt = Date.now();
    const req = parseCompletionRequest(await readJsonBody(c));
    checkCompletionLimits(req, limits);
    await checkModel(req.model);
    const id = newResponseId("cmpl");
    const created = Math.floor(startedAt / 1000);
    const record = recordOnce({ kind: "completion", id, ...attributionOf(c), startedAt, request: req });

    if (!req.stream) {
      let outcome: CompletionOutcome;
      try {
        outcome = await backend.completion(req, { signal: c.req.raw.signal, receivedAt });
      } catch (err) {
        await recordFailure(record, err, c.req.raw.signal.aborted);
        throw err;
      }
      const problem = outcomeProblem(outcome);
      if (problem) {
        await record(null, recordedError(problem, false));
        throw problem;
      }
      await record(outcome, null);
      return c.json(completionBody(id, created, req, outcome));
    }

    let gated: GatedRun<CompletionDelta, CompletionOutcome>;
    try {
      gated = await startStreaming<CompletionDelta, CompletionOutcome>(c, (signal, onDelta) =>
        backend.completion(req, { signal, onDelta, receivedAt }).then(storable),
      );
    } catch (err) {
      await recordFailure(record, err, c.req.raw.signal.aborted);
      throw err;
    }
    return sseResponse(
      c,
      async (writer) => {
        gated.follow(writer.signal);
        let pending = Promise.resolve();
        gated.open((index, delta) => {
          const chunk = completionChunk(id, created, req, index, delta, null);
          pending = pending.then(() => writer.send(chunk));
        });
        const outcome = await gated.outcome;
        await pending;
        for (const choice of outcome.choices) {
          await writer.send(completionChunk(id, created, req, choice.index, null, choice.finishReason));
        }
        if (req.includeUsage) {
          const usage = completionBody(id, created, req, outcome).usage;
          await writer.send({ ...completionChunk(id, created, req, 0, null, null), choices: [], usage });
        }
        await record(outcome, gated.signal.aborted ? recordedError(null, true) : null);
        await writer.done();
      },
      (err) => recordFailure(record, err, gated.signal.aborted),
    );
  });

  // The Responses API runs as a chat request (see responses-api.ts) and is recorded as one, under
  // its `resp_…` id, so training sees the same transitions whichever API the agent used.
  v1.post("/v1/responses", async (c) => {
    const receivedAt = performance.now();
    const startedAt = Date.now();
    const responses = responsesFor(c);
    const rreq = parseResponsesRequest(await readJsonBody(c), responses);
    const req = rreq.chat;
    checkChatLimits(req, limits);
    await checkModel(req.model);
    const id = newItemId("resp");
    const created = Math.floor(startedAt / 1000);
    const record = recordOnce({ kind: "chat", id, ...attributionOf(c), startedAt, request: req });
    const keep = (body: ReturnType<typeof responseBody>) => {
      if (rreq.store) responses.put(body, rreq.conversation);
    };

    if (!req.stream) {
      const outcome = await chatRecorded(c, req, record, receivedAt).catch(asResponsesError);
      const body = responseBody(id, created, rreq, outcome);
      keep(body);
      return c.json(body);
    }

    const gated = await chatStreamed(c, req, record, receivedAt).catch(asResponsesError);
    const events = new ResponseEventStream(responseSkeleton(id, created, rreq), rreq);
    return sseResponse(
      c,
      async (writer) => {
        gated.follow(writer.signal);
        let pending = Promise.resolve();
        const send = (list: { type: string }[]) => {
          for (const event of list) pending = pending.then(() => writer.send(event, event.type));
        };
        send(events.start());
        gated.open((_index, delta) => send(events.delta(delta)));
        const outcome = await gated.outcome;
        await pending;
        const clientGone = gated.signal.aborted;
        const jsonError = clientGone ? null : jsonOutputError(req, outcome, backend);
        // response.completed is sent only once the call is stored.
        await record(
          outcome,
          clientGone ? recordedError(null, true) : jsonError ? recordedError(jsonError, false) : null,
        );
        if (jsonError) throw jsonError;
        const { events: last, response } = events.finish(outcome);
        for (const event of last) await writer.send(event, event.type);
        if (!clientGone) keep(response);
      },
      (err) => recordFailure(record, err, gated.signal.aborted),
    );
  });

  v1.get("/v1/responses/:responseId", (c) => {
    const body = responsesFor(c).get(c.req.param("responseId"));
    if (!body) throw responseNotFound(c.req.param("responseId"));
    return c.json(body);
  });

  v1.delete("/v1/responses/:responseId", (c) => {
    const responseId = c.req.param("responseId");
    if (!responsesFor(c).delete(responseId)) throw responseNotFound(responseId);
    return c.json({ id: responseId, object: "response", deleted: true });
  });

  const app = new Hono();
  app.onError(openAIErrorHandler);
  app.notFound(openAINotFoundHandler);
  // Before the OpenAI routes, so /v1/messages answers (and fails) in Anthropic's shape.
  const messages = messagesRoutes({
    checkModel,
    checkLimits: (req) => checkChatLimits(req, limits),
    recordOnce,
    chatRecorded,
    chatStreamed,
    maxBodyBytes,
  });
  app.route("/", messages);
  app.route("/rollouts/:rolloutId/attempts/:attemptId", messages);
  app.route("/", v1);
  app.route("/rollouts/:rolloutId/attempts/:attemptId", v1);
  return app;
}
