// Proxy overhead: latency the proxy and its recording add to an LLM call, and how many recorded
// calls per second it sustains. The backend is the deterministic upstream stub from the proxy
// tests; the stub, Fulgur's proxy (createApp + UpstreamBackend + a real libSQL file store,
// recording on), the same proxy with recording off, and the openai SDK clients each run in their
// own process on loopback (this file re-runs itself with `--role`). Sequential calls alternate
// between direct, unrecorded and recorded so all three see the same machine load; then 64
// concurrent clients drive each path, and the bench checks the store holds exactly one transition
// per call. Then (skip with --no-engine) the local GPU engine with the tiny model, in process:
// model.generateOne vs the same greedy completion through the proxy.
//   npx tsx bench/proxy.ts [--quick] [--no-engine]

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Hono } from "hono";
import OpenAI from "openai";
import { serveApp } from "../src/http/serve.ts";
import { loadModel } from "../src/model/model.ts";
import { writeTinyModel } from "../src/model/tiny.ts";
import type { RecordedCall, Recorder } from "../src/proxy/backend.ts";
import { LocalBackend } from "../src/proxy/local.ts";
import { proxyRoutes } from "../src/proxy/routes.ts";
import { UpstreamBackend } from "../src/proxy/upstream.ts";
import { createApp } from "../src/server.ts";
import { openStore, type Store } from "../src/store/index.ts";
import { startUpstreamServer } from "../test/proxy/upstream-server.ts";
import { ENGINE_MODELS } from "./engine.ts";
import { emit, percentile } from "./lib.ts";

const MODEL = "toy-upstream";
const MESSAGES: OpenAI.Chat.ChatCompletionMessageParam[] = [
  { role: "system", content: "You are a careful assistant." },
  { role: "user", content: "What is the capital of France? Answer in one short sentence please." },
];

function sdk(baseURL: string): OpenAI {
  return new OpenAI({ apiKey: "bench", baseURL, maxRetries: 0 });
}

async function timed(call: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await call();
  return performance.now() - t0;
}

function summary(ms: number[]) {
  return { median: percentile(ms, 50), p99: percentile(ms, 99), mean: ms.reduce((a, b) => a + b, 0) / ms.length };
}

/** Counts calls and keeps nothing: the proxy with recording off, to split proxying from recording. */
class CountingRecorder implements Recorder {
  calls = 0;
  record(_call: RecordedCall): void {
    this.calls++;
  }
}

/** Runs `total` calls spread over `clients`, each client waiting for its previous answer. */
async function concurrentCalls(clients: OpenAI[], total: number, call: (c: OpenAI) => Promise<unknown>) {
  let next = 0;
  const latencies: number[] = [];
  await Promise.all(
    clients.map(async (client) => {
      while (next < total) {
        next++;
        latencies.push(await timed(() => call(client)));
      }
    }),
  );
  return latencies;
}

/** A rollout claimed by the bench, so recorded calls are attributed like an agent's. */
async function claimedAttempt(store: Store): Promise<{ rolloutId: string; attemptId: string }> {
  await store.enqueueRollout({ input: { task: "proxy-bench" } });
  const claim = await store.claimRollout({ workerId: "proxy-bench" });
  if (!claim) throw new Error("proxy bench: expected a rollout to claim");
  return { rolloutId: claim.rollout.id, attemptId: claim.attempt.id };
}

/** A server started in its own process by re-running this file with `--role …`. */
interface ChildServer {
  url: string;
  /** SIGTERM, then waits for the child to write what it holds and exit. */
  stop(): Promise<void>;
}

function spawnRole(args: string[]): Promise<ChildServer> {
  const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--role", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split("\n")[0];
      if (out.includes("\n"))
        resolve({
          url: (JSON.parse(line) as { url: string }).url,
          stop: async () => {
            child.kill("SIGTERM");
            const code = await exited;
            if (code !== 0) throw new Error(`proxy bench: server ${args[0]} exited with ${code}`);
          },
        });
    });
    exited.then((code) => reject(new Error(`proxy bench: server ${args[0]} exited with ${code} before serving`)));
  });
}

/**
 * The app plus GET /bench/cpu (this process's CPU time, ms): CPU per call does not depend on how
 * many other processes share the cores, unlike calls/s on a busy machine.
 */
