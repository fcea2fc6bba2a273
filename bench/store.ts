// Store write and claim throughput on a local libSQL file (WAL, synchronous=NORMAL) in a temp
// dir: transitions/s written one per call vs 100 per call (same run, with the ratio), the same
// batched writes through HttpStore → Hono → the file, and claim throughput with 16 concurrent
// workers, each on its own connection; then the same transition and claim figures on a real libSQL
// server (sqld over HTTP on loopback, scripts/setup-sqld.mjs), with file/server ratios; last, the
// shared-store shape of the cluster test (test/store/sqld-cluster.test.ts) at the store level:
// two OS processes sharing one store, file vs sqld, (a) claiming rollouts, each claim followed by
// one transition and a finish, as a Fulgur server does for a worker's one-call rollout, and (b)
// writing transitions 100 per call. Both processes start on one signal; the rate is the total over
// the wall time from that signal until both are done.
// Run: npx tsx bench/store.ts   (only the two-process figures: npx tsx bench/store.ts shared)
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
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
// Against sqld, write batches from one process go one at a time (src/store/remote.ts: 16
// contending writers wedged sqld 0.24.32, see docs/store.md); the server figure uses 4 workers.
const SQLD_WORKERS = 4;
/** Two processes sharing one store: rollouts they claim (one transition each), batches of 100 each writes. */
const SHARED_PROCESSES = 2;
const SHARED_ROLLOUTS = 1000;
const SHARED_BATCHES = 10;

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

type SharedMode = "claims" | "transitions";

/**
 * One of the processes sharing a store (`--shared <mode> <url> <worker>`): opens the store, says
 * "ready", waits for a line on stdin, then claims until the queue is empty or writes its batches;
 * prints how many claims or transitions it made.
 */
async function sharedChild(mode: SharedMode, url: string, workerId: string): Promise<void> {
  const store = await openStore(url);
  const attemptId = mode === "transitions" ? await claimedAttempt(store) : "";
  const batches = Array.from({ length: SHARED_BATCHES }, (_, b) =>
    Array.from({ length: BATCH_SIZE }, (_, i) => makeTransition(attemptId, b * BATCH_SIZE + i)),
  );
  process.stdout.write("ready\n");
  await once(process.stdin, "data");
  let count = 0;
  if (mode === "claims") {
    for (;;) {
      const claim = await store.claimRollout({ workerId });
      if (!claim) break;
      await store.addTransitions([makeTransition(claim.attempt.id, count)]);
      await store.finishAttempt(claim.attempt.id, { status: "succeeded", reward: 1 });
      count++;
    }
  } else {
    for (const batch of batches) {
      await store.addTransitions(batch);
      count += batch.length;
    }
  }
  await store.close();
  process.stdout.write(`${JSON.stringify({ count })}\n`);
  process.stdin.destroy();
}

/** Runs SHARED_PROCESSES children on `url` at once; the total they did per second of wall time. */
async function sharedRate(mode: SharedMode, url: string): Promise<number> {
  const setup = await openStore(url); // migrates before the children open it
  const ids =
    mode === "claims"
      ? (await setup.enqueueRollouts(Array.from({ length: SHARED_ROLLOUTS }, (_, i) => ({ input: { i } })))).map(
          (r) => r.id,
        )
      : [];
  const self = fileURLToPath(import.meta.url);
  const children = Array.from({ length: SHARED_PROCESSES }, (_, w) => {
    const child = spawn(process.execPath, ["--import", "tsx", self, "--shared", mode, url, `proc-${w}`], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
    return { child, output: () => out, exited };
  });
  for (const c of children) {
    while (!c.output().includes("ready\n")) {
      if (c.child.exitCode !== null) throw new Error(`bench: shared ${mode} child exited early`);
      await new Promise((done) => setTimeout(done, 20));
    }
  }
  const start = performance.now();
  for (const c of children) c.child.stdin.write("go\n");
  const codes = await Promise.all(children.map((c) => c.exited));
  const seconds = (performance.now() - start) / 1000;
  if (codes.some((code) => code !== 0)) throw new Error(`bench: shared ${mode} child failed (${codes})`);
  const total = children.reduce((sum, c) => sum + JSON.parse(c.output().split("\n").at(-2)!).count, 0);
  const expected = mode === "claims" ? SHARED_ROLLOUTS : SHARED_PROCESSES * SHARED_BATCHES * BATCH_SIZE;
  if (total !== expected) throw new Error(`bench: shared ${mode} did ${total} of ${expected}`);
  if (mode === "claims") {
    const done = (await setup.waitForRollouts(ids, { timeoutMs: 0 })).filter((r) => r.status === "succeeded");
    if (done.length !== SHARED_ROLLOUTS) throw new Error(`bench: ${done.length} of ${SHARED_ROLLOUTS} succeeded`);
  }
  await setup.close();
  return total / seconds;
}

/** Two processes sharing one store (the cluster test's shape): file vs sqld, with the ratio. */
async function sharedFigures(dir: string, sqldUrl: string): Promise<void> {
  const shared = { bench: "store", processes: SHARED_PROCESSES };
  for (const mode of ["claims", "transitions"] as const) {
    const file = await sharedRate(mode, `file:${join(dir, `shared-${mode}.db`)}`);
    const remote = await sharedRate(mode, sqldUrl);
    const variant =
      mode === "claims"
        ? `${SHARED_PROCESSES} processes, claim+transition+finish`
        : `${SHARED_PROCESSES} processes, batch${BATCH_SIZE}`;
    const metric = mode === "claims" ? "claims_per_s" : "transitions_per_s";
    emit({ ...shared, db: "file (WAL)", metric, variant, value: Math.round(file), unit: "1/s" });
    emit({ ...shared, db: "sqld (HTTP, loopback)", metric, variant, value: Math.round(remote), unit: "1/s" });
    emit({
      ...shared,
      metric: "file_vs_server",
      variant: `${variant} file/sqld`,
      value: +(file / remote).toFixed(2),
      unit: "x",
    });
  }
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

      await sharedFigures(dir, sqld.url);
    } finally {
      await sqld.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--shared") {
  const [mode, url, workerId] = process.argv.slice(3);
  await sharedChild(mode as SharedMode, url, workerId);
} else if (process.argv[2] === "shared") {
  // Only the two-process figures: npx tsx bench/store.ts shared
  const dir = mkdtempSync(join(tmpdir(), "fulgur-bench-store-"));
  const sqld = await startSqld();
  try {
    await sharedFigures(dir, sqld.url);
  } finally {
    await sqld.close();
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  await main();
}
