// Asynchronous (off-policy) LightningRL: the truncated importance weights to the exact number on
// a hand-built batch, and on a real store and model that the next step's rollouts are enqueued
// before the current update ends (observed in the event order, not by timing), that samples more
// than maxStaleness adapter versions old are dropped and counted, and that staleness and the
// importance weights reach the step metrics. The "runner" here is the test itself: it claims the
// rollouts from the store and records each call with the adapter version that was serving when
// its batch was enqueued — what an agent served at once would record.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { openStore } from "../../src/store/libsql.ts";
import type { Store } from "../../src/store/types.ts";
import type { TrainerEvent } from "../../src/trainer/algorithm.ts";
import { resolveAlgorithmConfig } from "../../src/trainer/config.ts";
import { LightningRL, staleness } from "../../src/trainer/lightning-rl.ts";
import { ppoLoss } from "../../src/trainer/ppo.ts";
import { Trainer } from "../../src/trainer/trainer.ts";
import { useGpu } from "../helpers/gpu.ts";

describe("truncated importance sampling (ppo.ts)", () => {
  it("weights each token by min(π_old/π_behaviour, C) with π_old the current policy", () => {
    // Four trained tokens (one masked); current logprobs vs the behaviour policy's.
    const logprobs = new Float32Array([-0.7, -1.0, -0.5, -2.0, -0.1]);
    const behaviour = new Float32Array([-0.3, -1.2, -1.5, -1.9, -0.1]);
    const mask = new Float32Array([0, 1, 1, 1, 1]);
    const advantages = new Float32Array([0.5, 0.5, 1.5, -1, 1]);
    const C = 2;
    const r = ppoLoss(
      { logprobs, oldLogprobs: behaviour, mask, advantages },
      { clipLow: 0.2, clipHigh: 0.28, isTruncation: C },
    );
    // ρ = exp(lp − behaviour) in f32 inputs: e^0.2, e^1.0 (> C, cut to 2), e^−0.1, e^0.
    const rho = [1, 2, 3, 4].map((t) => Math.exp(logprobs[t] - behaviour[t]));
    const w = rho.map((x) => Math.min(x, C));
    expect(rho[1]).toBeGreaterThan(C);
    expect(w[1]).toBe(2);
    const n = 4;
    // The ratio to π_old (= the current parameters, detached) is 1: nothing is clipped and
    // dL/dlp_t = −(1/N)·w_t·A_t, L = −(1/N)·Σ w_t·A_t.
    const expectedGrad = [0, ...w.map((wt, i) => (-wt * advantages[i + 1]) / n)];
    expect(Array.from(r.dLogprobs).map((x) => Number(x.toFixed(6)))).toEqual(
      expectedGrad.map((x) => Number(Math.fround(x).toFixed(6))),
    );
    expect(r.loss).toBeCloseTo(-w.reduce((a, wt, i) => a + wt * advantages[i + 1], 0) / n, 12);
    expect(r.metrics.clipFraction).toBe(0);
    expect(r.metrics.ratioMean).toBe(1);
    const is = r.metrics.importance!;
    expect(is.sum).toBeCloseTo(
      w.reduce((a, b) => a + b, 0),
      12,
    );
    expect(is.min).toBeCloseTo(Math.min(...w), 12);
    expect(is.max).toBe(2);
    expect(is.truncated).toBe(1);
    // Without the option the same batch is the ordinary PPO ratio to the behaviour policy, which
    // clips token 2 (ratio e^1.0 > 1.28 with A > 0): a different loss, no importance metrics.
    const plain = ppoLoss({ logprobs, oldLogprobs: behaviour, mask, advantages }, { clipLow: 0.2, clipHigh: 0.28 });
    expect(plain.metrics.importance).toBeUndefined();
    expect(plain.metrics.clipFraction).toBeGreaterThan(0);
  });

  it("counts staleness in adapter versions and validates the async options", () => {
    expect(staleness({ adapterVersion: 3 }, 5)).toBe(2);
    expect(staleness({ adapterVersion: 5 }, 5)).toBe(0);
    expect(staleness({ adapterVersion: null }, 5)).toBe(0);
    expect(resolveAlgorithmConfig({}).async).toBeNull();
    expect(resolveAlgorithmConfig({ async: { maxStaleness: 1 } }).async).toEqual({
      maxStaleness: 1,
      isTruncation: 2,
      lookahead: 1,
    });
    expect(() => resolveAlgorithmConfig({ async: { maxStaleness: 0 } })).toThrow(/maxStaleness/);
    expect(() => resolveAlgorithmConfig({ async: { maxStaleness: 1, isTruncation: 0.5 } })).toThrow(/isTruncation/);
  });
});