function withCpuRoute(app: Hono): Hono {
  const outer = new Hono();
  outer.get("/bench/cpu", (c) => {
    const { user, system } = process.cpuUsage();
    return c.json({ ms: (user + system) / 1000 });
  });
  outer.route("/", app);
  return outer;
}

async function cpuMs(server: ChildServer): Promise<number> {
  const res = await fetch(`${server.url}/bench/cpu`);
  return ((await res.json()) as { ms: number }).ms;
}

/** Child-process side: serve the upstream stub or the proxy until SIGTERM, then flush and exit. */
async function serveRole(args: string[]): Promise<void> {
  const [role, upstreamURL, storeFile] = args;
  let close: () => Promise<void>;
  let url: string;
  if (role === "upstream") {
    const upstream = await startUpstreamServer({ model: MODEL });
    url = upstream.baseURL;
    close = () => upstream.close();
  } else if (role === "proxy" || role === "proxy-async" || role === "proxy-unrecorded") {
    const backend = new UpstreamBackend({ baseURL: upstreamURL });
    if (role !== "proxy-unrecorded") {
      const store = await openStore(`file:${storeFile}`);
      // "proxy": durable recording (answer after commit, the default); "proxy-async": the old mode.
      const { app, recorder } = createApp({
        store,
        backend,
        recorder: { mode: role === "proxy" ? "durable" : "async" },
      });
      const server = await serveApp(withCpuRoute(app), "127.0.0.1", 0);
      url = server.url;
      close = async () => {
        await server.close();
        await recorder.flush();
        await store.close();
      };
    } else {
      const bare = proxyRoutes({ backend, recorder: new CountingRecorder() });
      const server = await serveApp(withCpuRoute(bare), "127.0.0.1", 0);
      url = server.url;
      close = () => server.close();
    }
  } else {
    throw new Error(`proxy bench: unknown role '${role}' (expected upstream, proxy, proxy-async or proxy-unrecorded)`);
  }
  process.once("SIGTERM", () => {
    close().then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  });
  process.stdout.write(`${JSON.stringify({ url })}\n`);
}

/**
 * Latency (direct vs proxied, interleaved) and recorded-call throughput against the upstream stub.
 * The stub, the proxy and the clients each run in their own process, as they would in use: on
 * one event loop the clients' own JSON work would be billed to the proxy.
 */
