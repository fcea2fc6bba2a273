// The Fulgur server: one Hono app that serves the OpenAI-compatible proxy (local GPU engine or an
// upstream server), the store's HTTP API, and the dashboard; and the process around it (flags,
// graceful shutdown that flushes pending writes). `bun run server` / `npm run server`.

import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Hono } from "hono";
import { dashboardRoutes } from "./dashboard/routes.ts";
import { type RunningServer, serveApp } from "./http/serve.ts";
import { loadModel, type Model } from "./model/model.ts";
import type { ChatBackend } from "./proxy/backend.ts";
import { serviceUnavailable, unauthorized } from "./proxy/errors.ts";
import { LocalBackend } from "./proxy/local.ts";
import { anthropicErrorBody } from "./proxy/messages-wire.ts";
import { flushingBeforeFinish, StoreRecorder } from "./proxy/recorder.ts";
import { proxyRoutes } from "./proxy/routes.ts";
import { UpstreamBackend } from "./proxy/upstream.ts";
import { otlpRoutes } from "./runner/otlp.ts";
import { openStore } from "./store/libsql.ts";
import { storeRoutes } from "./store/routes.ts";
import { startSweeper } from "./store/sweeper.ts";
import type { Store } from "./store/types.ts";

export const VERSION = "0.1.0";

export interface AppOptions {
  store: Store;
  /** What answers /v1/*; without one the proxy answers 503 (store and dashboard still work). */
  backend?: ChatBackend | null;
  /** Bearer key required on every route except /health (and the dashboard page itself). */
  apiKey?: string;
  /** Serve any model name clients ask for (agents with a hard-coded model id). */
  acceptAnyModel?: boolean;
  maxBodyBytes?: number;
}

export interface ComposedApp {
  app: Hono;
  recorder: StoreRecorder;
}

/** Builds the app without listening (tests serve it on port 0). */
export function createApp(options: AppOptions): ComposedApp {
  const app = new Hono();
  const recorder = new StoreRecorder(options.store);
  app.get("/health", (c) => c.json({ ok: true, name: "fulgur", version: VERSION }));
  if (options.apiKey) {
    const key = options.apiKey;
    // The proxy's routes speak OpenAI's error shape; the store routes check the key themselves.
    app.use("/v1/*", bearer(key));
    app.use("/rollouts/*", bearer(key));
  }
  app.route("/", storeRoutes(flushingBeforeFinish(options.store, recorder), { apiKey: options.apiKey }));
  app.route("/", dashboardRoutes());
  // OpenTelemetry traces from agents already instrumented with OTel (OTLP/HTTP JSON, /v1/traces).
  app.route("/", otlpRoutes(options.store));
  const backend = options.backend ?? noBackend;
  app.route(
    "/",
    proxyRoutes({ backend, recorder, acceptAnyModel: options.acceptAnyModel, maxBodyBytes: options.maxBodyBytes }),
  );
  return { app, recorder };
}

function bearer(key: string) {
  return async (c: import("hono").Context, next: () => Promise<void>) => {
    const given = (c.req.header("authorization") ?? "").replace(/^Bearer\s+/i, "");
    // Anthropic SDKs send the key as `x-api-key`.
    if (given !== key && c.req.header("x-api-key") !== key) {
      const err = unauthorized();
      const anthropic = new URL(c.req.url).pathname.endsWith("/v1/messages");
      return c.json(anthropic ? anthropicErrorBody(err) : err.toBody(), 401);
    }
    await next();
  };
}

const noBackend: ChatBackend = {
  constrainedJson: false,
  async listModels() {
    return [];
  },
  async chat() {
    throw serviceUnavailable("no model is loaded: start the server with --model DIR or --upstream URL");
  },
  async completion() {
    throw serviceUnavailable("no model is loaded: start the server with --model DIR or --upstream URL");
  },
};

export interface ServerOptions {
  host?: string;
  port?: number;
  /** libSQL URL: file:path (default file:fulgur.db), :memory:, libsql://…, http://… */
  storeUrl?: string;
  storeAuthToken?: string;
  /** Local model directory (HF format) served on the GPU. */
  modelDir?: string;
  /** PEFT adapter directory to load onto the model. */
  adapterDir?: string;
  /** Upstream OpenAI-compatible base URL (instead of a local model). */
  upstreamUrl?: string;
  upstreamApiKey?: string;
  apiKey?: string;
  acceptAnyModel?: boolean;
  maxSlots?: number;
  maxSeqLen?: number;
  log?: (line: string) => void;
}

export interface FulgurServer extends RunningServer {
  store: Store;
  model: Model | null;
  /** Where proxied calls are queued for the store; `recorder.flush()` writes them now. */
  recorder: StoreRecorder;
  /** Stops listening, writes every pending record, frees the GPU and closes the store. */
  shutdown(): Promise<void>;
}

