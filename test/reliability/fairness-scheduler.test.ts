// Issue 15 item 5: one request with many sequences must not make a small request wait for all of
// them. The real engine (tiny model on the GPU, 4 slots) gets a 40-sequence request, then a
// 1-sequence request; free slots go round-robin across requests, so the small one finishes
// while most of the big one is still waiting. First come, first served (the old admission) made
// it finish after at least 36 of the 40.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";

let dir: string;
let model: Model;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-fair-"));
  await writeTinyModel(dir, { hidden: 32, layers: 1, heads: 2, kvHeads: 1, intermediate: 32, seed: 9 });
  model = await loadModel(dir, { maxSlots: 4, maxSeqLen: 64 });
});

afterAll(() => {
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

it("a small request is admitted before a big request's backlog", async () => {
  const order: string[] = [];
  const big = { request: "big" };
  const small = { request: "small" };
  const options = { temperature: 0, maxTokens: 8, ignoreEos: true };
  const bigDone = Array.from({ length: 40 }, (_, i) =>
    model.engine.submit([1, 2, 3 + (i % 5)], { ...options, group: big }).then(() => order.push("big")),
  );
  // Let the big request take every slot first.
  await new Promise((r) => setTimeout(r, 0));
  const smallDone = model.engine.submit([4, 5, 6], { ...options, group: small }).then(() => order.push("small"));
  await Promise.all([...bigDone, smallDone]);
  const bigBefore = order.indexOf("small");
  // With 4 slots the small request gets the first slot that frees: at most the 4 running big
  // sequences (plus ones finishing in the same step) end before it.
  expect(bigBefore).toBeLessThanOrEqual(8);
});

it("sequences without a group keep first-come order among themselves", async () => {
  const order: number[] = [];
  const done = Array.from({ length: 12 }, (_, i) =>
    model.engine.submit([1, 2, 3], { temperature: 0, maxTokens: 4, ignoreEos: true }).then(() => order.push(i)),
  );
  await Promise.all(done);
  // Equal work in FIFO admission: the first four finish before the last four start.
  expect(Math.max(...order.slice(0, 4))).toBeLessThan(8);
});
