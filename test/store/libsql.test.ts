// The shared Store suite on libSQL (a file in a temp dir, and :memory:), plus what only a local
// database has: migrations from any cwd, WAL, persistence, and claiming from separate processes.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";
import { afterAll, describe, expect, it } from "vitest";
import { openStore, type Store, type SweepResult, startSweeper } from "../../src/store/index.ts";
import { ManualClock, storeCases } from "./store.cases.ts";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "fulgur-store-"));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

storeCases("libSQL file store", async () => {
  const clock = new ManualClock();
  const url = `file:${join(tempDir(), "store.db")}`;
  const opened: Store[] = [];
  const connect = async () => {
    const store = await openStore(url, { clock: clock.read });
    opened.push(store);
    return store;
  };
  const store = await connect();
  return { store, connect, clock, close: async () => void (await Promise.all(opened.map((s) => s.close()))) };
});

storeCases("libSQL :memory: store", async () => {
  const clock = new ManualClock();
  const store = await openStore(":memory:", { clock: clock.read });
  // An in-memory database lives on one connection, so "other clients" share the store object:
  // the concurrent cases still interleave many callers through it.
  return { store, connect: async () => store, clock, close: () => store.close() };
});

describe("libSQL store on a local file", () => {
  it("opens from another working directory, with WAL, and persists across reopen", async () => {
    const dir = tempDir();
    const previous = process.cwd();
    process.chdir(dir);
    try {
      // A relative URL: migrations must be found relative to the module, not the cwd.
      const store = await openStore("file:relative.db");
      const r = await store.enqueueRollout({ input: { persisted: true } });
      await store.close();
      const reopened = await openStore(`file:${join(dir, "relative.db")}`);
      expect((await reopened.getRollout(r.id)).input).toEqual({ persisted: true });
      await reopened.close();
    } finally {
      process.chdir(previous);
    }
    const raw = createClient({ url: `file:${join(dir, "relative.db")}` });
    const mode = await raw.execute("PRAGMA journal_mode");
    expect(mode.rows[0].journal_mode).toBe("wal");
    const tables = await raw.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
    expect(tables.rows.map((row) => row.name)).toEqual(
      expect.arrayContaining([
        "attempts",
        "resources",
        "rewards",
        "rollouts",
        "spans",
        "training_steps",
        "transitions",
      ]),
    );
    const applied = await raw.execute("SELECT count(*) AS n FROM __drizzle_migrations");
    expect(Number(applied.rows[0].n)).toBeGreaterThan(0);
    raw.close();
  });

  it("survives many stores opening (and migrating) a fresh file at once", async () => {
    const url = `file:${join(tempDir(), "race.db")}`;
    const stores = await Promise.all(Array.from({ length: 8 }, () => openStore(url)));
    await Promise.all(stores.map((s, i) => s.enqueueRollout({ input: i })));
    expect((await stores[0].listRollouts()).length).toBe(8);
    await Promise.all(stores.map((s) => s.close()));
  });

  it("sweeps periodically with startSweeper, without overlapping sweeps", async () => {
    const clock = new ManualClock();
    const store = await openStore(":memory:", { clock: clock.read });
    const r = await store.enqueueRollout({ input: 1, config: { maxAttempts: 1, unresponsiveTimeoutMs: 1000 } });
    await store.claimRollout({ workerId: "w" });
    clock.advance(5000);
    const results: SweepResult[] = [];
    const sweeper = startSweeper(store, { intervalMs: 10, onSweep: (result) => results.push(result) });
    const deadline = Date.now() + 5000;
    while ((await store.getRollout(r.id)).status !== "failed" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await sweeper.stop();
    expect((await store.getRollout(r.id)).status).toBe("failed");
    expect(results).toContainEqual({ timedOut: 0, unresponsive: 1, requeued: 0, failed: 1 });
    expect(() => startSweeper(store, { intervalMs: 0 })).toThrow(/positive/);
    await store.close();
  });

  it("rejects a bad URL with a clear error", async () => {
    await expect(openStore("")).rejects.toThrow(/non-empty string/);
    await expect(openStore("ftp://nowhere/db")).rejects.toThrow();
  });

  it("lets 8 separate processes claim 100 rollouts, each exactly once", async () => {
    const url = `file:${join(tempDir(), "procs.db")}`;
    const store = await openStore(url);
    await store.enqueueRollouts(Array.from({ length: 100 }, (_, i) => ({ input: { i } })));
    const worker = fileURLToPath(new URL("./claim-worker.ts", import.meta.url));
    const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
    const children = Array.from({ length: 8 }, (_, w) =>
      spawn(process.execPath, ["--import", "tsx", worker, url, `proc-${w}`], { cwd: repoRoot }),
    );
    const ready: Promise<void>[] = [];
    const runs = children.map(
      (child, w) =>
        new Promise<string[]>((resolve, reject) => {
          let out = "";
          let err = "";
          let signalReady: () => void = () => {};
          ready.push(new Promise<void>((r) => (signalReady = r)));
          child.stdout.on("data", (d) => {
            out += d;
            if (out.startsWith("ready\n")) signalReady();
          });
          child.stderr.on("data", (d) => {
            err += d;
          });
          child.on("error", reject);
          child.on("close", (code) => {
            if (code !== 0) reject(new Error(`worker ${w} exited with ${code}: ${err}`));
            else resolve(JSON.parse(out.trim().split("\n").at(-1) ?? "[]") as string[]);
          });
        }),
    );
    // Every worker has its store open before any starts claiming: they contend for real.
    await Promise.all(ready);
    for (const child of children) child.stdin.write("go\n");
    const perWorker = await Promise.all(runs);
    expect(perWorker.filter((ids) => ids.length > 0).length).toBeGreaterThan(1);
    const claimed = perWorker.flat();
    expect(claimed.length).toBe(100);
    expect(new Set(claimed).size).toBe(100);
    const rollouts = await store.listRollouts({ limit: 1000 });
    expect(rollouts.filter((r) => r.status === "succeeded" && r.attemptCount === 1).length).toBe(100);
    await store.close();
  });
});
