// The shared Store suite against a real libSQL server (sqld over HTTP, JWT auth on), started and
// stopped by the test, plus what only a server has: refusing clients without the token, and
// riding out a server restart mid-run without losing or doubling a record.
import { createClient } from "@libsql/client";
import { afterAll, describe, expect, it } from "vitest";
import { type Claim, openStore, type Store } from "../../src/store/index.ts";
import { isConnectionError } from "../../src/store/remote.ts";
import { jwtAuth, type LossyRelay, lossyRelay, type SqldServer, startSqld } from "../helpers/sqld.ts";
import { ManualClock, storeCases } from "./store.cases.ts";

const servers: SqldServer[] = [];
const relays: LossyRelay[] = [];
afterAll(async () => {
  await Promise.all(relays.map((r) => r.close()));
  await Promise.all(servers.map((s) => s.close()));
});

async function server(auth = jwtAuth()): Promise<{ sqld: SqldServer; token: string }> {
  const sqld = await startSqld({ auth });
  servers.push(sqld);
  return { sqld, token: auth.token() };
}

storeCases("libSQL server (sqld over HTTP, JWT auth)", async () => {
  const clock = new ManualClock();
  const { sqld, token } = await server();
  const opened: Store[] = [];
  const connect = async () => {
    const store = await openStore(sqld.url, { clock: clock.read, authToken: token });
    opened.push(store);
    return store;
  };
  const store = await connect();
  return {
    store,
    connect,
    clock,
    async close() {
      await Promise.all(opened.map((s) => s.close()));
      await sqld.close();
    },
  };
});

