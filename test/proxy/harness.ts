// Test harness for the proxy: the toy upstream server, the proxy routes in front of it through
// `UpstreamBackend`, both served over real HTTP on free ports, an in-memory recorder that keeps
// every recorded call, and an official `openai` SDK client pointed at the proxy.
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import OpenAI from "openai";
import type { RecordedCall, Recorder } from "../../src/proxy/backend.ts";
import { type ProxyRoutesOptions, proxyRoutes } from "../../src/proxy/routes.ts";
import { UpstreamBackend, type UpstreamOptions } from "../../src/proxy/upstream.ts";
import { type RunningUpstream, startUpstreamServer, type UpstreamServerOptions } from "./upstream-server.ts";

/** A Recorder that keeps calls in memory, in arrival order. */
export class MemoryRecorder implements Recorder {
  readonly calls: RecordedCall[] = [];
  record(call: RecordedCall): void {
    this.calls.push(call);
  }
}

export interface ProxyHarness {
  /** Proxy root URL, e.g. http://127.0.0.1:1234 */
  url: string;
  upstream: RunningUpstream;
  recorder: MemoryRecorder;
  /** SDK client on `<url>/v1`. */
  client: OpenAI;
  /** SDK client on an arbitrary base path of the proxy. */
  clientAt(path: string, headers?: Record<string, string>): OpenAI;
  close(): Promise<void>;
}

export const UPSTREAM_MODEL = "toy-upstream";

/** Waits until `predicate` holds (recording happens right after the response is written). */
export async function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function startProxy(
  options: {
    upstream?: UpstreamServerOptions;
    backend?: Partial<UpstreamOptions>;
    routes?: Partial<Omit<ProxyRoutesOptions, "backend" | "recorder">>;
  } = {},
): Promise<ProxyHarness> {
  const upstream = await startUpstreamServer({ model: UPSTREAM_MODEL, ...options.upstream });
  const recorder = new MemoryRecorder();
  const backend = new UpstreamBackend({ baseURL: upstream.baseURL, ...options.backend });
  const app = proxyRoutes({ backend, recorder, ...options.routes });
  const { server, port } = await new Promise<{ server: ReturnType<typeof serve>; port: number }>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) =>
      resolve({ server: s, port: info.port }),
    );
  });
  const url = `http://127.0.0.1:${port}`;
  const clientAt = (path: string, headers: Record<string, string> = {}) =>
    new OpenAI({ apiKey: "test-key", baseURL: `${url}${path}`, maxRetries: 0, defaultHeaders: headers });
  return {
    url,
    upstream,
    recorder,
    client: clientAt("/v1"),
    clientAt,
    close: async () => {
      await new Promise<void>((done) => {
        server.close(() => done());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await upstream.close();
    },
  };
}
