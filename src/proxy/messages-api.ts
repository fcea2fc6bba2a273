// Anthropic's Messages API, `POST /v1/messages`, for agents built on Anthropic SDKs: served by the
// same backend as the OpenAI routes and recorded the same way (one `chat` call per HTTP call,
// exact token ids and logprobs, attributed by the `/rollouts/{r}/attempts/{a}` prefix or headers).
// Owns the route, Anthropic's SSE framing (`event:` + `data:`) and its error shape on this path;
// the wire mapping lives in `messages-wire.ts`.
import type { Context, ErrorHandler } from "hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { ChatDelta, ChatOutcome, ChatRequest, RecordedCall, RecordedError } from "./backend.ts";
import { ProxyError, payloadTooLarge, readJsonBody, toProxyError } from "./errors.ts";
import {
  anthropicErrorBody,
  type MessageStreamEvent,
  MessageStreamer,
  messageBody,
  newMessageId,
  parseMessagesRequest,
} from "./messages-wire.ts";
import { attributionOf, type GatedRun, recordedError } from "./routes.ts";
import { sseResponse } from "./sse.ts";

/** What the Messages route borrows from `proxyRoutes`: the model check, limits, running and recording calls. */
export interface MessagesRouteDeps {
  checkModel(model: string): Promise<void>;
  /** The per-request limits (choices, nesting, model name); throws a 400. */
  checkLimits(req: ChatRequest): void;
  /** Resolves once the call is durably recorded; rejects (503) when it cannot be. */
  recordOnce(
    base: Omit<RecordedCall, "outcome" | "error" | "model" | "adapterVersion" | "timings">,
  ): (outcome: ChatOutcome | null, error: RecordedError | null) => Promise<void>;
  /** A non-streaming call run, checked and recorded as on the chat route (`proxyRoutes`). */
  chatRecorded(
    c: Context,
    req: ChatRequest,
    record: (outcome: ChatOutcome | null, error: RecordedError | null) => Promise<void>,
    receivedAt: number,
  ): Promise<ChatOutcome>;
  /** A streaming call started as on the chat route; a failure before any delta is recorded. */
  chatStreamed(
    c: Context,
    req: ChatRequest,
    record: (outcome: ChatOutcome | null, error: RecordedError | null) => Promise<void>,
    receivedAt: number,
  ): Promise<GatedRun<ChatDelta, ChatOutcome>>;
  maxBodyBytes: number;
}

/** Every error on this route answers in Anthropic's shape with its HTTP status. */
export const anthropicErrorHandler: ErrorHandler = (err, c) => {
  const e = toProxyError(err);
  if (e.status >= 500 && !(err instanceof ProxyError)) {
    console.error("fulgur proxy: unexpected error on /v1/messages", err);
  }
  return c.json(anthropicErrorBody(e), e.status);
};

/**
 * Streams Anthropic SSE events (`event: name` + `data: json`) through the shared `sseResponse`
 * (client-abort detection, backpressure, no per-request state left behind); an error after the
 * headers are sent becomes an `event: error` with Anthropic's body.
 */
function anthropicSse(
  c: Context,
  produce: (send: (events: MessageStreamEvent[]) => Promise<void>, signal: AbortSignal) => Promise<void>,
  onError: (err: unknown) => void,
): Response {
  return sseResponse(
    c,
    async (writer) => {
      const send = async (events: MessageStreamEvent[]) => {
        for (const e of events) await writer.send(e.data, e.event);
      };
      await produce(send, writer.signal);
    },
    onError,
    (err) => `event: error\ndata: ${JSON.stringify(anthropicErrorBody(toProxyError(err)))}\n\n`,
  );
}

/**
 * The `/v1/messages` routes. `proxyRoutes` mounts them at the root and under
 * `/rollouts/:rolloutId/attempts/:attemptId`, ahead of the OpenAI routes.
 */
export function messagesRoutes(deps: MessagesRouteDeps): Hono {
  const app = new Hono();
  app.onError(anthropicErrorHandler);
  app.use(
    "/v1/messages",
    bodyLimit({
      maxSize: deps.maxBodyBytes,
      onError: (c) => c.json(anthropicErrorBody(payloadTooLarge(deps.maxBodyBytes)), 413),
    }),
  );

  app.post("/v1/messages", async (c) => {
    const receivedAt = performance.now();
    const startedAt = Date.now();
    const req: ChatRequest = parseMessagesRequest(await readJsonBody(c));
    deps.checkLimits(req);
    await deps.checkModel(req.model);
    const id = newMessageId();
    const record = deps.recordOnce({ kind: "chat", id, ...attributionOf(c), startedAt, request: req });

    if (!req.stream) {
      // Answered only once the call is stored (durable group commit).
      const outcome = await deps.chatRecorded(c, req, record, receivedAt);
      return c.json(messageBody(id, req, outcome));
    }

    const gated = await deps.chatStreamed(c, req, record, receivedAt);
    const streamer = new MessageStreamer(id, req.model);
    return anthropicSse(
      c,
      async (send, signal) => {
        gated.follow(signal);
        await send(streamer.start());
        let pending = Promise.resolve();
        gated.open((_index, delta) => {
          const events = streamer.delta(delta);
          pending = pending.then(() => send(events));
        });
        const outcome = await gated.outcome;
        await pending;
        // message_stop is sent only once the call is stored.
        await record(outcome, gated.signal.aborted ? recordedError(null, true) : null);
        await send(streamer.finish(outcome));
      },
      (err) => void record(null, recordedError(err, gated.signal.aborted)).catch(() => {}),
    );
  });
  return app;
}