export async function benchProxyUpstream(options: { quick?: boolean } = {}): Promise<void> {
  const calls = options.quick ? 200 : 1000;
  const concurrency = 64;
  const throughputCalls = options.quick ? 1024 : 4096;
  const dir = mkdtempSync(join(tmpdir(), "fulgur-bench-proxy-"));
  const storeFile = join(dir, "store.db");
  const store = await openStore(`file:${storeFile}`);
  const upstream = await spawnRole(["upstream"]);
  const proxy = await spawnRole(["proxy", upstream.url, storeFile]);
  const bare = await spawnRole(["proxy-unrecorded", upstream.url]);
  // Same proxy, recording in the old async mode (answers before the commit), own store file.
  const asyncProxy = await spawnRole(["proxy-async", upstream.url, join(dir, "async.db")]);
  try {
    const latencyAttempt = await claimedAttempt(store);
    const target = await claimedAttempt(store);
    const direct = sdk(upstream.url);
    const unrecorded = sdk(`${bare.url}/v1`);
    const viaProxy = sdk(`${proxy.url}/rollouts/${latencyAttempt.rolloutId}/attempts/${latencyAttempt.attemptId}/v1`);
    const viaAsync = sdk(`${asyncProxy.url}/v1`);
    const request = { model: MODEL, messages: MESSAGES, max_tokens: 16, temperature: 0 };
    // Warm up connections, JIT and the store's statement cache on every path.
    for (let i = 0; i < 50; i++) {
      await direct.chat.completions.create(request);
      await unrecorded.chat.completions.create(request);
      await viaProxy.chat.completions.create(request);
      await viaAsync.chat.completions.create(request);
    }
    const directMs: number[] = [];
    const unrecordedMs: number[] = [];
    const proxyMs: number[] = [];
    const asyncMs: number[] = [];
    for (let i = 0; i < calls; i++) {
      directMs.push(await timed(() => direct.chat.completions.create(request)));
      unrecordedMs.push(await timed(() => unrecorded.chat.completions.create(request)));
      proxyMs.push(await timed(() => viaProxy.chat.completions.create(request)));
      asyncMs.push(await timed(() => viaAsync.chat.completions.create(request)));
    }
    const a = summary(asyncMs);
    const d = summary(directMs);
    const u = summary(unrecordedMs);
    const p = summary(proxyMs);
    const common = { bench: "proxy", backend: "upstream-stub", calls, sequential: true };
    emit({ ...common, metric: "direct_latency_median", value: d.median, unit: "ms", p99: d.p99 });
    emit({ ...common, metric: "proxy_no_recording_latency_median", value: u.median, unit: "ms", p99: u.p99 });
    emit({ ...common, metric: "proxy_latency_median", value: p.median, unit: "ms", p99: p.p99 });
    emit({ ...common, metric: "added_latency_median", value: p.median - d.median, unit: "ms", goal: "<= 1" });
    emit({ ...common, metric: "added_latency_p99", value: p.p99 - d.p99, unit: "ms" });
    emit({ ...common, metric: "added_latency_no_recording_median", value: u.median - d.median, unit: "ms" });
    emit({ ...common, metric: "proxy_over_direct_median", value: p.median / d.median, unit: "x" });
    emit({ ...common, metric: "proxy_async_recording_latency_median", value: a.median, unit: "ms", p99: a.p99 });
    emit({
      ...common,
      metric: "durable_minus_async_latency_median",
      value: p.median - a.median,
      unit: "ms",
      p99: p.p99 - a.p99,
      note: "what waiting for the commit before answering costs a lone caller",
    });

    // Throughput: many concurrent clients, each with its own SDK client (own connection pool).
    const tp = { bench: "proxy", backend: "upstream-stub", concurrency, calls: throughputCalls };
    const base = `${proxy.url}/rollouts/${target.rolloutId}/attempts/${target.attemptId}/v1`;
    const ask = (c: OpenAI) => c.chat.completions.create(request);
    const proxyCpu0 = await cpuMs(proxy);
    const t0 = performance.now();
    const latencies = await concurrentCalls(
      Array.from({ length: concurrency }, () => sdk(base)),
      throughputCalls,
      ask,
    );
    const answeredMs = performance.now() - t0;
    // The recorder writes at least every 20 ms: poll the store until every call is in it.
    let stored = 0;
    const deadline = performance.now() + 60_000;
    while (performance.now() < deadline) {
      stored = (await store.getTransitions({ attemptId: target.attemptId, limit: 100_000 })).length;
      if (stored >= throughputCalls) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const recordedMs = performance.now() - t0;
    const proxyCpuPerCall = ((await cpuMs(proxy)) - proxyCpu0) / throughputCalls;
    if (stored !== throughputCalls)
      throw new Error(`proxy bench: ${throughputCalls} calls made but ${stored} transitions in the store`);
    emit({ ...tp, metric: "transitions_in_store", value: stored, unit: "count", expected: throughputCalls });
    emit({
      ...tp,
      metric: "recorded_calls_per_s",
      value: throughputCalls / (recordedMs / 1000),
      unit: "calls/s",
      goal: ">= 2000",
      note: "clock stops when the last call is in the store",
    });
    const durableRate = throughputCalls / (answeredMs / 1000);
    emit({ ...tp, metric: "answered_calls_per_s", value: durableRate, unit: "calls/s", recording: "durable" });
    emit({ ...tp, metric: "concurrent_latency_median", value: percentile(latencies, 50), unit: "ms" });
    emit({ ...tp, metric: "concurrent_latency_p99", value: percentile(latencies, 99), unit: "ms" });
    emit({
      ...tp,
      metric: "proxy_cpu_per_call",
      value: proxyCpuPerCall,
      unit: "ms",
      note: "proxy process, recording on",
    });
    emit({
      ...tp,
      metric: "proxy_calls_per_cpu_second",
      value: 1000 / proxyCpuPerCall,
      unit: "calls/s",
      note: "ceiling for one core fully given to the proxy (Node is one thread)",
    });

    // The same load with async recording (answered before the commit: the old mode).
    const tAsync = performance.now();
    const asyncLatencies = await concurrentCalls(
      Array.from({ length: concurrency }, () => sdk(`${asyncProxy.url}/v1`)),
      throughputCalls,
      ask,
    );
    const asyncRate = throughputCalls / ((performance.now() - tAsync) / 1000);
    emit({ ...tp, metric: "answered_calls_per_s", value: asyncRate, unit: "calls/s", recording: "async" });
    emit({
      ...tp,
      metric: "concurrent_latency_median",
      value: percentile(asyncLatencies, 50),
      unit: "ms",
      recording: "async",
    });
    emit({ ...tp, metric: "durable_over_async_calls_per_s", value: durableRate / asyncRate, unit: "x" });
    emit({
      ...tp,
      metric: "durable_minus_async_concurrent_latency_median",
      value: percentile(latencies, 50) - percentile(asyncLatencies, 50),
      unit: "ms",
    });

    // The same load through the proxy with recording off, and straight to the stub.
    const bareCpu0 = await cpuMs(bare);
    const t1 = performance.now();
    await concurrentCalls(
      Array.from({ length: concurrency }, () => sdk(`${bare.url}/v1`)),
      throughputCalls,
      ask,
    );
    const bareRate = throughputCalls / ((performance.now() - t1) / 1000);
    emit({ ...tp, metric: "proxy_no_recording_calls_per_s", value: bareRate, unit: "calls/s" });
    const bareCpuPerCall = ((await cpuMs(bare)) - bareCpu0) / throughputCalls;
    emit({ ...tp, metric: "proxy_no_recording_cpu_per_call", value: bareCpuPerCall, unit: "ms" });
    emit({ ...tp, metric: "recording_cpu_per_call", value: proxyCpuPerCall - bareCpuPerCall, unit: "ms" });
    const t2 = performance.now();
    await concurrentCalls(
      Array.from({ length: concurrency }, () => sdk(upstream.url)),
      throughputCalls,
      ask,
    );
    const directRate = throughputCalls / ((performance.now() - t2) / 1000);
    emit({ ...tp, metric: "direct_calls_per_s", value: directRate, unit: "calls/s" });
  } finally {
    await asyncProxy.stop();
    await bare.stop();
    await proxy.stop();
    await upstream.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Local GPU engine, tiny model: generateOne directly vs the same greedy completion via the proxy. */
export async function benchProxyEngine(options: { quick?: boolean } = {}): Promise<void> {
  const calls = options.quick ? 10 : 30;
  const maxTokens = 16;
  const dir = mkdtempSync(join(tmpdir(), "fulgur-bench-proxy-engine-"));
  await writeTinyModel(dir, ENGINE_MODELS.tiny);
  const model = await loadModel(dir, { maxSlots: 8, maxSeqLen: 256 });
  const store = await openStore(`file:${join(dir, "store.db")}`);
  const { app, recorder } = createApp({ store, backend: new LocalBackend(model, { modelId: "tiny" }) });
  const proxy = await serveApp(app, "127.0.0.1", 0);
  try {
    const client = sdk(`${proxy.url}/v1`);
    const prompt = Array.from({ length: 32 }, (_, t) => (t * 31 + 7) % model.config.vocabSize);
    const direct = () => model.generateOne(prompt, { temperature: 0, maxTokens });
    const proxied = () => client.completions.create({ model: "tiny", prompt, max_tokens: maxTokens, temperature: 0 });
    for (let i = 0; i < 3; i++) {
      await direct();
      await proxied();
    }
    const generated = (await direct()).tokens.length;
    const directMs: number[] = [];
    const proxyMs: number[] = [];
    for (let i = 0; i < calls; i++) {
      directMs.push(await timed(direct));
      proxyMs.push(await timed(proxied));
    }
    const d = summary(directMs);
    const p = summary(proxyMs);
    const common = {
      bench: "proxy",
      backend: "local-engine",
      model: "tiny",
      calls,
      promptLen: prompt.length,
      generated,
    };
    emit({ ...common, metric: "engine_direct_latency_median", value: d.median, unit: "ms", p99: d.p99 });
    emit({ ...common, metric: "engine_proxy_latency_median", value: p.median, unit: "ms", p99: p.p99 });
    emit({ ...common, metric: "engine_added_latency_median", value: p.median - d.median, unit: "ms" });
  } finally {
    await proxy.close();
    await recorder.flush();
    await store.close();
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

const roleAt = process.argv.indexOf("--role");
if (roleAt >= 0) {
  await serveRole(process.argv.slice(roleAt + 1));
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes("--quick");
  await benchProxyUpstream({ quick });
  if (!process.argv.includes("--no-engine")) await benchProxyEngine({ quick });
  // The GPU device keeps the event loop alive; the bench is done.
  process.exit(0);
}
