// Store write and claim throughput on a local libSQL file (WAL, synchronous=NORMAL) in a temp
// dir: transitions/s written one per call vs 100 per call (same run, with the ratio), the same
// batched writes through HttpStore → Hono → the file, and claim throughput with 16 concurrent
// workers, each on its own connection; then the same transition and claim figures on a real libSQL
// server (sqld over HTTP on loopback, scripts/setup-sqld.mjs), with file/server ratios.
// Run: npx tsx bench/store.ts
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { HttpStore, openStore, type Store, storeRoutes, type TransitionInput } from "../src/store/index.ts";
import { startSqld } from "../test/helpers/sqld.ts";
import { emit } from "./lib.ts";

const PROMPT_TOKENS = 512;
const RESPONSE_TOKENS = 128;
const SINGLE_COUNT = 1000;
const BATCH_SIZE = 100;
const BATCH_COUNT = 100;
const WORKERS = 16;
const CLAIM_ROLLOUTS = 2000;
// sqld answers SQLITE_BUSY under contention (retried by the client); with 16 separate clients
// claiming at once a request was seen to stall for minutes (undici headers timeout), so the
// server figure uses 4 (see docs/store.md).
const SQLD_WORKERS = 4;

/** A realistic LLM call: 512 prompt tokens, 128 sampled tokens with logprobs, ~1.5 kB of messages. */
function makeTransition(attemptId: string, i: number): TransitionInput {
  const promptIds = new Uint32Array(PROMPT_TOKENS);
  for (let k = 0; k < PROMPT_TOKENS; k++) promptIds[k] = (i * 7919 + k * 104729) % 151936;
  const responseIds = new Uint32Array(RESPONSE_TOKENS);
  const responseLogprobs = new Float32Array(RESPONSE_TOKENS);
  for (let k = 0; k < RESPONSE_TOKENS; k++) {
    responseIds[k] = (i * 31 + k * 977) % 151936;
    responseLogprobs[k] = -((k % 17) / 7);
  }
  return {
    attemptId,
    promptIds,
    responseIds,
    responseLogprobs,
    messages: [
      { role: "system", content: "You are a careful assistant. ".repeat(20) },
      { role: "user", content: `Question ${i}: ${"what is the sum of these numbers? ".repeat(20)}` },
    ],
    response: { role: "assistant", content: "The answer is 42." },
    model: "qwen2.5-0.5b-instruct",
    adapterVersion: "1",
    finishReason: "stop",
    usage: { promptTokens: PROMPT_TOKENS, completionTokens: RESPONSE_TOKENS },
  };
}

async function claimedAttempt(store: Store): Promise<string> {
  await store.enqueueRollout({ input: { task: "bench" } });
  const claim = await store.claimRollout({ workerId: "bench" });
  if (!claim) throw new Error("bench: expected a rollout to claim");
  return claim.attempt.id;
}

async function transitionsPerSecond(store: Store, count: number, batch: number): Promise<number> {
  const attemptId = await claimedAttempt(store);
  const items = Array.from({ length: count }, (_, i) => makeTransition(attemptId, i));
  await store.addTransitions(items.slice(0, batch)); // warm-up: statement caches, file growth
  const start = performance.now();
  for (let i = 0; i < count; i += batch) await store.addTransitions(items.slice(i, i + batch));
  return count / ((performance.now() - start) / 1000);
}

