// Attempt-scoped tokens (issue 15 item 10): an agent holds a token that allows LLM calls, spans
// and rewards for its own attempt and nothing else, so it cannot read other rollouts, write into
// another attempt, finish attempts or call admin routes. Workers get the token when they claim.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AttemptTokens, withAttemptTokens } from "../../src/http/auth.ts";
import { Runner } from "../../src/runner/runner.ts";
import { HttpStore } from "../../src/store/http-client.ts";
import type { Claim } from "../../src/store/types.ts";
import { type AppHarness, openAIError, startApp, TOY_MODEL } from "./limits-access-harness.ts";

const KEY = "admin-key-for-scoped-tests";

describe("attempt tokens", () => {
  let h: AppHarness;
  let admin: HttpStore;
  let mine: Claim & { token?: string };
  let other: Claim & { token?: string };
  let token: string;

  beforeAll(async () => {
    h = await startApp({ upstream: true, apiKey: KEY });
    admin = new HttpStore(h.url, { apiKey: KEY });
    await admin.enqueueRollouts([{ input: { n: 1 } }, { input: { n: 2 } }]);
    mine = (await admin.claimRollout({ workerId: "w1" })) as Claim & { token?: string };
    other = (await admin.claimRollout({ workerId: "w2" })) as Claim & { token?: string };
    token = mine.token ?? "";
  });
  afterAll(async () => {
    await h.close();
  });

  const as = (bearer: string, path: string, init: RequestInit = {}) =>
    fetch(`${h.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json", ...(init.headers ?? {}) },
    });
  const post = (bearer: string, path: string, body: unknown) =>
    as(bearer, path, { method: "POST", body: JSON.stringify(body) });

  it("is handed out on claim, differs per attempt and from the admin key", () => {
    expect(typeof mine.token).toBe("string");
    expect(typeof other.token).toBe("string");
    expect(mine.token).not.toBe(other.token);
    expect(mine.token).not.toContain(KEY);
  });

  it("makes LLM calls on its own attempt's base URL with a real openai client, recorded there", async () => {
    const base = `${h.url}/rollouts/${mine.rollout.id}/attempts/${mine.attempt.id}/v1`;
    const client = new OpenAI({ baseURL: base, apiKey: token, maxRetries: 0 });
    const answer = await client.chat.completions.create({
      model: TOY_MODEL,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(answer.choices[0].message.content).toMatch(/hi/);
    expect((await client.models.list()).data.length).toBeGreaterThan(0);
    // At the root /v1 with no attribution headers, the token itself attributes the call.
    const root = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: token, maxRetries: 0 });
    await root.chat.completions.create({ model: TOY_MODEL, messages: [{ role: "user", content: "root" }] });
    await h.flush();
    const recorded = await h.store.getTransitions({ attemptId: mine.attempt.id });
    expect(recorded.length).toBe(2);
    expect(recorded.every((t) => t.rolloutId === mine.rollout.id)).toBe(true);
    expect(await h.store.getTransitions({ unattributed: true })).toEqual([]);
  });

  it("cannot make LLM calls into another attempt, by path or by header", async () => {
    const base = `${h.url}/rollouts/${other.rollout.id}/attempts/${other.attempt.id}/v1`;
    const client = new OpenAI({ baseURL: base, apiKey: token, maxRetries: 0 });
    const err = await client.chat.completions
      .create({ model: TOY_MODEL, messages: [{ role: "user", content: "hi" }] })
      .catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    const byHeader = new OpenAI({
      baseURL: `${h.url}/v1`,
      apiKey: token,
      maxRetries: 0,
      defaultHeaders: { "x-fulgur-rollout-id": other.rollout.id, "x-fulgur-attempt-id": other.attempt.id },
    });
    const err2 = await byHeader.chat.completions
      .create({ model: TOY_MODEL, messages: [{ role: "user", content: "hi" }] })
      .catch((e) => e);
    expect(err2).toBeInstanceOf(OpenAI.PermissionDeniedError);
  });

  it("writes spans and rewards for its own attempt", async () => {
    const span = {
      attemptId: mine.attempt.id,
      spanId: "00000000000000a1",
      name: "tool-call",
      kind: "tool",
      startTime: Date.now(),
    };
    expect((await post(token, "/api/v1/spans", { spans: [span] })).status).toBe(201);
    const reward = { attemptId: mine.attempt.id, rolloutId: mine.rollout.id, value: 0.5 };
    expect((await post(token, "/api/v1/rewards", { rewards: [reward] })).status).toBe(201);
    expect((await admin.getRewards({ attemptId: mine.attempt.id })).map((r) => r.value)).toEqual([0.5]);
  });

  it("cannot write spans, rewards or traces into another attempt", async () => {
    const span = { attemptId: other.attempt.id, spanId: "00000000000000b1", name: "x", startTime: Date.now() };
    const spans = await post(token, "/api/v1/spans", { spans: [span] });
    expect(spans.status).toBe(403);
    expect((await openAIError(spans)).type).toBe("permission_error");
    // A mixed batch is refused whole.
    const mixed = await post(token, "/api/v1/spans", {
      spans: [{ ...span, attemptId: mine.attempt.id, spanId: "00000000000000b2" }, span],
    });
    expect(mixed.status).toBe(403);
    const rewards = await post(token, "/api/v1/rewards", { rewards: [{ attemptId: other.attempt.id, value: 1 }] });
    expect(rewards.status).toBe(403);
    const wrongRollout = await post(token, "/api/v1/rewards", {
      rewards: [{ attemptId: mine.attempt.id, rolloutId: other.rollout.id, value: 1 }],
    });
    expect(wrongRollout.status).toBe(403);
    const traces = await post(token, "/v1/traces", {
      resourceSpans: [
        {
          resource: { attributes: [{ key: "fulgur.attempt_id", value: { stringValue: other.attempt.id } }] },
          scopeSpans: [{ spans: [{ name: "s", spanId: "00000000000000b3", startTimeUnixNano: "1000000" }] }],
        },
      ],
    });
    expect(traces.status).toBe(403);
    expect(await admin.getSpans({ attemptId: other.attempt.id })).toEqual([]);
    expect(await admin.getRewards({ attemptId: other.attempt.id })).toEqual([]);
  });

  it("cannot read rollouts (its own included), finish or fail attempts, or call admin routes", async () => {
    const before = [
      (await admin.getAttempt(mine.attempt.id)).status,
      (await admin.getAttempt(other.attempt.id)).status,
    ];
    const denied: [string, string, unknown?][] = [
      ["GET", `/api/v1/rollouts/${other.rollout.id}`],
      ["GET", `/api/v1/rollouts/${mine.rollout.id}`],
      ["GET", "/api/v1/rollouts"],
      ["GET", `/api/v1/spans?attemptId=${other.attempt.id}`],
      ["GET", `/api/v1/transitions?rolloutId=${other.rollout.id}`],
      ["POST", `/api/v1/attempts/${other.attempt.id}/finish`, { status: "failed" }],
      ["POST", `/api/v1/attempts/${mine.attempt.id}/finish`, { status: "failed" }],
      ["POST", `/api/v1/attempts/${other.attempt.id}/heartbeat`],
      ["POST", "/api/v1/rollouts", { input: 1 }],
      ["POST", "/api/v1/rollouts/claim", { workerId: "agent" }],
      ["POST", `/api/v1/rollouts/${other.rollout.id}/cancel`],
      ["POST", "/api/v1/resources/adapter", { value: 1 }],
      ["POST", "/api/v1/sweep"],
      ["POST", "/api/v1/transitions", { transitions: [] }],
    ];
    for (const [method, path, body] of denied) {
      const res = await as(token, path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect((await openAIError(res)).type).toBe("permission_error");
    }
    const after = [(await admin.getAttempt(mine.attempt.id)).status, (await admin.getAttempt(other.attempt.id)).status];
    expect(after).toEqual(before);
    expect(after).not.toContain("failed");
  });

  it("cannot read, continue or delete another attempt's stored responses (Responses API)", async () => {
    const otherToken = other.token ?? "";
    const created = await post(otherToken, "/v1/responses", { model: TOY_MODEL, input: "secret plans", store: true });
    expect(created.status).toBe(200);
    const theirs = (await created.json()) as { id: string; output: { id: string }[] };
    const path = `/v1/responses/${theirs.id}`;
    // Its own attempt and the admin key see it.
    expect((await as(otherToken, path)).status).toBe(200);
    expect((await as(KEY, path)).status).toBe(200);
    // Another attempt's token does not, by any route.
    const read = await as(token, path);
    expect(read.status).toBe(404);
    expect((await openAIError(read)).message).not.toMatch(/secret/);
    expect((await as(token, path, { method: "DELETE" })).status).toBe(404);
    const continued = await post(token, "/v1/responses", {
      model: TOY_MODEL,
      input: "go on",
      previous_response_id: theirs.id,
    });
    expect(continued.status).toBe(400);
    expect((await openAIError(continued)).code).toBe("previous_response_not_found");
    const referenced = await post(token, "/v1/responses", {
      model: TOY_MODEL,
      input: [{ type: "item_reference", id: theirs.output[0].id }],
    });
    expect(referenced.status).toBe(400);
    expect((await openAIError(referenced)).code).toBe("item_not_found");
    // Still there for its owner.
    expect((await as(otherToken, path)).status).toBe(200);
    // Its own stored responses work as usual.
    const mineCreated = (await (
      await post(token, "/v1/responses", { model: TOY_MODEL, input: "hello", store: true })
    ).json()) as { id: string };
    const next = await post(token, "/v1/responses", {
      model: TOY_MODEL,
      input: "again",
      previous_response_id: mineCreated.id,
    });
    expect(next.status).toBe(200);
    expect((await as(token, `/v1/responses/${mineCreated.id}`, { method: "DELETE" })).status).toBe(200);
  });

  it("is unforgeable: a token with another attempt's id and a reused or guessed MAC is 401", async () => {
    const tokens = new AttemptTokens("some other server's key");
    const forged = tokens.issue(other.rollout.id, other.attempt.id);
    const res = await as(forged, `/rollouts/${other.rollout.id}/attempts/${other.attempt.id}/v1/models`);
    expect(res.status).toBe(401);
    const [, mac] = token.split(".");
    const spliced = `${forged.split(".")[0]}.${mac}`;
    expect((await as(spliced, "/api/v1/rewards")).status).toBe(401);
    const ok = new AttemptTokens(KEY).verify(token);
    expect(ok).toEqual({ rolloutId: mine.rollout.id, attemptId: mine.attempt.id });
    expect(new AttemptTokens(KEY).verify(spliced)).toBeNull();
  });
});

describe("the runner hands the attempt token to the agent", () => {
  let h: AppHarness;
  beforeAll(async () => {
    h = await startApp({ upstream: true, apiKey: KEY });
  });
  afterAll(async () => {
    await h.close();
  });

  it("a worker over HTTP with the admin key gives each agent only its attempt's token", async () => {
    const store = new HttpStore(h.url, { apiKey: KEY });
    const rollouts = await store.enqueueRollouts([{ input: { q: "hello" } }, { input: { q: "there" } }]);
    const seen = new Map<string, { apiKey: string; readOther: number; attemptId: string }>();
    const runner = new Runner({
      store,
      serverUrl: h.url,
      model: TOY_MODEL,
      apiKey: KEY,
      concurrency: 2,
      pollMs: 20,
      agent: async (task, ctx) => {
        const client = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey, maxRetries: 0 });
        const q = (task as { q: string }).q;
        const answer = await client.chat.completions.create({
          model: ctx.llm.model,
          messages: [{ role: "user", content: q }],
        });
        const otherId = rollouts.find((r) => r.id !== ctx.rolloutId)?.id ?? "";
        const read = await fetch(`${h.url}/api/v1/rollouts/${otherId}`, {
          headers: { authorization: `Bearer ${ctx.llm.apiKey}` },
        });
        seen.set(ctx.rolloutId, { apiKey: ctx.llm.apiKey, readOther: read.status, attemptId: ctx.attemptId });
        await ctx.emitReward(0.25);
        return answer.choices[0].message.content?.includes(q) ? 1 : 0;
      },
    });
    runner.start();
    const done = await store.waitForRollouts(
      rollouts.map((r) => r.id),
      { timeoutMs: 20_000 },
    );
    await runner.stop();
    expect(done.map((r) => [r.status, r.finalReward])).toEqual([
      ["succeeded", 1],
      ["succeeded", 1],
    ]);
    const tokens = new AttemptTokens(KEY);
    for (const r of rollouts) {
      const s = seen.get(r.id);
      expect(s).toBeDefined();
      expect(s?.apiKey).not.toBe(KEY);
      expect(tokens.verify(s?.apiKey ?? "")).toEqual({ rolloutId: r.id, attemptId: s?.attemptId });
      expect(s?.readOther).toBe(403);
      const transitions = await store.getTransitions({ rolloutId: r.id });
      expect(transitions.map((t) => t.attemptId)).toEqual([s?.attemptId]);
    }
  });

  it("an in-process runner on the server's store (claims with tokens) does the same", async () => {
    const tokens = new AttemptTokens(KEY);
    const store = withAttemptTokens(h.store, tokens);
    const [rollout] = await store.enqueueRollouts([{ input: { q: "local" } }]);
    let seen: { apiKey: string; llm: number; read: number } | null = null;
    const runner = new Runner({
      store,
      serverUrl: h.url,
      model: TOY_MODEL,
      apiKey: KEY,
      pollMs: 20,
      agent: async (_task, ctx) => {
        const llm = await fetch(`${ctx.llm.baseURL}/models`, {
          headers: { authorization: `Bearer ${ctx.llm.apiKey}` },
        });
        const read = await fetch(`${h.url}/api/v1/rollouts/${ctx.rolloutId}`, {
          headers: { authorization: `Bearer ${ctx.llm.apiKey}` },
        });
        seen = { apiKey: ctx.llm.apiKey, llm: llm.status, read: read.status };
        return 1;
      },
    });
    runner.start();
    const [done] = await store.waitForRollouts([rollout.id], { timeoutMs: 20_000 });
    await runner.stop();
    expect(done.status).toBe("succeeded");
    expect(seen).not.toBeNull();
    const s = seen as unknown as { apiKey: string; llm: number; read: number };
    expect(s.apiKey).not.toBe(KEY);
    expect(tokens.verify(s.apiKey)?.rolloutId).toBe(rollout.id);
    expect([s.llm, s.read]).toEqual([200, 403]);
  });
});
