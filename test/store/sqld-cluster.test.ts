// The README's scale-out path for real: one libSQL server (sqld, JWT auth), two Fulgur server
// processes sharing it as their store, and a `fulgur worker` process on each. 1,000 rollouts,
// each making one real LLM call: every rollout is claimed exactly once, every call is recorded
// under its attempt, and both servers did work. Midway the database server is restarted, and
// nothing is lost.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { openStore, type Store } from "../../src/store/index.ts";
import { jwtAuth, type SqldServer, startSqld } from "../helpers/sqld.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const AGENT = resolve(ROOT, "test/runner/fixtures/worker-agent.ts");
const ROLLOUTS = 1000;

const children: ChildProcess[] = [];
let dir: string;
let sqld: SqldServer;
let token: string;
let store: Store;

interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** Spawns `node --import tsx <script> …args` and waits until its output matches `ready`. */
async function spawnProc(script: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}): Promise<Proc> {
  const child = spawn(process.execPath, ["--import", "tsx", resolve(ROOT, script), ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  children.push(child);
  let text = "";
  child.stdout?.on("data", (chunk) => (text += chunk));
  child.stderr?.on("data", (chunk) => (text += chunk));
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
  const deadline = Date.now() + 60_000;
  while (!ready.test(text)) {
    if (child.exitCode !== null) throw new Error(`${script} exited early (${child.exitCode}):\n${text}`);
    if (Date.now() > deadline) throw new Error(`${script} not ready after 60 s:\n${text}`);
    await new Promise((done) => setTimeout(done, 50));
  }
  return { child, output: () => text, exited };
}

async function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => done(port));
    });
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-cluster-"));
  await writeTinyModel(join(dir, "tiny"), { hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48, seed: 4 });
  const auth = jwtAuth();
  sqld = await startSqld({ auth });
  token = auth.token();
  store = await openStore(sqld.url, { authToken: token });
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await store?.close();
  await sqld?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("two Fulgur servers and their workers sharing one libSQL server", () => {
  it(`finishes ${ROLLOUTS} rollouts, each claimed once with its LLM call recorded, across a database restart`, async () => {
    // The token travels in the environment (FULGUR_STORE_TOKEN), not on the command line.
    const servers = await Promise.all(
      [await freePort(), await freePort()].map((port) =>
        spawnProc(
          "src/server.ts",
          ["--model", join(dir, "tiny"), "--store", sqld.url, "--port", String(port), "--max-seq-len", "256"],
          /listening on/,
          { FULGUR_STORE_TOKEN: token },
        ).then((proc) => ({ proc, url: `http://127.0.0.1:${port}` })),
      ),
    );
    const workers = await Promise.all(
      servers.map((s, i) =>
        spawnProc(
          "src/commands/worker-main.ts",
          ["--server", s.url, "--agent", AGENT, "--concurrency", "8", "--worker-id", `w${i}`],
          /ready:/,
        ),
      ),
    );
    const rollouts = await store.enqueueRollouts(
      Array.from({ length: ROLLOUTS }, (_, index) => ({ input: { kind: "llm", index, reward: index / ROLLOUTS } })),
    );
    const ids = rollouts.map((r) => r.id);
    const finished = async () => (await store.listRollouts({ status: "succeeded", limit: 10_000 })).length;
    // Restart the database once a third of the work is done; servers and workers ride it out.
    while ((await finished()) < ROLLOUTS / 3) await new Promise((done) => setTimeout(done, 100));
    await sqld.stop("SIGKILL");
    await new Promise((done) => setTimeout(done, 500));
    await sqld.start();
    const ended = await store.waitForRollouts(ids, { timeoutMs: 240_000, pollMs: 200 });
    expect(ended.length).toBe(ROLLOUTS);
    for (const w of workers) w.child.kill("SIGTERM");
    for (const w of workers) expect(await w.exited, w.output()).toBe(0);
    for (const s of servers) s.proc.child.kill("SIGTERM");
    for (const s of servers) expect(await s.proc.exited, s.proc.output()).toBe(0);

    const perWorker = new Map<string, number>();
    for (const [index, rollout] of ended.entries()) {
      expect(rollout.status, JSON.stringify(rollout)).toBe("succeeded");
      expect(rollout.finalReward).toBe(index / ROLLOUTS);
      const attempts = await store.listAttempts(rollout.id);
      const succeeded = attempts.filter((a) => a.status === "succeeded");
      expect(succeeded.length, `rollout ${rollout.id} succeeded ${succeeded.length} times`).toBe(1);
      perWorker.set(succeeded[0].workerId, (perWorker.get(succeeded[0].workerId) ?? 0) + 1);
      const transitions = await store.getTransitions({ attemptId: succeeded[0].id });
      expect(transitions.length, `LLM calls recorded for ${succeeded[0].id}`).toBe(1);
      expect(transitions[0].responseIds.length).toBeGreaterThan(0);
      expect(transitions[0].responseLogprobs?.length).toBe(transitions[0].responseIds.length);
    }
    expect([...perWorker.keys()].sort()).toEqual(["w0", "w1"]);
  }, 300_000);
});