async function claimsPerSecond(
  url: string,
  workerCount = WORKERS,
): Promise<{ claimsPerS: number; claimP50Ms: number }> {
  const setup = await openStore(url);
  await setup.enqueueRollouts(Array.from({ length: CLAIM_ROLLOUTS }, (_, i) => ({ input: { i } })));
  const workers = await Promise.all(Array.from({ length: workerCount }, () => openStore(url)));
  const latencies: number[] = [];
  const start = performance.now();
  const counts = await Promise.all(
    workers.map(async (store, w) => {
      let n = 0;
      for (;;) {
        const t0 = performance.now();
        const claim = await store.claimRollout({ workerId: `worker-${w}` });
        latencies.push(performance.now() - t0);
        if (!claim) return n;
        n++;
        await store.finishAttempt(claim.attempt.id, { status: "succeeded", reward: 1 });
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  const claimed = counts.reduce((a, b) => a + b, 0);
  if (claimed !== CLAIM_ROLLOUTS) throw new Error(`bench: claimed ${claimed} of ${CLAIM_ROLLOUTS} rollouts`);
  await Promise.all([setup, ...workers].map((s) => s.close()));
  latencies.sort((a, b) => a - b);
  return { claimsPerS: claimed / seconds, claimP50Ms: latencies[Math.floor(latencies.length / 2)] };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "fulgur-bench-store-"));
  try {
    const url = `file:${join(dir, "bench.db")}`;
    const store = await openStore(url);
    const common = { bench: "store", promptTokens: PROMPT_TOKENS, responseTokens: RESPONSE_TOKENS, db: "file (WAL)" };

    const single = await transitionsPerSecond(store, SINGLE_COUNT, 1);
    emit({ ...common, metric: "transitions_per_s", variant: "single", value: Math.round(single), unit: "1/s" });
    const batched = await transitionsPerSecond(store, BATCH_SIZE * BATCH_COUNT, BATCH_SIZE);
    emit({
      ...common,
      metric: "transitions_per_s",
      variant: `batch${BATCH_SIZE}`,
      value: Math.round(batched),
      unit: "1/s",
    });
    emit({
      ...common,
      metric: "batch_speedup",
      variant: `batch${BATCH_SIZE}/single`,
      value: +(batched / single).toFixed(2),
      unit: "x",
    });

    const app = new Hono().route("/", storeRoutes(store));
    const server = await new Promise<Server>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s as Server));
    });
    const http = new HttpStore(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const overHttp = await transitionsPerSecond(http, BATCH_SIZE * 20, BATCH_SIZE);
    emit({
      ...common,
      metric: "transitions_per_s",
      variant: `http_batch${BATCH_SIZE}`,
      value: Math.round(overHttp),
      unit: "1/s",
    });
    emit({
      ...common,
      metric: "http_overhead",
      variant: `batch${BATCH_SIZE} local/http`,
      value: +(batched / overHttp).toFixed(2),
      unit: "x",
    });
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await store.close();

    const claims = await claimsPerSecond(`file:${join(dir, "claims.db")}`);
    emit({
      bench: "store",
      metric: "claims_per_s",
      variant: `${WORKERS} workers, claim+finish`,
      value: Math.round(claims.claimsPerS),
      unit: "1/s",
      workers: WORKERS,
      rollouts: CLAIM_ROLLOUTS,
      claimP50Ms: +claims.claimP50Ms.toFixed(3),
    });

    // The shared-store path: the same writes and claims against sqld.
    const sqld = await startSqld();
    try {
      const remote = await openStore(sqld.url);
      const remoteBatched = await transitionsPerSecond(remote, BATCH_SIZE * 20, BATCH_SIZE);
      await remote.close();
      const server = { ...common, db: "sqld (HTTP, loopback)" };
      emit({
        ...server,
        metric: "transitions_per_s",
        variant: `batch${BATCH_SIZE}`,
        value: Math.round(remoteBatched),
        unit: "1/s",
      });
      emit({
        ...server,
        metric: "file_vs_server",
        variant: `transitions batch${BATCH_SIZE} file/sqld`,
        value: +(batched / remoteBatched).toFixed(2),
        unit: "x",
      });
      const fileClaims = await claimsPerSecond(`file:${join(dir, "claims4.db")}`, SQLD_WORKERS);
      const remoteClaims = await claimsPerSecond(sqld.url, SQLD_WORKERS);
      for (const [db, result] of [
        ["file (WAL)", fileClaims],
        ["sqld (HTTP, loopback)", remoteClaims],
      ] as const) {
        emit({
          bench: "store",
          db,
          metric: "claims_per_s",
          variant: `${SQLD_WORKERS} workers, claim+finish`,
          value: Math.round(result.claimsPerS),
          unit: "1/s",
          workers: SQLD_WORKERS,
          rollouts: CLAIM_ROLLOUTS,
          claimP50Ms: +result.claimP50Ms.toFixed(3),
        });
      }
      emit({
        bench: "store",
        metric: "file_vs_server",
        variant: `claims ${SQLD_WORKERS} workers file/sqld`,
        value: +(fileClaims.claimsPerS / remoteClaims.claimsPerS).toFixed(2),
        unit: "x",
      });
    } finally {
      await sqld.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
