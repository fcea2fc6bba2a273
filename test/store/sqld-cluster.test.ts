// The README's scale-out path for real: one libSQL server (sqld, JWT auth), two Fulgur server
// processes sharing it as their store, and a `fulgur worker` process on each. 1,000 rollouts,
// each making one real LLM call: every rollout is claimed exactly once, every call is recorded
// under its attempt, and both servers did work. Midway the database server is SIGKILLed and
// restarted, and nothing is lost or claimed twice.
//
// Sized for a loaded 2-core CI machine: the test watches progress with one cheap count query a
// second (not a read of every rollout), gives up on its own deadline before vitest's with a
// timeline of what got done, and checks the result with a few aggregate queries plus the Store
// API per rollout at bounded concurrency.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type Client, createClient } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { openStore, type Store } from "../../src/store/index.ts";
import { jwtAuth, type SqldServer, startSqld } from "../helpers/sqld.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const AGENT = resolve(ROOT, "test/runner/fixtures/worker-agent.ts");
const ROLLOUTS = 1000;
/** The test's own deadline for everything (start-up included); vitest's timeout is a minute more. */
const DEADLINE_MS = 480_000;

const children: ChildProcess[] = [];
let dir: string;
let sqld: SqldServer;
let token: string;
let store: Store;
let monitor: Client | undefined;

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
  // Four processes start at once (tsx, WebGPU, the model): minutes on a loaded 2-core machine.
  const deadline = Date.now() + 180_000;
  while (!ready.test(text)) {
    if (child.exitCode !== null) throw new Error(`${script} exited early (${child.exitCode}):\n${text}`);
    if (Date.now() > deadline) throw new Error(`${script} not ready after 180 s:\n${text}`);
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
  monitor?.close();
  await store?.close();
  await sqld?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("two Fulgur servers and their workers sharing one libSQL server", () => {
  it(
    `finishes ${ROLLOUTS} rollouts, each claimed once with its LLM call recorded, across a database restart`,
    async () => {
      const t0 = Date.now();
      const timeline: string[] = [];
      const mark = (what: string) => timeline.push(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
      // Progress by one aggregate query, retried through the restart (it is only a monitor).
      const db = createClient({ url: sqld.url, authToken: token });
      monitor = db;
      const counts = async (): Promise<Record<string, number>> => {
        for (;;) {
          try {
            const rows = (await db.execute("SELECT status, count(*) AS n FROM rollouts GROUP BY status")).rows;
            return Object.fromEntries(rows.map((r) => [String(r.status), Number(r.n)]));
          } catch {
            await new Promise((done) => setTimeout(done, 250));
          }
        }
      };
      const procs: { name: string; proc: Proc }[] = [];
      const report = async (why: string) => {
        const tails = procs.map(({ name, proc }) => `--- ${name} (last 2 kB):\n${proc.output().slice(-2000)}`);
        return `${why}\nrollouts by status: ${JSON.stringify(await counts())}\ntimeline:\n${timeline.join("\n")}\n${tails.join("\n")}`;
      };
      /** Waits until `done()`, failing with the timeline and the processes' output at the deadline. */
      const until = async (what: string, done: () => Promise<boolean>, pollMs = 1_000) => {
        let sampled = Date.now();
        while (!(await done())) {
          if (Date.now() - t0 > DEADLINE_MS) throw new Error(await report(`gave up waiting for ${what}`));
          if (Date.now() - sampled >= 15_000) {
            sampled = Date.now();
            mark(JSON.stringify(await counts()));
          }
          await new Promise((wake) => setTimeout(wake, pollMs));
        }
        mark(what);
      };

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
      for (const [i, s] of servers.entries()) procs.push({ name: `server ${i}`, proc: s.proc });
      mark("servers listening");
      const workers = await Promise.all(
        servers.map((s, i) =>
          spawnProc(
            "src/commands/worker-main.ts",
            ["--server", s.url, "--agent", AGENT, "--concurrency", "8", "--worker-id", `w${i}`],
            /ready:/,
          ),
        ),
      );
      for (const [i, w] of workers.entries()) procs.push({ name: `worker w${i}`, proc: w });
      mark("workers ready");
      const rollouts = await store.enqueueRollouts(
        Array.from({ length: ROLLOUTS }, (_, index) => ({ input: { kind: "llm", index, reward: index / ROLLOUTS } })),
      );
      const ids = rollouts.map((r) => r.id);
      mark(`${ROLLOUTS} rollouts enqueued`);
      const enqueuedAt = Date.now();
      const succeeded = async () => (await counts()).succeeded ?? 0;
      // Restart the database once a third of the work is done; servers and workers ride it out.
      const third = Math.ceil(ROLLOUTS / 3);
      await until(`${third} succeeded`, async () => (await succeeded()) >= third, 250);
      const atRestart = await counts();
      mark(`at restart: ${JSON.stringify(atRestart)}`);
      // The restart must land mid-run, with rollouts still queued or running, or it proves nothing.
      expect(atRestart.succeeded ?? 0, await report("the work was done before the restart")).toBeLessThan(ROLLOUTS);
      await sqld.stop("SIGKILL");
      await new Promise((done) => setTimeout(done, 500));
      await sqld.start();
      mark("database SIGKILLed and restarted");
      await until(`all ${ROLLOUTS} ended`, async () => {
        const c = await counts();
        return (c.succeeded ?? 0) + (c.failed ?? 0) + (c.cancelled ?? 0) >= ROLLOUTS;
      });
      const runSeconds = (Date.now() - enqueuedAt) / 1000;
      for (const w of workers) w.child.kill("SIGTERM");
      for (const w of workers) expect(await w.exited, w.output()).toBe(0);
      for (const s of servers) s.proc.child.kill("SIGTERM");
      for (const s of servers) expect(await s.proc.exited, s.proc.output()).toBe(0);
      mark("processes stopped");

      // Claimed once, in the whole database: one attempt per rollout, and one LLM call per attempt,
      // none unattributed, none late.
      const one = async (query: string) => (await db.execute(query)).rows[0];
      const totals = await one(`SELECT
        (SELECT count(*) FROM rollouts) AS rollouts,
        (SELECT count(*) FROM rollouts WHERE status = 'succeeded') AS succeeded,
        (SELECT count(*) FROM attempts) AS attempts,
        (SELECT count(DISTINCT rollout_id) FROM attempts) AS claimed,
        (SELECT count(*) FROM transitions) AS transitions,
        (SELECT count(*) FROM transitions WHERE attempt_id IS NULL OR late = 1) AS stray,
        (SELECT count(DISTINCT attempt_id) FROM transitions) AS called`);
      const diagnosis = await report("totals differ");
      expect({ ...totals }, diagnosis).toEqual({
        rollouts: ROLLOUTS,
        succeeded: ROLLOUTS,
        attempts: ROLLOUTS,
        claimed: ROLLOUTS,
        transitions: ROLLOUTS,
        stray: 0,
        called: ROLLOUTS,
      });

      // The same through the Store API, rollout by rollout (16 at a time).
      const ended = await store.waitForRollouts(ids, { timeoutMs: 0 });
      expect(ended.length).toBe(ROLLOUTS);
      const perWorker = new Map<string, number>();
      const check = async (index: number) => {
        const rollout = ended[index];
        expect(rollout.status, JSON.stringify(rollout)).toBe("succeeded");
        expect(rollout.finalReward).toBe(index / ROLLOUTS);
        const attempts = await store.listAttempts(rollout.id);
        expect(attempts.length, `rollout ${rollout.id} claimed ${attempts.length} times`).toBe(1);
        expect(attempts[0]).toMatchObject({ status: "succeeded", lateFinish: null });
        perWorker.set(attempts[0].workerId, (perWorker.get(attempts[0].workerId) ?? 0) + 1);
        const transitions = await store.getTransitions({ attemptId: attempts[0].id });
        expect(transitions.length, `LLM calls recorded for ${attempts[0].id}`).toBe(1);
        expect(transitions[0].responseIds.length).toBeGreaterThan(0);
        expect(transitions[0].responseLogprobs?.length).toBe(transitions[0].responseIds.length);
      };
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < ROLLOUTS) await check(next++);
        }),
      );
      expect([...perWorker.keys()].sort()).toEqual(["w0", "w1"]);
      mark("checked");
      // The whole path's rate, database restart included (bounded by the model's decode on this
      // machine, not the store; bench/store.ts measures the store itself).
      const rate = (n: number) => (n / runSeconds).toFixed(1);
      mark(`${rate(Number(totals.attempts))} claims/s, ${rate(Number(totals.transitions))} transitions/s`);
      console.log(`[sqld-cluster] ${timeline.join("; ")}`);
    },
    DEADLINE_MS + 60_000,
  );
});
