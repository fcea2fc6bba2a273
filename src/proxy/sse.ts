// Server-Sent Events the way OpenAI streams: `data: {json}\n\n` per chunk, `data: [DONE]\n\n` at
// the end, and an OpenAI-shaped `data: {"error": ...}` event when generation fails after the
// headers are gone (the SDKs raise it as an APIError). Owns client-abort detection: the signal it
// hands out fires when the client disconnects, so the backend stops generating.
import type { Context } from "hono";
import { toProxyError } from "./errors.ts";

const encoder = new TextEncoder();

export interface SseWriter {
  /** Fires when the client disconnects (or the request is otherwise aborted). */
  readonly signal: AbortSignal;
  /**
   * Sends one `data:` event with `value` as JSON, preceded by `event: <name>` when a name is given
   * (the Responses API names its events). A no-op once the client is gone.
   */
  send(value: unknown, event?: string): Promise<void>;
  /** Sends the `[DONE]` terminator. */
  done(): Promise<void>;
}

/**
 * Starts an SSE response and runs `produce` to fill it. An error thrown by `produce` is sent as
 * an OpenAI error event (the status is already 200) and the stream is closed; `onError` sees it
 * first. The returned Response goes straight back from the Hono handler.
 */
export function sseResponse(
  c: Context,
  produce: (writer: SseWriter) => Promise<void>,
  onError?: (err: unknown) => void | Promise<void>,
  /** The error event's text (default: OpenAI's `data: {"error": …}`); Anthropic's differs. */
  errorEvent: (err: unknown) => string = (err) => `data: ${JSON.stringify(toProxyError(err).toBody())}\n\n`,
): Response {
  const abort = new AbortController();
  const requestSignal = c.req.raw.signal;
  const onRequestAbort = () => abort.abort(new Error("client disconnected"));
  if (requestSignal.aborted) onRequestAbort();
  else requestSignal.addEventListener("abort", onRequestAbort, { once: true });

  // A plain ReadableStream rather than hono's stream() helper: that helper keys the request's
  // Context by its response stream in a module-level WeakMap, and on Node 20 a finished response
  // stream can stay reachable from the runtime, which then pinned every streamed request's
  // Context, request, response and generation state (~35 KB per call, never freed).
  let controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  let wantMore: (() => void) | null = null;
  const body = new ReadableStream<Uint8Array>(
    {
      start(ctl) {
        controller = ctl;
      },
      pull() {
        wantMore?.();
        wantMore = null;
      },
      // The response body being cancelled is the other way a disconnect shows up.
      cancel() {
        controller = null;
        onRequestAbort();
        wantMore?.();
        wantMore = null;
      },
    },
    { highWaterMark: 16 },
  );
  const write = async (text: string) => {
    const ctl = controller;
    if (abort.signal.aborted || !ctl) return;
    ctl.enqueue(encoder.encode(text));
    // Backpressure: a slow reader makes the producer wait instead of queueing without bound.
    if ((ctl.desiredSize ?? 1) <= 0) {
      await new Promise<void>((resolve) => {
        wantMore = resolve;
        abort.signal.addEventListener("abort", () => resolve(), { once: true });
      });
    }
  };
  const writer: SseWriter = {
    signal: abort.signal,
    send: (value, event) => write(`${event ? `event: ${event}\n` : ""}data: ${JSON.stringify(value)}\n\n`),
    done: () => write("data: [DONE]\n\n"),
  };
  void (async () => {
    try {
      await produce(writer);
    } catch (err) {
      await Promise.resolve(onError?.(err)).catch(() => {});
      await write(errorEvent(err));
    } finally {
      requestSignal.removeEventListener("abort", onRequestAbort);
      const ctl = controller as ReadableStreamDefaultController<Uint8Array> | null;
      controller = null;
      wantMore = null;
      try {
        ctl?.close();
      } catch {
        // already closed or errored by a cancel
      }
    }
  })();
  return new Response(body, {
    status: 200,
    headers: {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache",
      Connection: "keep-alive",
      "X-Accel-Buffering": "no",
    },
  });
}

/**
 * Reads an SSE body (an upstream's stream) into the `data:` payloads of its events, in order.
 * Multi-line data is joined with "\n"; comments and other fields are skipped. Ends at `[DONE]` or
 * when the body ends.
 */
export async function* readSseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = "";
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let newline = buffer.search(/\r\n|\r|\n/);
      while (newline >= 0) {
        // A lone "\r" at the end may be the first half of "\r\n": wait for the next read.
        if (!done && newline === buffer.length - 1 && buffer.endsWith("\r")) break;
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          if (data.length > 0) {
            const payload = data.join("\n");
            data = [];
            if (payload === "[DONE]") return;
            yield payload;
          }
        } else if (line.startsWith("data:")) {
          data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        }
        newline = buffer.search(/\r\n|\r|\n/);
      }
      if (done) {
        if (buffer.startsWith("data:")) data.push(buffer.slice(buffer.startsWith("data: ") ? 6 : 5));
        if (data.length > 0 && data.join("\n") !== "[DONE]") yield data.join("\n");
        return;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
