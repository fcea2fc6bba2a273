// The Fulgur server: one Hono app that serves the OpenAI-compatible proxy (local GPU engine or an
// upstream server), the store's HTTP API, and the dashboard; and the process around it (flags,
// graceful shutdown that flushes pending writes). `bun run server` / `npm run server`.

import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Hono } from "hono";
import { dashboardRoutes } from "./dashboard/routes.ts";
import { type AttemptTokens, checkApiKey, withAttemptTokens } from "./http/auth.ts";
import { guardApp, type Limits, resolveLimits } from "./http/guard.ts";
import { type RunningServer, serveApp } from "./http/serve.ts";
import { loadModel, type Model } from "./model/model.ts";
import type { ChatBackend } from "./proxy/backend.ts";
import { serviceUnavailable } from "./proxy/errors.ts";
import type { RequestLimits } from "./proxy/limits.ts";
import { LocalBackend } from "./proxy/local.ts";
import { flushingBeforeFinish, StoreRecorder, type StoreRecorderOptions } from "./proxy/recorder.ts";
import { proxyRoutes } from "./proxy/routes.ts";
import { UpstreamBackend } from "./proxy/upstream.ts";
import { otlpRoutes } from "./runner/otlp.ts";
import { assertWritable, fileGuard, storeFilePath } from "./store/file-guard.ts";
import { openStore } from "./store/libsql.ts";
import { storeRoutes } from "./store/routes.ts";
import { startSweeper } from "./store/sweeper.ts";
import type { Store } from "./store/types.ts";

export const VERSION = "0.1.0";

export interface AppOptions {
  store: Store;
  /** What answers /v1/*; without one the proxy answers 503 (store and dashboard still work). */
  backend?: ChatBackend | null;
  /**
   * Admin key required on every API route (/v1, /rollouts/…, /api/v1) except /health, the
   * dashboard page and the OpenAPI document; also the secret attempt tokens are derived from.
   * An empty string is refused.
   */
  apiKey?: string;
  /** Serve any model name clients ask for (agents with a hard-coded model id). */
  acceptAnyModel?: boolean;
  /** Largest OpenAI request body, bytes (default 8 MiB); same as `limits.proxyBodyBytes`. */
  maxBodyBytes?: number;
  /** How calls are recorded (default: durable, see src/proxy/recorder.ts). */
  recorder?: StoreRecorderOptions;
  /** Per-request limits checked before generation (choices per request, nesting, token ids). */
  requestLimits?: Partial<RequestLimits>;
  limits?: Partial<Limits>;
}

export interface ComposedApp {
  app: Hono;
  recorder: StoreRecorder;
  /** Issues attempt tokens (null when no API key is set, so no auth is needed). */
  tokens: AttemptTokens | null;
}

