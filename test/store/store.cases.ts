// The Store behaviour suite, written once and run against every implementation (libSQL file,
// libSQL :memory:, HTTP client → server). A harness supplies the store, a way to open further
// independent clients of the same backend, and the manual clock the backend runs on.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ConflictError,
  NotFoundError,
  type Store,
  StoreValidationError,
  type TransitionInput,
} from "../../src/store/index.ts";

/** A clock tests move by hand, so expiry is tested without sleeping. */
export class ManualClock {
  now = 1_700_000_000_000;
  readonly read = (): number => this.now;
  advance(ms: number): void {
    this.now += ms;
  }
}

export interface StoreHarness {
  store: Store;
  /** Another independent client of the same backend (a new connection or a new HTTP client). */
  connect(): Promise<Store>;
  clock: ManualClock;
  close(): Promise<void>;
}

async function expectError<T extends Error>(
  promise: Promise<unknown>,
  type: new (...args: never[]) => T,
  match: Partial<{ code: string; param: string | null }> = {},
): Promise<T> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error, `expected ${type.name}`).toBeInstanceOf(type);
  expect(error).toMatchObject(match);
  return error as T;
}

/** Registers the shared Store tests under `name`. */
export function storeCases(name: string, makeHarness: () => Promise<StoreHarness>): void {
  describe(name, () => {
    let h: StoreHarness;
    let store: Store;
    beforeEach(async () => {
      h = await makeHarness();
      store = h.store;
    });
    afterEach(async () => {
      await h.close();
    });

    it("enqueues, gets and lists rollouts with filters", async () => {
      const a = await store.enqueueRollout({ input: { question: "2+2" }, groupId: "g1", metadata: { source: "t" } });
      const [b, c] = await store.enqueueRollouts([
        { input: [1, 2], mode: "val", groupId: "g1" },
        { input: "plain", mode: "test", config: { maxAttempts: 5, timeoutMs: 1000 } },
      ]);
      expect(a).toMatchObject({ status: "queuing", mode: "train", groupId: "g1", attemptCount: 0, finalReward: null });
      expect(a.id).toMatch(/^ro-/);
      expect(a.config).toEqual({
        maxAttempts: 3,
        timeoutMs: null,
        unresponsiveTimeoutMs: 120_000,
        retryOn: ["failed", "timeout", "unresponsive"],
      });
      expect(c.config).toMatchObject({ maxAttempts: 5, timeoutMs: 1000 });
      expect(await store.getRollout(a.id)).toEqual(a);
      expect((await store.listRollouts()).map((r) => r.id)).toEqual([a.id, b.id, c.id]);
      expect((await store.listRollouts({ order: "desc", limit: 2 })).map((r) => r.id)).toEqual([c.id, b.id]);
      expect((await store.listRollouts({ offset: 1, limit: 1 })).map((r) => r.id)).toEqual([b.id]);
      expect((await store.listRollouts({ groupId: "g1" })).map((r) => r.id)).toEqual([a.id, b.id]);
      expect((await store.listRollouts({ mode: "test" })).map((r) => r.id)).toEqual([c.id]);
      expect((await store.listRollouts({ status: ["queuing"] })).length).toBe(3);
      expect(await store.listRollouts({ status: "succeeded" })).toEqual([]);
      await expectError(store.getRollout("ro-missing"), NotFoundError, { code: "rollout_not_found" });
    });

    it("enqueues a large batch in order", async () => {
      const inputs = Array.from({ length: 1201 }, (_, i) => ({ input: { i } }));
      const rollouts = await store.enqueueRollouts(inputs);
      expect(rollouts.map((r) => (r.input as { i: number }).i)).toEqual(inputs.map((x) => x.input.i));
      const listed = await store.listRollouts({ limit: 10_000 });
      expect(listed.map((r) => r.id)).toEqual(rollouts.map((r) => r.id));
    });

    it("claims the oldest queued rollout, by mode, creating numbered attempts", async () => {
      expect(await store.claimRollout({ workerId: "w" })).toBeNull();
      const [t1, v1, t2] = await store.enqueueRollouts([{ input: 1 }, { input: 2, mode: "val" }, { input: 3 }]);
      const claimVal = await store.claimRollout({ workerId: "w-val", mode: "val" });
      expect(claimVal?.rollout.id).toBe(v1.id);
      const first = await store.claimRollout({ workerId: "w1" });
      expect(first?.rollout).toMatchObject({ id: t1.id, status: "preparing", attemptCount: 1 });
      expect(first?.attempt).toMatchObject({ rolloutId: t1.id, attemptNo: 1, workerId: "w1", status: "preparing" });
      expect(first?.attempt.id).toMatch(/^at-/);
      expect(first?.rollout.currentAttemptId).toBe(first?.attempt.id);
      expect((await store.claimRollout({ workerId: "w2" }))?.rollout.id).toBe(t2.id);
      expect(await store.claimRollout({ workerId: "w3" })).toBeNull();
      expect(await store.claimRollout({ workerId: "w3", mode: "val" })).toBeNull();
      expect(await store.listAttempts(t1.id)).toEqual([first?.attempt]);
    });

    it("resolves the latest resources version at claim time unless pinned", async () => {
      await store.addResources("policy", { adapter: "v1" });
      const [floating, pinned] = await store.enqueueRollouts([
        { input: 1, resources: { name: "policy" } },
        { input: 2, resources: { name: "policy", version: 1 } },
      ]);
      expect(floating.resourcesVersion).toBeNull();
      expect(pinned.resourcesVersion).toBe(1);
      const v2 = await store.addResources("policy", { adapter: "v2" });
      expect(v2.version).toBe(2);
      const a = await store.claimRollout({ workerId: "w" });
      const b = await store.claimRollout({ workerId: "w" });
      expect(a?.rollout.id).toBe(floating.id);
      expect(a?.attempt.resourcesVersion).toBe(2);
      expect(a?.rollout.resourcesVersion).toBe(2);
      expect(b?.attempt.resourcesVersion).toBe(1);
    });

    it("keeps versioned resources with latest semantics", async () => {
      await expectError(store.getResources("prompt"), NotFoundError, { code: "resources_not_found" });
      const r1 = await store.addResources("prompt", { template: "Q: {q}" });
      const r2 = await store.addResources("prompt", { template: "Question: {q}" });
      await store.addResources("other", 42);
      expect([r1.version, r2.version]).toEqual([1, 2]);
      expect(await store.getResources("prompt")).toMatchObject({ version: 2, value: { template: "Question: {q}" } });
      expect(await store.getResources("prompt", 1)).toMatchObject({ version: 1, value: { template: "Q: {q}" } });
      expect((await store.getResources("other")).value).toBe(42);
      await expectError(store.getResources("prompt", 3), NotFoundError);
      await expectError(store.getResources("bad name!"), StoreValidationError, { param: "name" });
    });

    it("heartbeats move an attempt and its rollout to running; ended attempts conflict", async () => {
      const r = await store.enqueueRollout({ input: 1 });
      const claim = (await store.claimRollout({ workerId: "w" }))!;
      h.clock.advance(500);
      const beat = await store.heartbeat(claim.attempt.id);
      expect(beat).toMatchObject({ status: "running", heartbeatAt: h.clock.now });
      expect((await store.getRollout(r.id)).status).toBe("running");
      await store.finishAttempt(claim.attempt.id, { status: "succeeded" });
      await expectError(store.heartbeat(claim.attempt.id), ConflictError, { code: "attempt_finished" });
      await expectError(store.heartbeat("at-missing"), NotFoundError, { code: "attempt_not_found" });
    });

    it("finishing with success ends the rollout with the attempt's reward", async () => {
      const [a, b] = await store.enqueueRollouts([{ input: 1 }, { input: 2 }]);
      const ca = (await store.claimRollout({ workerId: "w" }))!;
      const cb = (await store.claimRollout({ workerId: "w" }))!;
      const explicit = await store.finishAttempt(ca.attempt.id, { status: "succeeded", reward: 0.75 });
      expect(explicit.late).toBe(false);
      expect(explicit.attempt).toMatchObject({ status: "succeeded", reward: 0.75, endedAt: h.clock.now });
      expect(explicit.rollout).toMatchObject({ id: a.id, status: "succeeded", finalReward: 0.75 });
      // Without an explicit reward, the last reward recorded on the attempt is its final reward.
      await store.addRewards([{ attemptId: cb.attempt.id, value: 0.1 }]);
      await store.addRewards([{ attemptId: cb.attempt.id, value: -0.4, dimensions: { format: 1, answer: -1 } }]);
      const implicit = await store.finishAttempt(cb.attempt.id, { status: "succeeded" });
      expect(implicit.rollout).toMatchObject({ id: b.id, status: "succeeded", finalReward: -0.4 });
      const rewards = await store.getRewards({ rolloutId: b.id });
      expect(rewards.map((r) => r.value)).toEqual([0.1, -0.4]);
      expect(rewards[1]).toMatchObject({ dimensions: { format: 1, answer: -1 }, late: false, rolloutId: b.id });
      expect((await store.getRewards({ attemptId: ca.attempt.id })).map((r) => r.value)).toEqual([0.75]);
    });

    it("requeues failed attempts until maxAttempts, then fails the rollout", async () => {
      const r = await store.enqueueRollout({ input: 1, config: { maxAttempts: 2 } });
      const once = await store.enqueueRollout({ input: 2, config: { maxAttempts: 3, retryOn: ["unresponsive"] } });
      const c1 = (await store.claimRollout({ workerId: "w1" }))!;
      const f1 = await store.finishAttempt(c1.attempt.id, { status: "failed", error: "tool crashed" });
      expect(f1.attempt).toMatchObject({ status: "failed", error: { message: "tool crashed" } });
      expect(f1.rollout).toMatchObject({ status: "requeuing", endedAt: null, finalReward: null });
      // The requeued rollout is older than `once`, so it is claimed first.
      const c2 = (await store.claimRollout({ workerId: "w2" }))!;
      expect(c2.rollout.id).toBe(r.id);
      expect(c2.attempt.attemptNo).toBe(2);
      const f2 = await store.finishAttempt(c2.attempt.id, {
        status: "failed",
        error: { message: "again", type: "ValueError" },
        reward: 0,
      });
      expect(f2.rollout).toMatchObject({ status: "failed", attemptCount: 2, finalReward: 0 });
      expect((await store.listAttempts(r.id)).map((a) => [a.attemptNo, a.status])).toEqual([
        [1, "failed"],
        [2, "failed"],
      ]);
      // A failure that is not in retryOn ends the rollout at once.
      const c3 = (await store.claimRollout({ workerId: "w3" }))!;
      expect(c3.rollout.id).toBe(once.id);
      expect((await store.finishAttempt(c3.attempt.id, { status: "failed" })).rollout.status).toBe("failed");
      expect(await store.claimRollout({ workerId: "w4" })).toBeNull();
    });

    it("expires silent attempts: unresponsive → requeued → reclaimed → failed after maxAttempts", async () => {
      const r = await store.enqueueRollout({ input: 1, config: { maxAttempts: 2, unresponsiveTimeoutMs: 1000 } });
      const c1 = (await store.claimRollout({ workerId: "w1" }))!;
      h.clock.advance(900);
      await store.heartbeat(c1.attempt.id);
      h.clock.advance(900);
      expect(await store.sweep()).toEqual({ timedOut: 0, unresponsive: 0, requeued: 0, failed: 0 });
      h.clock.advance(200);
      expect(await store.sweep()).toEqual({ timedOut: 0, unresponsive: 1, requeued: 1, failed: 0 });
      expect(await store.getAttempt(c1.attempt.id)).toMatchObject({
        status: "unresponsive",
        error: { type: "unresponsive" },
      });
      expect((await store.getRollout(r.id)).status).toBe("requeuing");
      const c2 = (await store.claimRollout({ workerId: "w2" }))!;
      expect(c2.rollout.id).toBe(r.id);
      expect(c2.attempt.attemptNo).toBe(2);
      // Writes count as activity: a transition keeps the attempt alive like a heartbeat.
      h.clock.advance(800);
      await store.addTransitions([{ attemptId: c2.attempt.id, promptIds: [1], responseIds: [2] }]);
      h.clock.advance(800);
      expect((await store.sweep()).unresponsive).toBe(0);
      h.clock.advance(300);
      // claimRollout sweeps too: the second silent attempt exhausts maxAttempts.
      expect(await store.claimRollout({ workerId: "w3" })).toBeNull();
      expect(await store.getRollout(r.id)).toMatchObject({ status: "failed", attemptCount: 2 });
      expect(await store.getAttempt(c2.attempt.id)).toMatchObject({ status: "unresponsive" });
    });

    it("times out attempts that run past the rollout timeout even while heartbeating", async () => {
      const r = await store.enqueueRollout({
        input: 1,
        config: { maxAttempts: 1, timeoutMs: 5000, unresponsiveTimeoutMs: 1000 },
      });
      const c = (await store.claimRollout({ workerId: "w" }))!;
      await store.addRewards([{ attemptId: c.attempt.id, value: 0.3 }]);
      for (let i = 0; i < 6; i++) {
        h.clock.advance(900);
        if (i < 5) await store.heartbeat(c.attempt.id);
      }
      expect(await store.sweep()).toEqual({ timedOut: 1, unresponsive: 0, requeued: 0, failed: 1 });
      expect(await store.getAttempt(c.attempt.id)).toMatchObject({ status: "timeout", reward: 0.3 });
      expect(await store.getRollout(r.id)).toMatchObject({ status: "failed", finalReward: 0.3 });
    });

    it("keeps late writes to an ended attempt, flagged, and never applies a late finish", async () => {
      const r = await store.enqueueRollout({ input: 1, config: { maxAttempts: 2, unresponsiveTimeoutMs: 100 } });
      const c1 = (await store.claimRollout({ workerId: "slow" }))!;
      const onTime = await store.addSpans([{ attemptId: c1.attempt.id, name: "before", startTime: 1 }]);
      expect(onTime[0].late).toBe(false);
      h.clock.advance(1000);
      const c2 = (await store.claimRollout({ workerId: "fast" }))!; // sweeps c1 away, reclaims
      expect(c2.rollout.id).toBe(r.id);
      const [span] = await store.addSpans([{ attemptId: c1.attempt.id, name: "after", kind: "tool", startTime: 2 }]);
      const [tr] = await store.addTransitions([{ attemptId: c1.attempt.id, promptIds: [5], responseIds: [6] }]);
      const [rw] = await store.addRewards([{ attemptId: c1.attempt.id, value: 1 }]);
      expect([span.late, tr.late, rw.late]).toEqual([true, true, true]);
      const lateFinish = await store.finishAttempt(c1.attempt.id, { status: "succeeded", reward: 1, error: null });
      expect(lateFinish.late).toBe(true);
      expect(lateFinish.attempt).toMatchObject({
        status: "unresponsive",
        lateFinish: { status: "succeeded", error: null, at: h.clock.now },
      });
      expect(lateFinish.rollout).toMatchObject({ status: "preparing", currentAttemptId: c2.attempt.id });
      // Everything is still there, flagged.
      expect((await store.getSpans({ attemptId: c1.attempt.id })).map((s) => [s.name, s.late, s.seq])).toEqual([
        ["before", false, 1],
        ["after", true, 2],
      ]);
      const transitions = await store.getTransitions({ attemptId: c1.attempt.id });
      expect(transitions.map((t) => t.late)).toEqual([true]);
      const rewards = await store.getRewards({ attemptId: c1.attempt.id });
      expect(rewards.map((x) => [x.value, x.late])).toEqual([
        [1, true],
        [1, true],
      ]);
      // Late rewards do not become the attempt's or rollout's reward.
      const done = await store.finishAttempt(c2.attempt.id, { status: "succeeded" });
      expect(done.rollout).toMatchObject({ status: "succeeded", finalReward: null });
    });

    it("numbers spans per attempt and returns them in order", async () => {
      await store.enqueueRollout({ input: 1, config: { maxAttempts: 2 } });
      const c1 = (await store.claimRollout({ workerId: "w" }))!;
      const spans = await store.addSpans(
        ["plan", "llm", "tool", "llm"].map((name, i) => ({
          attemptId: c1.attempt.id,
          name,
          kind: name === "llm" ? ("llm" as const) : ("custom" as const),
          startTime: 10 + i,
          endTime: 11 + i,
          attributes: { "gen_ai.request.model": "qwen", i },
          events: [{ name: "token", time: 10.5 + i }],
          status: { code: "ok" as const },
        })),
      );
      expect(spans.map((s) => s.seq)).toEqual([1, 2, 3, 4]);
      expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
      expect(spans[0].traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(spans[0].spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(spans[1]).toMatchObject({ kind: "llm", attributes: { i: 1 }, events: [{ name: "token" }] });
      const [child] = await store.addSpans([
        { attemptId: c1.attempt.id, name: "child", startTime: 20, parentSpanId: spans[1].spanId, traceId: "abc" },
      ]);
      expect(child).toMatchObject({ seq: 5, parentSpanId: spans[1].spanId, traceId: "abc" });
      await store.finishAttempt(c1.attempt.id, { status: "failed" });
      const c2 = (await store.claimRollout({ workerId: "w" }))!;
      await store.addSpans([{ attemptId: c2.attempt.id, name: "retry", startTime: 30 }]);
      const all = await store.getSpans({ rolloutId: c1.rollout.id });
      expect(all.map((s) => [s.attemptId === c1.attempt.id ? 1 : 2, s.seq, s.name])).toEqual([
        [1, 1, "plan"],
        [1, 2, "llm"],
        [1, 3, "tool"],
        [1, 4, "llm"],
        [1, 5, "child"],
        [2, 1, "retry"],
      ]);
    });

    it("assigns unique span sequence numbers under concurrent writers", async () => {
      await store.enqueueRollout({ input: 1 });
      const claim = (await store.claimRollout({ workerId: "w" }))!;
      const clients = [store, ...(await Promise.all([1, 2, 3].map(() => h.connect())))];
      await Promise.all(
        clients.flatMap((client, c) =>
          Array.from({ length: 5 }, (_, k) =>
            client.addSpans([
              { attemptId: claim.attempt.id, name: `c${c}-${k}-a`, startTime: k },
              { attemptId: claim.attempt.id, name: `c${c}-${k}-b`, startTime: k },
            ]),
          ),
        ),
      );
      const spans = await store.getSpans({ attemptId: claim.attempt.id });
      expect(spans.map((s) => s.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      // Spans of one call stay adjacent: a batch is written in one transaction.
      for (const s of spans.filter((x) => x.name.endsWith("-a"))) {
        expect(spans[s.seq].name).toBe(s.name.replace(/-a$/, "-b"));
      }
    });

    it("round-trips token ids and logprobs exactly, attributed or not", async () => {
      await store.enqueueRollout({ input: 1 });
      const claim = (await store.claimRollout({ workerId: "w" }))!;
      const logprobs = [-0.0, -1e-8, -0.75, -30.5, -1e30, 0.25];
      const first: TransitionInput = {
        attemptId: claim.attempt.id,
        spanId: "00f067aa0ba902b7",
        promptIds: [0, 1, 151935, 151643, 4294967295, 7],
        responseIds: [151935, 42, 0, 9, 100000, 3],
        responseLogprobs: logprobs,
        messages: [
          { role: "system", content: "be brief" },
          { role: "user", content: "2+2?" },
        ],
        response: { role: "assistant", content: "4" },
        model: "qwen2.5-0.5b",
        adapterVersion: "policy@3",
        finishReason: "stop",
        usage: { promptTokens: 6, completionTokens: 6, totalTokens: 12 },
        metadata: { temperature: 1 },
      };
      const typed: TransitionInput = {
        rolloutId: claim.rollout.id,
        attemptId: claim.attempt.id,
        promptIds: new Uint32Array([5, 6, 7]),
        responseIds: new Uint32Array([]),
        responseLogprobs: new Float32Array([]),
      };
      const unattributed: TransitionInput = { promptIds: [9], responseIds: [8], responseLogprobs: null };
      const receipts = await store.addTransitions([first, typed, unattributed]);
      expect(receipts.map((r) => [r.rolloutId, r.attemptId, r.late])).toEqual([
        [claim.rollout.id, claim.attempt.id, false],
        [claim.rollout.id, claim.attempt.id, false],
        [null, null, false],
      ]);
      const [a, b] = await store.getTransitions({ rolloutId: claim.rollout.id });
      expect(a.promptIds).toBeInstanceOf(Uint32Array);
      expect(Array.from(a.promptIds)).toEqual(first.promptIds);
      expect(Array.from(a.responseIds)).toEqual(first.responseIds);
      expect(a.responseLogprobs).toBeInstanceOf(Float32Array);
      expect(Array.from(a.responseLogprobs!)).toEqual(Array.from(Float32Array.from(logprobs)));
      expect(Object.is(a.responseLogprobs![0], -0)).toBe(true);
      expect(a).toMatchObject({
        id: receipts[0].id,
        spanId: "00f067aa0ba902b7",
        messages: first.messages,
        response: first.response,
        model: "qwen2.5-0.5b",
        adapterVersion: "policy@3",
        finishReason: "stop",
        usage: { promptTokens: 6, completionTokens: 6, totalTokens: 12 },
        metadata: { temperature: 1 },
        late: false,
      });
      expect(Array.from(b.promptIds)).toEqual([5, 6, 7]);
      expect(b.responseIds.length).toBe(0);
      expect(b.responseLogprobs?.length).toBe(0);
      const loose = await store.getTransitions({ unattributed: true });
      expect(loose.map((t) => t.id)).toEqual([receipts[2].id]);
      expect(loose[0]).toMatchObject({ rolloutId: null, attemptId: null, responseLogprobs: null, messages: [] });
      expect((await store.getTransitions({ attemptId: claim.attempt.id })).length).toBe(2);
      expect((await store.getTransitions({})).length).toBe(3);
    });

    it("rejects invalid input with typed errors naming the field", async () => {
      await expectError(store.enqueueRollout({ input: 1, mode: "prod" as never }), StoreValidationError, {
        param: "mode",
        code: "invalid_input",
      });
      await expectError(store.enqueueRollout({ input: 1, config: { maxAttempts: 0 } }), StoreValidationError, {
        param: "config.maxAttempts",
      });
      await expectError(store.enqueueRollout({ input: 1, colour: "red" } as never), StoreValidationError);
      await expectError(store.enqueueRollouts([{ input: 1 }, { mode: "train" } as never]), StoreValidationError, {
        param: "rollouts[1].input",
      });
      await expectError(store.claimRollout({ workerId: "" }), StoreValidationError, { param: "workerId" });
      await store.enqueueRollout({ input: 1 });
      const claim = (await store.claimRollout({ workerId: "w" }))!;
      const attemptId = claim.attempt.id;
      await expectError(store.finishAttempt(attemptId, { status: "done" as never }), StoreValidationError, {
        param: "status",
      });
      await expectError(
        store.finishAttempt(attemptId, { status: "succeeded", reward: Number.NaN }),
        StoreValidationError,
      );
      await expectError(store.finishAttempt("at-nope", { status: "succeeded" }), NotFoundError);
      const bad: [Partial<TransitionInput>, string][] = [
        [{ promptIds: [-1], responseIds: [] }, "transitions[0].promptIds"],
        [{ promptIds: [1.5], responseIds: [] }, "transitions[0].promptIds"],
        [{ promptIds: [2 ** 32], responseIds: [] }, "transitions[0].promptIds"],
        [{ promptIds: [1], responseIds: [1, 2], responseLogprobs: [-1] }, "transitions[0].responseLogprobs"],
        [{ promptIds: [1], responseIds: [1], responseLogprobs: [Number.NaN] }, "transitions[0].responseLogprobs"],
        [{ responseIds: [1] }, "transitions[0].promptIds"],
      ];
      for (const [input, param] of bad) {
        await expectError(store.addTransitions([input as TransitionInput]), StoreValidationError, { param });
      }
      await expectError(
        store.addTransitions([{ attemptId: "at-ghost", promptIds: [1], responseIds: [] }]),
        NotFoundError,
        { code: "attempt_not_found" },
      );
      await expectError(
        store.addTransitions([
          { promptIds: [1], responseIds: [] },
          { rolloutId: "ro-ghost", promptIds: [1], responseIds: [] },
        ]),
        NotFoundError,
        { code: "rollout_not_found", param: "transitions[1].rolloutId" },
      );
      const other = await store.enqueueRollout({ input: 2 });
      await expectError(store.addRewards([{ attemptId, rolloutId: other.id, value: 1 }]), StoreValidationError, {
        param: "rewards[0].rolloutId",
      });
      await expectError(store.addSpans([{ attemptId, name: "", startTime: 0 }]), StoreValidationError, {
        param: "spans[0].name",
      });
      await expectError(store.getSpans({}), StoreValidationError);
      await expectError(store.getTransitions({ unattributed: true, rolloutId: other.id }), StoreValidationError);
      await expectError(store.addTrainingStep({ step: -1, metrics: {} }), StoreValidationError, { param: "step" });
      await expectError(store.waitForRollouts(["ro-ghost"], { timeoutMs: 0 }), NotFoundError);
      // Nothing half-written: the failed batches left no transitions behind.
      expect(await store.getTransitions({})).toEqual([]);
    });

    it("cancels unfinished rollouts only", async () => {
      const [a, b] = await store.enqueueRollouts([{ input: 1 }, { input: 2 }]);
      const cancelled = await store.cancelRollout(a.id);
      expect(cancelled).toMatchObject({ status: "cancelled", endedAt: h.clock.now });
      await expectError(store.cancelRollout(a.id), ConflictError, { code: "rollout_finished" });
      await expectError(store.cancelRollout("ro-nope"), NotFoundError);
      // A cancelled rollout is not claimed; the running attempt of a cancelled rollout can still finish.
      const claim = (await store.claimRollout({ workerId: "w" }))!;
      expect(claim.rollout.id).toBe(b.id);
      await store.cancelRollout(b.id);
      const done = await store.finishAttempt(claim.attempt.id, { status: "succeeded", reward: 1 });
      expect(done.attempt.status).toBe("succeeded");
      expect(done.rollout.status).toBe("cancelled");
    });

    it("waits for rollouts to end, returning those that did", async () => {
      const [a, b] = await store.enqueueRollouts([{ input: 1 }, { input: 2 }]);
      expect(await store.waitForRollouts([a.id, b.id], { timeoutMs: 0 })).toEqual([]);
      const ca = (await store.claimRollout({ workerId: "w" }))!;
      await store.finishAttempt(ca.attempt.id, { status: "succeeded", reward: 1 });
      const partial = await store.waitForRollouts([a.id, b.id], { timeoutMs: 50, pollMs: 10 });
      expect(partial.map((r) => r.id)).toEqual([a.id]);
      const cb = (await store.claimRollout({ workerId: "w" }))!;
      setTimeout(() => void store.finishAttempt(cb.attempt.id, { status: "succeeded", reward: 0 }), 100);
      const started = Date.now();
      const all = await store.waitForRollouts([b.id, a.id], { timeoutMs: 10_000, pollMs: 10 });
      expect(all.map((r) => [r.id, r.status])).toEqual([
        [b.id, "succeeded"],
        [a.id, "succeeded"],
      ]);
      expect(Date.now() - started).toBeLessThan(9000);
    });

    it("records and lists training steps", async () => {
      await store.addTrainingStep({ step: 2, metrics: { loss: 0.5, reward_mean: 0.3 } });
      const first = await store.addTrainingStep({ step: 1, metrics: { loss: 0.9 } });
      expect(first).toMatchObject({ step: 1, metrics: { loss: 0.9 }, createdAt: h.clock.now });
      await store.addTrainingStep({ step: 3, metrics: {} });
      expect((await store.listTrainingSteps()).map((s) => s.step)).toEqual([1, 2, 3]);
      expect((await store.listTrainingSteps({ sinceStep: 2 })).map((s) => s.metrics)).toEqual([
        { loss: 0.5, reward_mean: 0.3 },
        {},
      ]);
      expect((await store.listTrainingSteps({ limit: 1 })).length).toBe(1);
    });

    it("lets many independent clients claim concurrently, each rollout exactly once", async () => {
      const total = 100;
      await store.enqueueRollouts(Array.from({ length: total }, (_, i) => ({ input: { i }, groupId: `g${i % 10}` })));
      const clients = await Promise.all(Array.from({ length: 8 }, () => h.connect()));
      const claimedBy = await Promise.all(
        clients.map(async (client, w) => {
          const mine: string[] = [];
          for (;;) {
            const claim = await client.claimRollout({ workerId: `worker-${w}` });
            if (!claim) return mine;
            mine.push(claim.rollout.id);
            await client.finishAttempt(claim.attempt.id, { status: "succeeded", reward: w });
          }
        }),
      );
      const all = claimedBy.flat();
      expect(all.length).toBe(total);
      expect(new Set(all).size).toBe(total);
      const rollouts = await store.listRollouts({ limit: 1000 });
      expect(rollouts.every((r) => r.status === "succeeded" && r.attemptCount === 1)).toBe(true);
      const ended = await store.waitForRollouts(
        rollouts.map((r) => r.id),
        { timeoutMs: 0 },
      );
      expect(ended.length).toBe(total);
    });
  });
}