/** Opens the store, loads the model (if any) and starts listening. */
export async function startServer(options: ServerOptions = {}): Promise<FulgurServer> {
  const log = options.log ?? (() => {});
  const storeUrl = options.storeUrl ?? "file:fulgur.db";
  const store = await openStore(storeUrl, { authToken: options.storeAuthToken });
  const sweeper = startSweeper(store, { intervalMs: 1000 });
  let model: Model | null = null;
  let backend: ChatBackend | null = null;
  try {
    if (options.modelDir && options.upstreamUrl) throw new Error("give either a local model or an upstream, not both");
    if (options.modelDir) {
      const dir = resolve(options.modelDir);
      log(`loading ${dir} onto the GPU`);
      model = await loadModel(dir, { maxSlots: options.maxSlots, maxSeqLen: options.maxSeqLen });
      if (options.adapterDir) await model.loadAdapter(resolve(options.adapterDir));
      backend = new LocalBackend(model, { modelId: basename(dir) });
      log(`model ${basename(dir)} on ${model.gpu.info.description}`);
    } else if (options.upstreamUrl) {
      backend = new UpstreamBackend({ baseURL: options.upstreamUrl, apiKey: options.upstreamApiKey });
    }
  } catch (err) {
    await sweeper.stop();
    await store.close();
    model?.dispose();
    throw err;
  }
  const { app, recorder } = createApp({
    store,
    backend,
    apiKey: options.apiKey,
    acceptAnyModel: options.acceptAnyModel,
  });
  const server = await serveApp(app, options.host ?? "127.0.0.1", options.port ?? 8000);
  let closed: Promise<void> | null = null;
  return {
    ...server,
    // In-process users (runners, trainers) finish attempts through this, so call records come first.
    store: flushingBeforeFinish(store, recorder),
    model,
    recorder,
    shutdown() {
      closed ??= (async () => {
        await server.close();
        await recorder.flush();
        await sweeper.stop();
        await store.close();
        model?.dispose();
      })();
      return closed;
    },
  };
}

/** Parses `fulgur serve` flags (also the server entry point's). */
export function parseServerArgs(argv: string[]): ServerOptions & { help?: boolean } {
  const env = process.env;
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string", default: env.FULGUR_HOST ?? "127.0.0.1" },
      port: { type: "string", default: env.FULGUR_PORT ?? "8000" },
      store: { type: "string", default: env.FULGUR_STORE ?? "file:fulgur.db" },
      "store-token": { type: "string", default: env.FULGUR_STORE_TOKEN },
      model: { type: "string", default: env.FULGUR_MODEL },
      adapter: { type: "string", default: env.FULGUR_ADAPTER },
      upstream: { type: "string", default: env.FULGUR_UPSTREAM },
      "upstream-key": { type: "string", default: env.FULGUR_UPSTREAM_KEY },
      "api-key": { type: "string", default: env.FULGUR_API_KEY },
      "any-model": { type: "boolean", default: false },
      "max-slots": { type: "string" },
      "max-seq-len": { type: "string" },
      help: { type: "boolean" },
    },
  });
  const int = (v: string | undefined, name: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
    return n;
  };
  return {
    help: values.help,
    host: values.host,
    port: int(values.port, "port"),
    storeUrl: values.store,
    storeAuthToken: values["store-token"],
    modelDir: values.model,
    adapterDir: values.adapter,
    upstreamUrl: values.upstream,
    upstreamApiKey: values["upstream-key"],
    apiKey: values["api-key"],
    acceptAnyModel: values["any-model"],
    maxSlots: int(values["max-slots"], "max-slots"),
    maxSeqLen: int(values["max-seq-len"], "max-seq-len"),
  };
}

export const SERVER_USAGE = `Usage: fulgur serve [options]      (bun run server / npm run server -- [options])
  --model DIR          HF model directory to serve on the GPU (env FULGUR_MODEL)
  --adapter DIR        PEFT LoRA adapter to load onto it (env FULGUR_ADAPTER)
  --upstream URL       forward to an OpenAI-compatible server instead (vLLM, Ollama, …)
  --upstream-key KEY   API key for the upstream
  --store URL          libSQL store: file:fulgur.db (default), :memory:, libsql://…, http://…
  --store-token TOKEN  auth token for a remote libSQL store
  --api-key KEY        require "Authorization: Bearer KEY" on every route (env FULGUR_API_KEY)
  --any-model          accept any model name in requests
  --host HOST          bind address (default 127.0.0.1)   --port PORT (default 8000)
  --max-slots N        sequences decoded at once (default 16)
  --max-seq-len N      longest prompt+completion served (default min(model, 2048))`;

/** Runs the server until SIGINT/SIGTERM. */
export async function runServer(argv: string[]): Promise<number> {
  const options = parseServerArgs(argv);
  if (options.help) {
    console.log(SERVER_USAGE);
    return 0;
  }
  const server = await startServer({ ...options, log: (l) => console.log(`[fulgur] ${l}`) });
  const base = server.url;
  console.log(`Fulgur ${VERSION} listening on ${base}`);
  console.log(`  OpenAI API:  ${base}/v1  (attributed: ${base}/rollouts/<rollout>/attempts/<attempt>/v1)`);
  console.log(`  store API:   ${base}/api/v1  (OpenAPI: ${base}/api/v1/openapi.json)`);
  console.log(`  dashboard:   ${base}/`);
  console.log(`  health:      ${base}/health`);
  if (!server.model && !options.upstreamUrl)
    console.log("  (no model loaded: /v1 answers 503; pass --model DIR or --upstream URL)");
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      console.log(`\n${signal}: flushing records and shutting down`);
      server.shutdown().then(done);
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
  return 0;
}

const entry = process.argv[1] ?? "";
if (entry.endsWith("/src/server.ts") || entry.endsWith("\\src\\server.ts")) {
  runServer(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      console.error(`fulgur server: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
