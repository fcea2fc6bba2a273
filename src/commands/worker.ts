// `fulgur worker`: runs the Runner in its own process (or on another machine) against a running
// Fulgur server, over the store's HTTP API. Loads the agent from a module, prints one progress
// line per attempt, and stops cleanly on SIGINT/SIGTERM (a second signal exits at once).
import { parseArgs } from "node:util";
import { checkApiKey } from "../http/auth.ts";
import { loadAgent } from "../runner/load-agent.ts";
import { Runner } from "../runner/runner.ts";
import type { RunnerEvent } from "../runner/types.ts";
import { HttpStore } from "../store/http-client.ts";
import type { Command } from "./command.ts";

export const WORKER_USAGE = `Usage: fulgur worker --server URL --agent PATH [options]
  --server URL        the Fulgur server (store API and OpenAI proxy), e.g. http://trainer:8000
  --agent PATH        module whose default export (or named export \`agent\`) is the agent function
  --concurrency N     agents run at once (default 4)
  --api-key KEY       the server's API key (env FULGUR_API_KEY); agents get attempt tokens, not it
  --worker-id ID      name recorded on attempts (default host-pid)
  --mode MODE         only run rollouts of this mode: train, val or test (default any)
  --model NAME        model name agents get in ctx.llm.model (default: the server's first /v1/models id)
  --heartbeat-ms MS   heartbeat interval per running attempt (default 2000; keep well under the
                      rollouts' unresponsiveTimeoutMs)
  --help              show this help`;

const MODES = ["train", "val", "test"] as const;

/** The first model id the server lists at /v1/models. */
export async function defaultModel(server: string, apiKey: string | undefined): Promise<string> {
  const url = `${server.replace(/\/+$/, "")}/v1/models`;
  let response: Response;
  try {
    response = await fetch(url, { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {} });
  } catch (error) {
    throw new Error(`cannot reach ${url}: ${(error as Error).message}`);
  }
  if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}; pass --model NAME`);
  const body = (await response.json()) as { data?: { id?: string }[] };
  const id = body.data?.[0]?.id;
  if (!id) throw new Error(`${url} lists no models (is a model loaded?); pass --model NAME`);
  return id;
}

function progressLine(workerId: string, e: RunnerEvent): string {
  if (e.type === "started") return `[${workerId}] started ${e.rolloutId} attempt ${e.attemptNo} (${e.attemptId})`;
  if (e.type === "error") return `[${workerId}] error: ${e.message}`;
  const reward = e.reward === null ? "" : ` reward=${e.reward}`;
  const why = e.error ? `: ${e.error.message}` : "";
  return `[${workerId}] ${e.status} ${e.rolloutId} (${e.attemptId}) in ${e.durationMs} ms${reward}${e.late ? " (late)" : ""}${why}`;
}

/** Implements `fulgur worker`; resolves with the exit code once stopped by a signal. */
export async function runWorker(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      server: { type: "string" },
      agent: { type: "string" },
      concurrency: { type: "string", default: "4" },
      "api-key": { type: "string", default: process.env.FULGUR_API_KEY },
      "worker-id": { type: "string" },
      mode: { type: "string" },
      model: { type: "string" },
      "heartbeat-ms": { type: "string", default: "2000" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(WORKER_USAGE);
    return 0;
  }
  if (!values.server) throw new Error(`--server URL is required\n\n${WORKER_USAGE}`);
  if (!values.agent) throw new Error(`--agent PATH is required\n\n${WORKER_USAGE}`);
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency <= 0) {
    throw new Error(`--concurrency must be a positive integer, got ${values.concurrency}`);
  }
  const heartbeatMs = Number(values["heartbeat-ms"]);
  if (!Number.isInteger(heartbeatMs) || heartbeatMs <= 0) {
    throw new Error(`--heartbeat-ms must be a positive integer, got ${values["heartbeat-ms"]}`);
  }
  const mode = values.mode;
  if (mode !== undefined && !(MODES as readonly string[]).includes(mode)) {
    throw new Error(`--mode must be one of ${MODES.join(", ")}, got ${mode}`);
  }
  const server = values.server.replace(/\/+$/, "");
  // An empty key would send "Bearer " and fail every call with a confusing 401: refuse it here.
  const apiKey = checkApiKey(
    values["api-key"],
    argv.some((a) => a.startsWith("--api-key")) ? "--api-key" : "FULGUR_API_KEY",
  );
  const agent = await loadAgent(values.agent);
  const model = values.model ?? (await defaultModel(server, apiKey));
  const store = new HttpStore(server, { apiKey });
  let workerId = values["worker-id"];
  const runner = new Runner({
    store,
    agent,
    serverUrl: server,
    model,
    apiKey,
    concurrency,
    heartbeatMs,
    workerId,
    mode: mode as (typeof MODES)[number] | undefined,
    onEvent: (e) => console.log(progressLine(workerId ?? runner.workerId, e)),
  });
  workerId = runner.workerId;
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) {
      console.log(`[${workerId}] ${signal} again: exiting without waiting`);
      process.exit(130);
    }
    console.log(`[${workerId}] ${signal}: no new rollouts; waiting for running agents`);
    stop.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  console.log(
    `[${workerId}] ready: ${concurrency} slots, server ${server}, model ${model}${mode ? `, mode ${mode}` : ""}`,
  );
  try {
    await runner.run(stop.signal);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  const s = runner.stats;
  console.log(
    `[${workerId}] stopped: ${s.claimed} claimed, ${s.succeeded} succeeded, ${s.failed} failed, ${s.timedOut} timed out`,
  );
  return 0;
}

export const command: Command = {
  summary: "run an agent on a server's rollouts (a remote runner)",
  usage: WORKER_USAGE.replace(/^Usage: /, ""),
  run: runWorker,
};
