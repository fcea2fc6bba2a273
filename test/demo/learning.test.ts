// The demo's promise, shortened to fit CI: ten LightningRL steps on the built-in model raise the
// calculator agent's held-out accuracy. Before and after are 64 held-out tasks, one greedy rollout
// each (before: every add/sub right, no mul/div, 50 %). Training oscillates (an operation can
// dip for a few steps and come back; bench/RESULTS.md), so the adapter measured is the one the
// demo keeps as users run it: the best of steps 0, 5 and 10 on a 32-task selection split. Kept
// at step 0 (nothing learned) means no gain, so a 10-point bar still fails when learning breaks.
// With the last adapter instead, the gain ranged +9 to +48 points over four runs of this seed;
// with the choice, +44 and +47 in two.
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
      valEvery: 5,
      selectTasks: 32,
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
      selections: r.selections.map((v) => [v.step, v.accuracy]),
      selectedStep: r.selectedStep,
      minutes: r.seconds / 60,
    }),
  );
  expect(r.steps).toBe(10);
  expect(r.selections.map((v) => v.step)).toEqual([0, 5, 10]);
  expect(r.valAccuracyBefore).toBeGreaterThan(0.1); // the base model solves some tasks…
  expect(r.valAccuracyBefore).toBeLessThan(0.6); // …but not most
  expect(r.valAccuracyAfter - r.valAccuracyBefore).toBeGreaterThanOrEqual(0.1);
  expect(r.rewardLast).toBeGreaterThan(r.rewardFirst);
}, 600_000);
