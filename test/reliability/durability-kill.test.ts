// Issue 15 item 3: "a restart loses nothing". The real server process (upstream mode, libSQL file
// store) is hammered by concurrent clients and killed with SIGKILL mid-load; every call that was
// answered 200 (non-streaming) or got its [DONE] (streaming) must be in the store when it is
// opened again. Durable recording answers only after the call's batch is committed.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { openStore } from "../../src/store/libsql.ts";
import { type RunningUpstream, startUpstreamServer } from "../proxy/upstream-server.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
let dir: string;
let upstream: RunningUpstream;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-kill-"));
  upstream = await startUpstreamServer({ model: "toy" });
});

afterAll(async () => {
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function spawnServer(storeFile: string, extra: string[] = []): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(root, "src/server.ts"),
      "--port",
      "0",
      "--upstream",
      upstream.baseURL,
      "--store",
      `file:${storeFile}`,
      ...extra,
    ],
    { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stderr?.on("data", (d) => {
    out += d;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server printed no URL: ${out}`)), 60_000);
    child.stdout?.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return { url, child };
}

/** One call; returns its response id when it was answered completely, else null. */
async function call(url: string, stream: boolean): Promise<string | null> {
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "toy",
        messages: [{ role: "user", content: "one two three" }],
        max_tokens: 8,
        stream,
      }),
    });
    if (res.status !== 200) return null;
    if (!stream) return ((await res.json()) as { id: string }).id;
    const text = await res.text();
    if (!text.endsWith("data: [DONE]\n\n")) return null;
    const first = text.split("\n").find((l) => l.startsWith("data: {"));
    return first ? (JSON.parse(first.slice(6)) as { id: string }).id : null;
  } catch {
    return null;
  }
}

it("every answered call survives kill -9", async () => {
  const storeFile = join(dir, "store.db");
  const { url, child } = await spawnServer(storeFile);
  const answered: string[] = [];
  let stop = false;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const clients = Array.from({ length: 32 }, async (_, i) => {
    while (!stop) {
      const id = await call(url, i % 2 === 1);
      if (id) answered.push(id);
      else if (stop) break;
    }
  });
  // Kill once a good number of calls are through, while the others are in flight.
  while (answered.length < 300) await new Promise((r) => setTimeout(r, 10));
  child.kill("SIGKILL");
  stop = true;
  await exited;
  await Promise.all(clients);

  const store = await openStore(`file:${storeFile}`);
  const stored = new Set(
    (await store.getTransitions({ unattributed: true, limit: 100_000 })).map(
      (t) => (t.metadata as { callId: string }).callId,
    ),
  );
  await store.close();
  const lost = answered.filter((id) => !stored.has(id));
  expect(answered.length).toBeGreaterThanOrEqual(300);
  expect(lost).toEqual([]);
});