describe("store on a libSQL server", () => {
  it("refuses to open without a valid token, saying where and why", async () => {
    const { sqld, token } = await server();
    await expect(openStore(sqld.url)).rejects.toThrow(new RegExp(`cannot open the store at ${sqld.url}: .*401`));
    const forged = `${token.slice(0, -4)}AAAA`;
    await expect(openStore(sqld.url, { authToken: forged })).rejects.toThrow(/cannot open the store/);
    const store = await openStore(sqld.url, { authToken: token });
    expect((await store.enqueueRollout({ input: "ok" })).status).toBe("queuing");
    await store.close();
  });

  it("tells connection failures (retried) from statement errors (not retried)", async () => {
    const { sqld, token } = await server();
    const client = createClient({ url: sqld.url, authToken: token });
    const statementError = await client.execute("SELECT * FROM no_such_table").catch((e: unknown) => e);
    expect(isConnectionError(statementError)).toBe(false);
    await sqld.stop("SIGKILL");
    const connectionError = await client.execute("SELECT 1").catch((e: unknown) => e);
    expect(isConnectionError(connectionError)).toBe(true);
    // What a restarted server answers for a stream it no longer knows (seen in a CI run).
    const staleStream = Object.assign(new Error("SERVER_ERROR: Server returned HTTP status 404"), {
      code: "SERVER_ERROR",
      cause: Object.assign(new Error("Server returned HTTP status 404"), { status: 404 }),
    });
    expect(isConnectionError(staleStream)).toBe(true);
    await sqld.start();
    expect((await client.execute("SELECT 1 AS one")).rows[0].one).toBe(1);
    client.close();
  });

  it("takes a claim or a finish whose answer was lost once, though the client sends it twice", async () => {
    // The relay lets sqld commit each write below, then drops the connection instead of the
    // answer; the store re-sends the same batch, which must find its first send's work.
    const { sqld, token } = await server();
    const relay = await lossyRelay(sqld.url);
    relays.push(relay);
    const retries: unknown[] = [];
    const store = await openStore(relay.url, { authToken: token, onRetry: (e) => retries.push(e) });
    const [first, second, third] = await store.enqueueRollouts([{ input: 1 }, { input: 2 }, { input: 3 }]);

    const lostClaim = relay.dropAnswer(/UPDATE rollouts SET status = 'preparing'/);
    const claim = (await store.claimRollout({ workerId: "w" }))!;
    await lostClaim;
    expect(retries.length).toBe(1);
    expect(isConnectionError(retries[0])).toBe(true);
    expect(claim.rollout).toMatchObject({ id: first.id, status: "preparing", attemptCount: 1 });
    expect(claim.attempt).toMatchObject({ rolloutId: first.id, attemptNo: 1, workerId: "w" });
    // Claimed once: one attempt, and the re-send took no second rollout.
    expect((await store.listAttempts(first.id)).map((a) => a.id)).toEqual([claim.attempt.id]);
    expect(await store.getRollout(second.id)).toMatchObject({ status: "queuing", attemptCount: 0 });
    expect(await store.listAttempts(second.id)).toEqual([]);

    const lostFinish = relay.dropAnswer(/late_status/);
    const done = await store.finishAttempt(claim.attempt.id, { status: "succeeded", reward: 0.5 });
    await lostFinish;
    expect(retries.length).toBe(2);
    expect(done.late).toBe(false);
    expect(done.attempt).toMatchObject({ status: "succeeded", reward: 0.5, lateFinish: null });
    expect(done.rollout).toMatchObject({ id: first.id, status: "succeeded", finalReward: 0.5 });
    expect((await store.getRewards({ attemptId: claim.attempt.id })).map((r) => [r.value, r.late])).toEqual([
      [0.5, false],
    ]);

    // A cancel is not made idempotent: its re-send answers that the rollout already ended, as
    // cancelled (docs/store.md), so the caller learns the state it asked for.
    const lostCancel = relay.dropAnswer(/"value":"cancelled"/);
    await expect(store.cancelRollout(third.id)).rejects.toMatchObject({
      code: "rollout_finished",
      message: expect.stringMatching(/already ended with status "cancelled"/),
    });
    await lostCancel;
    expect(retries.length).toBe(3);

    const next = (await store.claimRollout({ workerId: "w" }))!;
    expect(next.rollout.id).toBe(second.id);
    expect(await store.claimRollout({ workerId: "w" })).toBeNull();
    await store.close();
  });

  it("an outage longer than retryForMs reaches the caller as a connection error; the same store works after", async () => {
    const { sqld, token } = await server();
    const store = await openStore(sqld.url, { authToken: token, retryForMs: 400 });
    await sqld.stop("SIGKILL");
    const started = Date.now();
    const error = await store.enqueueRollout({ input: "down" }).catch((e: unknown) => e);
    expect(isConnectionError(error), String(error)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(100); // retried before giving up
    await sqld.start();
    expect((await store.enqueueRollout({ input: "up" })).status).toBe("queuing");
    expect((await store.listRollouts()).map((r) => r.input)).toEqual(["up"]);
    await store.close();
  });

  it("sixteen stores in one process claiming at once keep sqld writing (one write batch in flight per server)", async () => {
    // Unqueued, 16 contending write transactions wedged sqld 0.24.32 within a few hundred claims:
    // every write hung for good while reads still answered.
    const { sqld, token } = await server();
    const setup = await openStore(sqld.url, { authToken: token });
    const ROLLOUTS = 800;
    await setup.enqueueRollouts(Array.from({ length: ROLLOUTS }, (_, i) => ({ input: i })));
    const stores = await Promise.all(Array.from({ length: 16 }, () => openStore(sqld.url, { authToken: token })));
    let claimed = 0;
    const work = Promise.all(
      stores.map(async (store, w) => {
        for (;;) {
          const claim = await store.claimRollout({ workerId: `w${w}` });
          if (!claim) return;
          claimed++;
          await store.finishAttempt(claim.attempt.id, { status: "succeeded", reward: 1 });
        }
      }),
    );
    let timer: NodeJS.Timeout | undefined;
    const wedged = new Promise<string>((done) => {
      timer = setTimeout(() => done(`writes stopped after ${claimed} of ${ROLLOUTS} claims`), 90_000);
    });
    expect(await Promise.race([work.then(() => "done"), wedged])).toBe("done");
    clearTimeout(timer);
    expect(claimed).toBe(ROLLOUTS);
    expect(await setup.listRollouts({ status: "succeeded", limit: 10_000 })).toHaveLength(ROLLOUTS);
    await Promise.all([setup, ...stores].map((s) => s.close()));
  }, 120_000);

  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    it(`keeps every record written while the server restarts (${signal})`, async () => {
      const { sqld, token } = await server();
      const retries: number[] = [];
      const store = await openStore(sqld.url, { authToken: token, onRetry: (_e, attempt) => retries.push(attempt) });
      const rollouts = await store.enqueueRollouts(Array.from({ length: 8 }, (_, i) => ({ input: { i } })));
      const claims: Claim[] = [];
      for (let i = 0; i < 8; i++) claims.push((await store.claimRollout({ workerId: "w" }))!);
      // Writers keep recording transitions and spans while the server goes down and comes back.
      let restarting = true;
      const written: string[] = [];
      const writer = async (k: number) => {
        for (let n = 0; restarting || n < 5; n++) {
          const attempt = claims[(k + n) % claims.length].attempt;
          const [receipt] = await store.addTransitions([
            { attemptId: attempt.id, promptIds: [k, n], responseIds: [n], responseLogprobs: [-0.5], messages: [] },
          ]);
          await store.addSpans([{ attemptId: attempt.id, name: `w${k}-${n}`, kind: "custom", startTime: n }]);
          written.push(receipt.id);
        }
      };
      const writers = Promise.all([0, 1, 2, 3].map(writer));
      await new Promise((done) => setTimeout(done, 150));
      await sqld.stop(signal);
      await new Promise((done) => setTimeout(done, 600)); // down for a while: writers retry
      await sqld.start();
      restarting = false;
      await writers;
      expect(retries.length).toBeGreaterThan(0);
      const stored = (await Promise.all(claims.map((c) => store.getTransitions({ attemptId: c.attempt.id }))))
        .flat()
        .map((t) => t.id);
      expect(new Set(stored)).toEqual(new Set(written));
      expect(stored.length).toBe(written.length);
      const spans = (await Promise.all(claims.map((c) => store.getSpans({ attemptId: c.attempt.id })))).flat();
      expect(spans.length).toBe(written.length);
      for (const c of claims) await store.finishAttempt(c.attempt.id, { status: "succeeded", reward: 1 });
      const ended = await store.waitForRollouts(
        rollouts.map((r) => r.id),
        { timeoutMs: 5_000 },
      );
      expect(ended.map((r) => r.status)).toEqual(new Array(8).fill("succeeded"));
      await store.close();
    });
  }
});
