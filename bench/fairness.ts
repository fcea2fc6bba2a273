// Fairness under one huge request: latency of small requests (one short completion each, one
// client calling back to back) alone, and while another client's single request asks for
// many sequences (prompts × n) of long completions. The server is the real proxy in front of the
// GPU engine with the built-in model; the scheduler admits round-robin across requests, so the
// small requests' p99 during the big one should stay within a few times their p99 alone, instead of
// waiting for the big request's whole backlog. Both admissions run on the same model, same run.
//   npx tsx bench/fairness.ts [--big-choices 128] [--big-tokens 96] [--small 30]

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import OpenAI from "openai";
import { serveApp } from "../src/http/serve.ts";
import { loadModel, type Model } from "../src/model/model.ts";
import { LocalBackend } from "../src/proxy/local.ts";
import { createApp } from "../src/server.ts";
import { openStore } from "../src/store/index.ts";
import { emit, percentile } from "./lib.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const { values } = parseArgs({
  options: {
    "big-choices": { type: "string", default: "128" },
    "big-tokens": { type: "string", default: "96" },
    small: { type: "string", default: "30" },
    model: { type: "string", default: join(root, "models/fulgur-calc") },
  },
});
const BIG_CHOICES = Number(values["big-choices"]);
const BIG_TOKENS = Number(values["big-tokens"]);
const SMALL = Number(values.small);

async function smallCalls(client: OpenAI, model: string, count: number, until?: () => boolean): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < count && (until ? !until() : true); i++) {
    const t0 = performance.now();
    await client.completions.create({ model, prompt: "3+4=", max_tokens: 4, temperature: 0 });
    ms.push(performance.now() - t0);
  }
  return ms;
}

async function run(model: Model, fairAdmission: boolean): Promise<void> {
  const store = await openStore(":memory:");
  const backend = new LocalBackend(model, { modelId: "m", fairAdmission });
  const { app, recorder } = createApp({ store, backend });
  const server = await serveApp(app, "127.0.0.1", 0);
  try {
    const client = new OpenAI({ apiKey: "b", baseURL: `${server.url}/v1`, maxRetries: 0, timeout: 600_000 });
    await smallCalls(client, "m", 3);
    const alone = await smallCalls(client, "m", SMALL);
    let bigDone = false;
    const t0 = performance.now();
    const big = client.completions
      .create({
        model: "m",
        prompt: ["1+1=", "2+2=", "3+3=", "4+4="],
        n: BIG_CHOICES / 4,
        max_tokens: BIG_TOKENS,
        temperature: 1,
      })
      .then(() => {
        bigDone = true;
      });
    await new Promise((r) => setTimeout(r, 50));
    const during = await smallCalls(client, "m", SMALL, () => bigDone);
    await big;
    const bigMs = performance.now() - t0;
    const admission = fairAdmission ? "round-robin" : "fifo";
    const common = { bench: "fairness", admission, bigChoices: BIG_CHOICES, bigTokens: BIG_TOKENS, slots: 16 };
    emit({
      ...common,
      metric: "small_latency_p99_alone",
      value: percentile(alone, 99),
      unit: "ms",
      calls: alone.length,
    });
    emit({ ...common, metric: "small_latency_p50_alone", value: percentile(alone, 50), unit: "ms" });
    emit({
      ...common,
      metric: "small_latency_p99_during_big",
      value: percentile(during, 99),
      unit: "ms",
      calls: during.length,
    });
    emit({ ...common, metric: "small_latency_p50_during_big", value: percentile(during, 50), unit: "ms" });
    emit({ ...common, metric: "big_request_latency", value: bigMs, unit: "ms" });
    emit({
      ...common,
      metric: "small_p99_during_over_big_request",
      value: percentile(during, 99) / bigMs,
      unit: "x",
      note: "first come, first served makes this about 1 (the small call waits for the whole big request)",
    });
  } finally {
    await server.close();
    await recorder.flush();
    await store.close();
  }
}

// The same model, first come first served (the previous admission) then round-robin.
const model = await loadModel(values.model, { maxSlots: 16, maxSeqLen: 256 });
await run(model, false);
await run(model, true);
model.dispose();
process.exit(0);
