// `fulgur demo` as a user runs it, shortened: the server starts on the built-in model, the
// calculator agent trains through it, JSON lines report steps and validations (the held-out split
// before and after, the selection split every step), and the last line is the "done" summary with
// accuracies as fractions and the step whose adapter was kept; the adapter, metrics, log and store exist.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { parseDemoArgs } from "../../src/demo/demo.ts";
import { openStore } from "../../src/store/libsql.ts";

const root = join(import.meta.dirname, "../..");
const dir = mkdtempSync(join(tmpdir(), "fulgur-demo-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[]) {
  return spawnSync(join(root, "node_modules/.bin/tsx"), [join(root, "src/cli.ts"), ...args], {
    cwd: root,
    encoding: "utf8",
    timeout: 280_000,
  });
}

it("trains the calculator agent and ends with a done line", async () => {
  const out = join(dir, "run");
  const r = cli([
    "demo",
    ...["--steps", "2", "--tasks-per-step", "2", "--samples", "2", "--val", "8", "--select", "8", "--val-every", "1"],
    // No --json: output that is not a terminal gets JSON lines by default.
    ...["--port", "0", "--seed", "3", "--out", out],
  ]);
  expect(r.status, r.stderr).toBe(0);
  const events = r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(events[0]).toMatchObject({ event: "start" });
  expect(events[0].dashboard).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
  expect(events.filter((e) => e.event === "step").map((e) => e.step)).toEqual([1, 2]);
  // The selection split before training, then after steps 1 and 2; the held-out split before and after.
  const validations = (split: string) => events.filter((e) => e.event === "validation" && e.split === split);
  expect(validations("selection").map((e) => e.step)).toEqual([0, 1, 2]);
  expect(validations("held-out").map((e) => e.step)).toEqual([0, 2]);
  const done = events[events.length - 1];
  expect(done).toMatchObject({ event: "done", steps: 2, seed: 3, valTasks: 8, selectTasks: 8 });
  expect([0, 1, 2]).toContain(done.selectedStep);
  for (const key of ["valAccuracyBefore", "valAccuracyAfter"]) {
    const x = done[key] as number;
    expect(x >= 0 && x <= 1 && Number.isInteger(x * 8), key).toBe(true);
  }
  // Per operation (the first 8 val tasks are 2 of each), consistent with the overall figures.
  const ops = done.byOperation as Record<string, { before: number; after: number }>;
  expect(Object.keys(ops).sort()).toEqual(["add", "div", "mul", "sub"]);
  const meanOf = (k: "before" | "after") => Object.values(ops).reduce((a, o) => a + o[k], 0) / 4;
  expect(meanOf("before")).toBeCloseTo(done.valAccuracyBefore as number, 9);
  expect(meanOf("after")).toBeCloseTo(done.valAccuracyAfter as number, 9);
  expect(done.valAccuracyBefore).toBe(validations("held-out")[0].accuracy);
  expect(done.valAccuracyAfter).toBe(validations("held-out")[1].accuracy);
  for (const f of ["adapter/adapter_config.json", "adapter/adapter_model.safetensors", "metrics.json", "train.jsonl"])
    expect(existsSync(join(out, f)), f).toBe(true);
  const metrics = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
  expect(metrics.history).toHaveLength(2);

  // Everything went through the server into the store: 2 steps × 2 tasks × 2 samples, 3 × 8
  // selection (mode val) and 2 × 8 held-out (mode test).
  const store = await openStore(`file:${join(out, "store.db")}`);
  try {
    const rollouts = await store.listRollouts({ limit: 1000 });
    expect(rollouts.filter((x) => x.mode === "train")).toHaveLength(8);
    expect(rollouts.filter((x) => x.mode === "val")).toHaveLength(24);
    expect(rollouts.filter((x) => x.mode === "test")).toHaveLength(16);
    const finished = rollouts.filter((x) => x.status === "succeeded");
    expect(finished.length).toBe(rollouts.length);
    const calls = await store.getTransitions({ rolloutId: finished[0].id });
    expect(calls.length).toBeGreaterThan(0);
  } finally {
    await store.close();
  }

  // The same --out again: refused before anything starts, and the first run's files are intact.
  const again = cli(["demo", "--steps", "1", "--port", "0", "--out", out, "--json"]);
  expect(again.status).toBe(1);
  expect(again.stderr).toMatch(/already holds a run/);
  expect(existsSync(join(out, "store.db"))).toBe(true);
}, 300_000);

it("explains bad options", () => {
  expect(() => parseDemoArgs(["--steps", "0"])).toThrow(/--steps must be an integer >= 1/);
  expect(() => parseDemoArgs(["--lr", "-1"])).toThrow(/--lr/);
  expect(() => parseDemoArgs(["--samples", "1"])).toThrow(/--samples must be an integer >= 2/);
  expect(parseDemoArgs(["--val", "1000"]).valTasks).toBe(128);
  expect(parseDemoArgs([]).outDir).toBe(""); // runDemo picks a free runs/demo-seed-N[-k]
  expect(parseDemoArgs([]).json).toBeUndefined(); // Progress decides: JSON unless a terminal
  expect(parseDemoArgs(["--json"]).json).toBe(true);
  const help = cli(["demo", "--help"]);
  expect(help.status).toBe(0);
  expect(help.stdout).toContain("--steps N");
});