/** Builds the app without listening (tests serve it on port 0). */
export function createApp(options: AppOptions): ComposedApp {
  const limits = resolveLimits(options);
  const app = new Hono();
  const recorder = new StoreRecorder(options.store, options.recorder);
  // Key check, body limits and JSON for whatever no route answers (see src/http/guard.ts).
  const tokens = guardApp(app, { apiKey: checkApiKey(options.apiKey, "apiKey"), limits });
  // Unhealthy (503) while call records cannot be written: LLM calls are refused with 503 then too.
  app.get("/health", (c) => {
    const recording = recorder.health();
    return c.json({ ok: recording.ok, name: "fulgur", version: VERSION, recording }, recording.ok ? 200 : 503);
  });
  const flushing = flushingBeforeFinish(options.store, recorder);
  app.route(
    "/",
    storeRoutes(tokens ? withAttemptTokens(flushing, tokens) : flushing, {
      maxBodyBytes: limits.storeBodyBytes,
      maxResponseBytes: limits.maxResponseBytes,
    }),
  );
  app.route("/", dashboardRoutes());
  // OpenTelemetry traces from agents already instrumented with OTel (OTLP/HTTP JSON, /v1/traces).
  app.route("/", otlpRoutes(options.store, { maxBodyBytes: limits.otlpBodyBytes }));
  const backend = options.backend ?? noBackend;
  app.route(
    "/",
    proxyRoutes({
      backend,
      recorder,
      acceptAnyModel: options.acceptAnyModel,
      maxBodyBytes: limits.proxyBodyBytes,
      limits: options.requestLimits,
    }),
  );
  return { app, recorder, tokens };
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
  /** Named PEFT adapters (multi-agent): name → directory, served as model "<model>:<name>". */
  adapters?: Record<string, string>;
  /** Upstream OpenAI-compatible base URL (instead of a local model). */
  upstreamUrl?: string;
  upstreamApiKey?: string;
  /** Longest wait for the upstream's answer, and between chunks of its stream, ms (default 300 000). */
  upstreamTimeoutMs?: number;
  apiKey?: string;
  acceptAnyModel?: boolean;
  maxSlots?: number;
  maxSeqLen?: number;
  /** Store the model's linear weights int8 or int4 (docs/memory.md). */
  quantize?: "int8" | "int4";
  /** Store the embedding and LM head int8 too (docs/memory.md). */
  quantizeHead?: boolean;
  /** "durable" (default): a call is answered once its record is committed; "async": answered first. */
  recordMode?: "durable" | "async";
  /** Most sequences one request may generate (n, or prompts × n); default 128. */
  maxChoices?: number;
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
  const storeFile = storeFilePath(storeUrl);
  // A read-only store file is refused here: SQLite would open it read-only and fail every write.
  if (storeFile) assertWritable(storeFile);
  const store = await openStore(storeUrl, { authToken: options.storeAuthToken });
  const sweeper = startSweeper(store, { intervalMs: 1000 });
  let model: Model | null = null;
  let backend: ChatBackend | null = null;
  try {
    if (options.modelDir && options.upstreamUrl) throw new Error("give either a local model or an upstream, not both");
    if (options.modelDir) {
      const dir = resolve(options.modelDir);
      log(`loading ${dir} onto the GPU`);
      model = await loadModel(dir, {
        maxSlots: options.maxSlots,
        maxSeqLen: options.maxSeqLen,
        quantize: options.quantize,
        quantizeHead: options.quantizeHead,
      });
      if (options.adapterDir) await model.loadAdapter(resolve(options.adapterDir));
      for (const [name, adapterDir] of Object.entries(options.adapters ?? {})) {
        await model.loadAdapter(resolve(adapterDir), 0, name);
      }
      backend = new LocalBackend(model, { modelId: basename(dir) });
      log(`model ${basename(dir)} on ${model.gpu.info.description}`);
    } else if (options.upstreamUrl) {
      backend = new UpstreamBackend({
        baseURL: options.upstreamUrl,
        apiKey: options.upstreamApiKey,
        timeoutMs: options.upstreamTimeoutMs,
      });
    }
  } catch (err) {
    await sweeper.stop();
    await store.close();
    model?.dispose();
    throw err;
  }
  const { app, recorder, tokens } = createApp({
    store,
    backend,
    apiKey: options.apiKey,
    acceptAnyModel: options.acceptAnyModel,
    recorder: {
      mode: options.recordMode,
      guard: storeFile ? fileGuard(storeFile) : undefined,
      deadLetterPath: storeFile ? `${storeFile}.dead-letter.jsonl` : null,
    },
    requestLimits: options.maxChoices ? { maxChoices: options.maxChoices } : undefined,
  });
  const server = await serveApp(app, options.host ?? "127.0.0.1", options.port ?? 8000);
  let closed: Promise<void> | null = null;
  return {
    ...server,
    // In-process users (runners, trainers) finish attempts through this, so call records come
    // first; with an API key, claims carry the attempt token the runner hands its agent.
    store: tokens
      ? withAttemptTokens(flushingBeforeFinish(store, recorder), tokens)
      : flushingBeforeFinish(store, recorder),
    model,
    recorder,
    shutdown() {
      closed ??= (async () => {
        await server.close();
        // Records that cannot be written now are in the dead-letter file and were answered 503.
        await recorder.flush().catch((err) => console.error(`[fulgur] ${String(err)}`));
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
      adapter: { type: "string", multiple: true },
      upstream: { type: "string", default: env.FULGUR_UPSTREAM },
      "upstream-key": { type: "string", default: env.FULGUR_UPSTREAM_KEY },
      "upstream-timeout-ms": { type: "string", default: env.FULGUR_UPSTREAM_TIMEOUT_MS },
      "api-key": { type: "string", default: env.FULGUR_API_KEY },
      "any-model": { type: "boolean", default: false },
      "max-slots": { type: "string" },
      "max-seq-len": { type: "string" },
      quantize: { type: "string", default: env.FULGUR_QUANTIZE },
      "quantize-head": { type: "boolean", default: env.FULGUR_QUANTIZE_HEAD === "1" },
      "max-choices": { type: "string", default: env.FULGUR_MAX_CHOICES },
      "record-mode": { type: "string", default: env.FULGUR_RECORD_MODE ?? "durable" },
      help: { type: "boolean" },
    },
  });
  const int = (v: string | undefined, name: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
    return n;
  };
  const positive = (v: string | undefined, name: string) => {
    const n = int(v, name);
    if (n === 0) throw new Error(`--${name} must be a positive integer, got ${v}`);
    return n;
  };
  return {
    help: values.help,
    host: values.host,
    port: int(values.port, "port"),
    storeUrl: values.store,
    storeAuthToken: values["store-token"],
    modelDir: values.model,
    ...adapterFlags(values.adapter ?? (env.FULGUR_ADAPTER ? [env.FULGUR_ADAPTER] : [])),
    upstreamUrl: values.upstream,
    upstreamApiKey: values["upstream-key"],
    upstreamTimeoutMs: positive(values["upstream-timeout-ms"], "upstream-timeout-ms"),
    // An empty key would silently turn authentication off: refuse it.
    apiKey: checkApiKey(
      values["api-key"],
      argv.some((a) => a === "--api-key" || a.startsWith("--api-key=")) ? "--api-key" : "FULGUR_API_KEY",
    ),
    acceptAnyModel: values["any-model"],
    maxSlots: int(values["max-slots"], "max-slots"),
    maxSeqLen: int(values["max-seq-len"], "max-seq-len"),
    quantize: quantizeFlag(values.quantize),
    quantizeHead: values["quantize-head"],
    maxChoices: int(values["max-choices"], "max-choices"),
    recordMode: recordMode(values["record-mode"]),
  };
}

/** `--adapter DIR` (the default adapter) and `--adapter NAME=DIR` (named ones), repeatable. */
function adapterFlags(values: string[]): { adapterDir?: string; adapters?: Record<string, string> } {
  let adapterDir: string | undefined;
  const adapters: Record<string, string> = {};
  for (const v of values) {
    const named = /^([A-Za-z0-9][A-Za-z0-9._-]{0,63})=(.+)$/.exec(v);
    if (named) {
      if (named[1] in adapters) throw new Error(`--adapter ${named[1]}= is given twice`);
      adapters[named[1]] = named[2];
    } else {
      if (adapterDir !== undefined)
        throw new Error("--adapter DIR (the default adapter) is given twice; name the others NAME=DIR");
      adapterDir = v;
    }
  }
  return { adapterDir, ...(Object.keys(adapters).length > 0 ? { adapters } : {}) };
}

/** `--quantize int8|int4|none` (also the benchmarks' flag); absent or "none": dense weights. */
export function quantizeFlag(v: string | undefined): "int8" | "int4" | undefined {
  if (v === undefined || v === "" || v === "none") return undefined;
  if (v !== "int8" && v !== "int4") throw new Error(`--quantize must be int8, int4 or none, got ${v}`);
  return v;
}

function recordMode(value: string | undefined): "durable" | "async" {
  if (value === undefined || value === "durable" || value === "async") return value ?? "durable";
  throw new Error(`--record-mode must be durable or async, got ${value}`);
}

export const SERVER_USAGE = `Usage: fulgur serve [options]      (bun run server / npm run server -- [options])
  --model DIR          HF model directory to serve on the GPU (env FULGUR_MODEL)
  --adapter DIR        PEFT LoRA adapter to load onto it (env FULGUR_ADAPTER)
  --adapter NAME=DIR   a named adapter, served as model "<model>:NAME" (repeatable; multi-agent)
  --upstream URL       forward to an OpenAI-compatible server instead (vLLM, Ollama, …)
  --upstream-key KEY   API key for the upstream
  --upstream-timeout-ms MS  answer 504 when the upstream is silent this long (default 300000)
  --store URL          libSQL store: file:fulgur.db (default), :memory:, libsql://…, http://…
  --store-token TOKEN  auth token for a remote libSQL store
  --api-key KEY        require "Authorization: Bearer KEY" (or x-api-key) on every API route; agents
                       get attempt-scoped tokens instead (env FULGUR_API_KEY; empty is refused)
  --any-model          accept any model name in requests
  --host HOST          bind address (default 127.0.0.1)   --port PORT (default 8000)
  --max-slots N        sequences decoded at once (default 16)
  --max-seq-len N      longest prompt+completion served (default min(model, 2048))
  --quantize int8|int4 keep the linear weights int8 per output channel or int4 per 32 columns
  --quantize-head      keep the embedding and LM head int8 per vocabulary row (env FULGUR_QUANTIZE_HEAD=1)
  --max-choices N      most sequences per request, n or prompts × n (default 128; more → 400)
  --record-mode MODE   durable (default: answer once the call's record is committed) or async`;

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
