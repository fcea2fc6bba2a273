// Memory soak of the streaming path: a real server process (the built-in model on the GPU, a
// libSQL file store) driven by concurrent streaming clients, then by the same number of
// non-streaming calls, sampling the server's RSS (from /proc) every 1,000 calls. The figure of
// merit is RSS growth per 1,000 calls after warm-up: flat (about 0) when nothing leaks, and the
// same for streaming and non-streaming (their ratio is printed).
//   npx tsx bench/streaming-soak.ts [--calls 4000] [--clients 64] [--max-tokens 8]

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import OpenAI from "openai";
import { emit } from "./lib.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

const { values } = parseArgs({
  options: {
    calls: { type: "string", default: "4000" },
    clients: { type: "string", default: "64" },
    "max-tokens": { type: "string", default: "8" },
    model: { type: "string", default: join(root, "models/fulgur-calc") },
  },
});
const CALLS = Number(values.calls);
const CLIENTS = Number(values.clients);
const MAX_TOKENS = Number(values["max-tokens"]);

export interface SpawnedServer {
  url: string;
  child: ChildProcess;
  output: () => string;
}

/** Starts `src/server.ts` in its own process and waits for its URL. */
export async function spawnServer(args: string[], nodeArgs: string[] = []): Promise<SpawnedServer> {
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", join(root, "src/server.ts"), ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    out += d;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server printed no URL: ${out}`)), 60_000);
    const check = () => {
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout?.on("data", check);
    child.once("exit", (code) => reject(new Error(`server exited (${code}): ${out}`)));
  });
  return { url, child, output: () => out };
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

async function drive(client: OpenAI, model: string, stream: boolean, pid: number) {
  const samples: { calls: number; rss: number }[] = [{ calls: 0, rss: rssMb(pid) }];
  let next = 0;
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < CALLS) {
        next++;
        if (stream) {
          const s = await client.completions.create({ model, prompt: "12+7=", max_tokens: MAX_TOKENS, stream: true });
          for await (const _ of s) {
            // drain
          }
        } else {
          await client.completions.create({ model, prompt: "12+7=", max_tokens: MAX_TOKENS });
        }
        done++;
        if (done % 1000 === 0) samples.push({ calls: done, rss: rssMb(pid) });
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  // Growth after the first 1,000 calls (warm-up: pools, JIT, caches), per 1,000 calls.
  const first = samples[Math.min(1, samples.length - 1)];
  const last = samples[samples.length - 1];
  const perK = last.calls > first.calls ? ((last.rss - first.rss) / (last.calls - first.calls)) * 1000 : 0;
  return { samples, perK, callsPerS: CALLS / seconds };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "fulgur-soak-"));
  const server = await spawnServer(["--port", "0", "--model", values.model, "--store", `file:${join(dir, "s.db")}`]);
  try {
    const pid = server.child.pid!;
    const client = new OpenAI({ apiKey: "soak", baseURL: `${server.url}/v1`, maxRetries: 0 });
    const model = (await client.models.list()).data[0].id;
    const results: Record<string, number> = {};
    for (const stream of [true, false]) {
      const mode = stream ? "streaming" : "non-streaming";
      const r = await drive(client, model, stream, pid);
      for (const s of r.samples) {
        emit({ bench: "streaming-soak", metric: "rss", value: s.rss, unit: "MB", mode, calls: s.calls });
      }
      emit({ bench: "streaming-soak", metric: "rss_growth_per_1k_calls", value: r.perK, unit: "MB", mode });
      emit({ bench: "streaming-soak", metric: "calls_per_s", value: r.callsPerS, unit: "calls/s", mode });
      results[mode] = r.perK;
    }
    emit({
      bench: "streaming-soak",
      metric: "growth_streaming_minus_non_streaming",
      value: results.streaming - results["non-streaming"],
      unit: "MB/1k calls",
    });
  } finally {
    server.child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
