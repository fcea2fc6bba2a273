// The engine measures kernel variants in idle time (Engine.whenIdle, called by the scheduler when
// it runs dry): the shapes a request ran on the adapter defaults are timed on the real device
// and cached on disk, a request arriving meanwhile stops the measuring between classes (and is
// served), and tuned kernels generate the same greedy tokens.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adapterKind, cachePath, clearMemoryCache, idleTuningEnabled, pendingClasses } from "../../src/gpu/autotune.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { useGpu } from "../helpers/gpu.ts";

const gpu = useGpu();
const saved = { dir: process.env.FULGUR_CACHE_DIR, tune: process.env.FULGUR_AUTOTUNE };
let modelDir: string;
let cacheDir: string;
let model: Model;

beforeAll(async () => {
  modelDir = mkdtempSync(join(tmpdir(), "fulgur-idle-tune-model-"));
  // Every projection 64 × 64 (few shape classes: each costs a compile per candidate on lavapipe).
  await writeTinyModel(modelDir, { hidden: 64, layers: 1, heads: 4, kvHeads: 4, intermediate: 64, seed: 5 });
  model = await loadModel(modelDir, { gpu: gpu(), maxSlots: 4, maxSeqLen: 64 });
});

afterAll(() => {
  model?.dispose();
  process.env.FULGUR_CACHE_DIR = saved.dir;
  process.env.FULGUR_AUTOTUNE = saved.tune;
  rmSync(modelDir, { recursive: true, force: true });
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
});

/** A fresh, empty tuning cache with measuring on. */
function freshCache(): void {
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
  cacheDir = mkdtempSync(join(tmpdir(), "fulgur-idle-tune-cache-"));
  process.env.FULGUR_CACHE_DIR = cacheDir;
  process.env.FULGUR_AUTOTUNE = "1";
  clearMemoryCache(gpu());
}

const prompt = () => model.tokenizer.encode("12 + 30 = 42, and 7 * 6 = 42");

describe("engine tunes kernels when idle", () => {
  it("by default only on hardware adapters; FULGUR_AUTOTUNE=1 forces it, 0 forbids it", () => {
    delete process.env.FULGUR_AUTOTUNE;
    expect(idleTuningEnabled(gpu())).toBe(adapterKind(gpu()) === "gpu");
    process.env.FULGUR_AUTOTUNE = "1";
    expect(idleTuningEnabled(gpu())).toBe(true);
    process.env.FULGUR_AUTOTUNE = "0";
    expect(idleTuningEnabled(gpu())).toBe(false);
  });

  it("measures the classes a request ran on defaults and caches them on disk", { timeout: 600_000 }, async () => {
    process.env.FULGUR_AUTOTUNE = "0";
    const before = await model.generateOne(prompt(), { temperature: 0, maxTokens: 6, ignoreEos: true });

    freshCache();
    const first = await model.generateOne(prompt(), { temperature: 0, maxTokens: 6, ignoreEos: true });
    expect(first.tokens).toEqual(before.tokens);
    await model.engine.scheduler.idle();
    expect(pendingClasses(gpu())).toEqual([]);
    const choices = Object.keys(JSON.parse(readFileSync(cachePath(gpu()), "utf8")).choices);
    // the decode GEMV (one row) and the prompt's GEMM both ran and were measured
    expect(choices.some((c) => c.startsWith("gemv|") && c.includes(":m1:"))).toBe(true);
    expect(choices.some((c) => c.startsWith("gemm|"))).toBe(true);

    // the tuned kernels compute the same greedy continuation, and nothing is left to measure
    const tuned = await model.generateOne(prompt(), { temperature: 0, maxTokens: 6, ignoreEos: true });
    expect(tuned.tokens).toEqual(before.tokens);
    await model.engine.scheduler.idle();
    expect(pendingClasses(gpu())).toEqual([]);
  });

  it("a request arriving while it measures stops it between classes and is served first", {
    timeout: 600_000,
  }, async () => {
    freshCache();
    const engine = model.engine;
    await model.generateOne(prompt(), { temperature: 0, maxTokens: 4, ignoreEos: true });
    const noted = pendingClasses(gpu()).length;
    expect(noted).toBeGreaterThanOrEqual(2);
    // Wait until the idle work has taken its first class (it leaves the pending list)...
    while (pendingClasses(gpu()).length === noted) await new Promise((r) => setImmediate(r));
    // ...then ask for more: the class being measured finishes, the rest wait for the next lull.
    const late = await engine.submit(prompt(), { temperature: 0, maxTokens: 2, ignoreEos: true });
    expect(late.tokens).toHaveLength(2);
    const leftWhenServed = pendingClasses(gpu()).length;
    expect(leftWhenServed).toBeGreaterThan(0);
    expect(leftWhenServed).toBeLessThan(noted);
    await engine.scheduler.idle();
    expect(pendingClasses(gpu())).toEqual([]);
  });
});
