// Shared set-up for the limits/errors/upstream/auth reliability tests: the real composed app
// (createApp) on a real libSQL store, served over HTTP on a free port, optionally in front of the
// toy OpenAI-compatible upstream server (test/proxy/upstream-server.ts) through UpstreamBackend.

import { serveApp } from "../../src/http/serve.ts";
import type { ChatBackend } from "../../src/proxy/backend.ts";
import { UpstreamBackend, type UpstreamOptions } from "../../src/proxy/upstream.ts";
import { type AppOptions, createApp } from "../../src/server.ts";
import { openStore } from "../../src/store/libsql.ts";
import type { Store } from "../../src/store/types.ts";
import { type RunningUpstream, startUpstreamServer } from "../proxy/upstream-server.ts";

export const TOY_MODEL = "toy-upstream";

export interface AppHarness {
  url: string;
  store: Store;
  upstream: RunningUpstream | null;
  /** Writes the proxy's queued call records now. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export async function startApp(
  options: Omit<AppOptions, "store" | "backend"> & {
    /** Put the toy upstream server behind the proxy. */
    upstream?: boolean;
    backend?: Partial<UpstreamOptions>;
    /** Serve /v1 from this backend instead. */
    chatBackend?: ChatBackend;
  } = {},
): Promise<AppHarness> {
  const { upstream: wantUpstream, backend: backendOptions, chatBackend, ...appOptions } = options;
  const store = await openStore(":memory:");
  const upstream = wantUpstream ? await startUpstreamServer({ model: TOY_MODEL }) : null;
  const backend =
    chatBackend ?? (upstream ? new UpstreamBackend({ baseURL: upstream.baseURL, ...backendOptions }) : null);
  const { app, recorder } = createApp({ store, backend, ...appOptions });
  const server = await serveApp(app, "127.0.0.1", 0);
  return {
    url: server.url,
    store,
    upstream,
    flush: () => recorder.flush(),
    async close() {
      await server.close();
      await recorder.flush();
      await upstream?.close();
      await store.close();
    },
  };
}

/** JSON body of a response (fails the test with the raw text when it is not JSON). */
export async function jsonOf(res: Response): Promise<Record<string, unknown>> {
  const text = await res.text();
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`expected a JSON body, got HTTP ${res.status} ${JSON.stringify(text.slice(0, 200))}`);
  }
}

/** Asserts the OpenAI error shape and returns its fields. */
export async function openAIError(res: Response): Promise<{ message: string; type: string; code: string | null }> {
  const body = await jsonOf(res);
  const error = body.error as { message?: unknown; type?: unknown; code?: unknown; param?: unknown } | undefined;
  if (!error || typeof error.message !== "string" || typeof error.type !== "string" || !("param" in error)) {
    throw new Error(`not an OpenAI error body: ${JSON.stringify(body).slice(0, 300)}`);
  }
  return error as { message: string; type: string; code: string | null };
}