describe("asynchronous LightningRL on a real store and model", () => {
  const gpu = useGpu();
  let dir: string;
  let model: Model;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fulgur-async-"));
    await writeTinyModel(join(dir, "tiny"), { hidden: 32, layers: 1, heads: 4, kvHeads: 2, intermediate: 48, seed: 5 });
    model = await loadModel(join(dir, "tiny"), { gpu: gpu(), maxSlots: 4, maxSeqLen: 64 });
  });

  afterAll(() => {
    model?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Runs `steps` steps with the test as the runner. Each call is recorded with the adapter version
   * serving when its batch was enqueued; rewards alternate 0/1 within a group.
   */
  async function run(name: string, config: ConstructorParameters<typeof LightningRL>[0], steps: number) {
    const store: Store = await openStore(`file:${join(dir, `${name}.db`)}`);
    const events: TrainerEvent[] = [];
    const versionAtEnqueue = new Map<number, number>();
    const algorithm = new LightningRL({ valEvery: 0, lora: { rank: 4, alpha: 8, seed: 3 }, ...config });
    const trainer = new Trainer({
      store,
      model,
      algorithm,
      onEvent: (e) => {
        events.push(e);
        if (e.type === "enqueued") versionAtEnqueue.set(e.forStep, model.adapterVersion ?? 0);
      },
    });
    let stop = false;
    const worker = (async () => {
      let n = 0;
      while (!stop) {
        const claim = await store.claimRollout({ workerId: "test-runner" });
        if (!claim) {
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        const forStep = Number(claim.rollout.groupId!.split("-")[1]);
        await store.addTransitions([
          {
            rolloutId: claim.rollout.id,
            attemptId: claim.attempt.id,
            promptIds: [1, 2, 3, 4],
            responseIds: [5 + (n % 7), 9],
            responseLogprobs: [-9, -8.5],
            adapterVersion: String(versionAtEnqueue.get(forStep)),
          },
        ]);
        await store.finishAttempt(claim.attempt.id, { status: "succeeded", reward: n++ % 2 });
      }
    })();
    try {
      const fit = await trainer.fit({ train: [{ q: 1 }, { q: 2 }] }, steps);
      return { fit, events, store };
    } finally {
      stop = true;
      await worker;
      await trainer.close();
      model.removeAdapter();
    }
  }

  const index = (events: TrainerEvent[], pred: (e: TrainerEvent) => boolean) => events.findIndex(pred);

  it("enqueues the next rollouts before the update ends, drops samples beyond maxStaleness, reports IS weights", async () => {
    const algorithm = { tasksPerStep: 2, samplesPerTask: 2 };
    const sync = await run("sync", { algorithm }, 2);
    // Synchronous: step 2's rollouts are enqueued only after update 1 has ended.
    const syncEnqueued2 = index(sync.events, (e) => e.type === "enqueued" && e.forStep === 2);
    const syncUpdate1End = index(sync.events, (e) => e.type === "update" && e.step === 1 && e.phase === "end");
    expect(syncUpdate1End).toBeGreaterThanOrEqual(0);
    expect(syncEnqueued2).toBeGreaterThan(syncUpdate1End);
    expect(sync.fit.history.every((m) => m.stalenessMax === 0 && m.droppedStale === 0)).toBe(true);
    expect(sync.fit.history[0].isWeightMean).toBeUndefined();
    await sync.store.close();

    // Asynchronous, two steps ahead, at most one version stale: batches 2 and 3 are enqueued
    // (and sampled) under version v1 before update 1 ends; at step 2 the adapter is v2 (1 behind,
    // kept), at step 3 it is v3 (2 behind: every sample dropped).
    const a = await run(
      "async",
      { algorithm: { ...algorithm, async: { maxStaleness: 1, lookahead: 2, isTruncation: 1.5 } } },
      3,
    );
    const update1Start = index(a.events, (e) => e.type === "update" && e.step === 1 && e.phase === "start");
    const update1End = index(a.events, (e) => e.type === "update" && e.step === 1 && e.phase === "end");
    for (const forStep of [2, 3]) {
      const at = index(a.events, (e) => e.type === "enqueued" && e.forStep === forStep);
      expect(at, `batch ${forStep}`).toBeGreaterThanOrEqual(0);
      expect(at, `batch ${forStep} is enqueued before update 1 starts`).toBeLessThan(update1Start);
    }
    expect(update1End).toBeGreaterThan(update1Start);
    const [m1, m2, m3] = a.fit.history;
    const perStep = algorithm.tasksPerStep * algorithm.samplesPerTask; // one call per rollout
    expect(m1).toMatchObject({ stalenessMax: 0, droppedStale: 0, samples: perStep });
    expect(m2).toMatchObject({ stalenessMean: 1, stalenessMax: 1, droppedStale: 0, samples: perStep });
    expect(m3).toMatchObject({
      stalenessMean: 2,
      stalenessMax: 2,
      droppedStale: perStep,
      samples: 0,
      trainedTokens: 0,
    });
    // Trained tokens carry weights in (0, C]; their mean lies between min and max.
    for (const m of [m1, m2]) {
      expect(m.isWeightMin).toBeGreaterThan(0);
      expect(m.isWeightMin).toBeLessThanOrEqual(m.isWeightMean);
      expect(m.isWeightMean).toBeLessThanOrEqual(m.isWeightMax);
      expect(m.isWeightMax).toBeLessThanOrEqual(1.5);
      expect(m.isTruncatedFraction).toBeGreaterThanOrEqual(0);
      expect(m.isTruncatedFraction).toBeLessThanOrEqual(1);
    }
    // The recorded logprobs (−9, −8.5) are far below the tiny model's (≈ −ln 512), so weights hit C.
    expect(m1.isTruncatedFraction).toBeGreaterThan(0);
    expect(m1.isWeightMax).toBe(1.5);
    // The metrics reach the store (dashboard) too.
    const stored = await a.store.listTrainingSteps();
    expect(stored.filter((s) => "droppedStale" in s.metrics).map((s) => s.metrics.droppedStale)).toEqual([
      0,
      0,
      perStep,
    ]);
    await a.store.close();
  });
});
