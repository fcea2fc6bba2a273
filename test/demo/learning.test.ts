// The demo's promise, shortened to fit CI: ten LightningRL steps on the built-in model raise the
// calculator agent's held-out accuracy. Before and after are 64 held-out tasks, one greedy rollout
// each (before: every add/sub right, no mul/div, 50 %). No selection split here (--select 0), so
// the adapter measured is the one the ten steps made, and the run costs what it did before.
// See bench/RESULTS.md for what ten steps gain; a 10-point bar fails only when learning breaks.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { DEMO_DEFAULTS, runDemo } from "../../src/demo/demo.ts";

const dir = mkdtempSync(join(tmpdir(), "fulgur-demo-learning-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("ten RL steps raise held-out accuracy by at least 10 points", async () => {
  const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
  const r = await runDemo(
    {
      ...DEMO_DEFAULTS,
      steps: 10,
      valTasks: 64,
      valEvery: 10,
      selectTasks: 0,
      port: 0,
      json: true,
      seed: 11,
      outDir: join(dir, "run"),
    },
    quiet,
  );
  console.log(
    JSON.stringify({
      valAccuracyBefore: r.valAccuracyBefore,
      valAccuracyAfter: r.valAccuracyAfter,
      minutes: r.seconds / 60,
    }),
  );
  expect(r.steps).toBe(10);
  expect(r.valAccuracyBefore).toBeGreaterThan(0.1); // the base model solves some tasks…
  expect(r.valAccuracyBefore).toBeLessThan(0.6); // …but not most
  expect(r.valAccuracyAfter - r.valAccuracyBefore).toBeGreaterThanOrEqual(0.1);
  expect(r.rewardLast).toBeGreaterThan(r.rewardFirst);
}, 600_000);
