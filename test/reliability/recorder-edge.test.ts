// Issue 15 item 1: a request the proxy accepts is one the store can record. Requests the store
// would refuse are 400s before any generation (out-of-vocabulary or > 2^32 token ids, messages or
// tools nested past the limit, too many sequences), upstream answers it would refuse are 502s,
// and a record the store still refuses is dead-lettered — the process stays up and the rest of
// its batch is written. Real server, real libSQL file, real upstream over HTTP.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../../src/model/tiny.ts";
import type { RecordedCall } from "../../src/proxy/backend.ts";
import { StoreRecorder } from "../../src/proxy/recorder.ts";
import { type FulgurServer, startServer } from "../../src/server.ts";
import { openStore } from "../../src/store/libsql.ts";

let dir: string;
let server: FulgurServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-edge-"));
  await writeTinyModel(join(dir, "tiny"), { hidden: 32, layers: 1, heads: 2, kvHeads: 1, intermediate: 32, seed: 5 });
  server = await startServer({
    modelDir: join(dir, "tiny"),
    storeUrl: `file:${join(dir, "s.db")}`,
    port: 0,
    maxSeqLen: 128,
  });
});

afterAll(async () => {
  await server?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  id: string;
  choices: unknown[];
  error: { code: string; param: string | null };
}

async function post(path: string, body: unknown): Promise<{ status: number; json: Answer }> {
  const res = await fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Answer };
}

function nested(depth: number): unknown {
  let v: unknown = "leaf";
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

describe("edge validation on the real server", () => {
  it("rejects token ids the model or the store cannot take, before generating", async () => {
    const vocab = server.model!.config.vocabSize;
    for (const prompt of [[5_000_000_000], [vocab], [1, 2, vocab + 7]]) {
      const r = await post("/v1/completions", { model: "tiny", prompt, max_tokens: 4 });
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe("invalid_token_id");
      expect(r.json.error.param).toMatch(/^prompt\[\d\]$/);
    }
    const multi = await post("/v1/completions", {
      model: "tiny",
      prompt: [
        [1, 2],
        [3, -0, vocab],
      ],
      max_tokens: 4,
    });
    expect(multi.status).toBe(400);
    expect(multi.json.error.param).toBe("prompt[1][2]");
  });

  it("rejects messages and tool schemas nested past the limit", async () => {
    const deepMessage = await post("/v1/chat/completions", {
      model: "tiny",
      messages: [{ role: "user", content: "hi", metadata: nested(80) }],
      max_tokens: 4,
    });
    expect(deepMessage.status).toBe(400);
    expect(deepMessage.json.error).toMatchObject({ code: "nesting_too_deep", param: "messages[0]" });
    const deepTool = await post("/v1/chat/completions", {
      model: "tiny",
      messages: [{ role: "user", content: "hi" }],
      tools: [{ type: "function", function: { name: "f", parameters: nested(80) } }],
      max_tokens: 4,
    });
    expect(deepTool.status).toBe(400);
    expect(deepTool.json.error).toMatchObject({ code: "nesting_too_deep", param: "tools[0]" });
  });

  it("caps prompts × n per request (the 91-byte request that held the engine for minutes)", async () => {
    const r = await post("/v1/completions", { model: "tiny", prompt: ["a", "b", "c", "d"], n: 128, max_tokens: 480 });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: "too_many_choices", param: "n" });
    const ok = await post("/v1/completions", { model: "tiny", prompt: ["a", "b"], n: 2, max_tokens: 2 });
    expect(ok.status).toBe(200);
    expect(ok.json.choices).toHaveLength(4);
  });

  it("stays up and healthy, with every answered call stored", async () => {
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    expect(((await health.json()) as { recording: { deadLettered: number } }).recording.deadLettered).toBe(0);
    const ok = await post("/v1/completions", { model: "tiny", prompt: [1, 2, 3], max_tokens: 3 });
    expect(ok.status).toBe(200);
    // Durable recording: the 200 came after the commit, no flush needed.
    const stored = await server.store.getTransitions({ unattributed: true });
    expect(stored.some((t) => (t.metadata as { callId?: string }).callId === ok.json.id)).toBe(true);
  });
});

/**
 * A real HTTP upstream that answers every completion and chat completion with the given (broken)
 * choice fields, model name and usage.
 */
async function brokenUpstream(choice: Record<string, unknown>, model = "up", usage?: Record<string, unknown>) {
  const app = new Hono();
  app.get("/v1/models", (c) =>
    c.json({ object: "list", data: [{ id: "up", object: "model", created: 0, owned_by: "t" }] }),
  );
  const counts = usage ?? { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 };
  app.post("/v1/completions", (c) =>
    c.json({
      id: "cmpl-x",
      object: "text_completion",
      created: 0,
      model,
      choices: [{ index: 0, text: " hi", finish_reason: "stop", ...choice }],
      usage: counts,
    }),
  );
  app.post("/v1/chat/completions", (c) =>
    c.json({
      id: "chatcmpl-x",
      object: "chat.completion",
      created: 0,
      model,
      choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop", ...choice }],
      usage: counts,
    }),
  );
  const { srv, port } = await new Promise<{ srv: ReturnType<typeof serve>; port: number }>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) =>
      resolve({ srv: s, port: info.port }),
    );
  });
  return { url: `http://127.0.0.1:${port}/v1`, close: () => new Promise<void>((done) => srv.close(() => done())) };
}

describe("upstream answers the store cannot take", () => {
  const cases: [string, Record<string, unknown>, string?, Record<string, unknown>?, boolean?][] = [
    ["negative token id", { token_ids: [-1] }],
    ["string token ids", { token_ids: ["a"] }],
    [
      "ids and logprobs of different lengths",
      { token_ids: [1, 2], logprobs: { tokens: [" hi"], token_logprobs: [-0.5] } },
    ],
    ["a 600-character model name", { token_ids: [1] }, "m".repeat(600)],
    // Shapes the store refuses too (these were answered 200 and only dead-lettered):
    ["a completion text that is an object nested 80 levels", { text: nested(80) }],
    ["negative usage counts in a chat answer", {}, undefined, { prompt_tokens: -2, completion_tokens: 1.5 }, true],
    [
      "a chat message whose content is an object nested 80 levels",
      { message: { role: "assistant", content: nested(80) } },
      undefined,
      undefined,
      true,
    ],
    [
      "tool-call arguments that are an object instead of a string",
      {
        message: {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: nested(80) } }],
        },
        finish_reason: "tool_calls",
      },
      undefined,
      undefined,
      true,
    ],
  ];
  for (const [i, [name, choice, model, usage, isChat]] of cases.entries()) {
    it(`answers 502 for ${name}, records the call, stays up`, async () => {
      const up = await brokenUpstream(choice, model, usage);
      const proxy = await startServer({
        upstreamUrl: up.url,
        storeUrl: `file:${join(dir, `up-${i}.db`)}`,
        port: 0,
      });
      try {
        const res = await fetch(`${proxy.url}${isChat ? "/v1/chat/completions" : "/v1/completions"}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(
            isChat
              ? { model: "up", messages: [{ role: "user", content: "x" }], max_tokens: 2 }
              : { model: "up", prompt: "x", max_tokens: 2 },
          ),
        });
        expect(res.status).toBe(502);
        const body = (await res.json()) as { error: { code: string } };
        expect(body.error.code).toBe("invalid_upstream_response");
        const stored = await proxy.store.getTransitions({ unattributed: true });
        expect(stored).toHaveLength(1);
        expect((stored[0].metadata as { error: { status: number } }).error.status).toBe(502);
        expect(proxy.recorder.health()).toMatchObject({ ok: true, deadLettered: 0 });
      } finally {
        await proxy.shutdown();
        await up.close();
      }
    });
  }
});

/** A real HTTP upstream that streams one chat chunk carrying the given (broken) choice fields. */
async function brokenStreamingUpstream(choice: Record<string, unknown>) {
  const app = new Hono();
  app.get("/v1/models", (c) =>
    c.json({ object: "list", data: [{ id: "up", object: "model", created: 0, owned_by: "t" }] }),
  );
  app.post("/v1/chat/completions", () => {
    const chunk = {
      id: "chatcmpl-x",
      object: "chat.completion.chunk",
      created: 0,
      model: "up",
      choices: [{ index: 0, delta: { role: "assistant", content: " hi" }, finish_reason: "stop", ...choice }],
    };
    return new Response(`data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`, {
      headers: { "content-type": "text/event-stream" },
    });
  });
  const { srv, port } = await new Promise<{ srv: ReturnType<typeof serve>; port: number }>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) =>
      resolve({ srv: s, port: info.port }),
    );
  });
  return { url: `http://127.0.0.1:${port}/v1`, close: () => new Promise<void>((done) => srv.close(() => done())) };
}

describe("streamed upstream answers the store cannot take, on every API", () => {
  const apis: [string, string, Record<string, unknown>, string][] = [
    ["chat completions", "/v1/chat/completions", { messages: [{ role: "user", content: "x" }] }, "data: [DONE]"],
    ["Responses", "/v1/responses", { input: "x" }, "response.completed"],
    ["Anthropic Messages", "/v1/messages", { messages: [{ role: "user", content: "x" }] }, "message_stop"],
  ];
  for (const [i, [api, path, body, finished]] of apis.entries()) {
    it(`${api}: the stream ends with a 502 error event instead of completing; the call is recorded`, async () => {
      const up = await brokenStreamingUpstream({ token_ids: [-1] });
      const proxy = await startServer({
        upstreamUrl: up.url,
        storeUrl: `file:${join(dir, `stream-${i}.db`)}`,
        port: 0,
      });
      try {
        const res = await fetch(`${proxy.url}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "up", max_tokens: 4, stream: true, ...body }),
        });
        const events = await res.text();
        expect(events).not.toContain(finished);
        expect(events).toMatch(/cannot be recorded/);
        const stored = await proxy.store.getTransitions({ unattributed: true });
        expect(stored).toHaveLength(1);
        expect((stored[0].metadata as { error: { status: number } }).error.status).toBe(502);
        expect(proxy.recorder.health()).toMatchObject({ ok: true, deadLettered: 0 });
      } finally {
        await proxy.shutdown();
        await up.close();
      }
    });
  }
});

describe("StoreRecorder with a record the store refuses", () => {
  it("dead-letters that call, writes the rest of its batch and never throws", async () => {
    const store = await openStore(`file:${join(dir, "dl.db")}`);
    const deadLetterPath = join(dir, "dl.db.dead-letter.jsonl");
    const logs: string[] = [];
    const recorder = new StoreRecorder(store, { mode: "async", deadLetterPath, onError: (m) => logs.push(m) });
    const call = (id: string, promptIds: number[]): RecordedCall =>
      ({
        kind: "completion",
        id,
        rolloutId: null,
        attemptId: null,
        startedAt: Date.now(),
        model: "m",
        adapterVersion: null,
        request: {
          model: "m",
          prompts: ["x"],
          sampling: {},
          stream: false,
          includeUsage: false,
          user: null,
          extra: {},
        },
        outcome: {
          model: "m",
          adapterVersion: null,
          promptTokenIds: [promptIds],
          choices: [{ index: 0, promptIndex: 0, text: "y", finishReason: "stop", tokenIds: [7], logprobs: null }],
          usage: { promptTokens: 1, completionTokens: 1, totalTokens: 2 },
          timings: { queueMs: null, ttftMs: null, totalMs: 1 },
        },
        error: null,
        timings: { queueMs: null, ttftMs: null, totalMs: 1 },
      }) as unknown as RecordedCall;
    recorder.record(call("good-1", [1]));
    recorder.record(call("bad", [5_000_000_000]));
    recorder.record(call("good-2", [2]));
    await recorder.flush();
    const ids = (await store.getTransitions({ unattributed: true })).map(
      (t) => (t.metadata as { callId: string }).callId,
    );
    expect(ids.sort()).toEqual(["good-1", "good-2"]);
    expect(recorder.health()).toMatchObject({ ok: true, deadLettered: 1 });
    const lines = readFileSync(deadLetterPath, "utf8").trim().split("\n");
    expect(lines).toHaveLength(1);
    const letter = JSON.parse(lines[0]) as { callId: string; records: { transitions: { promptIds: number[] }[] } };
    expect(letter.callId).toBe("bad");
    expect(letter.records.transitions[0].promptIds).toEqual([5_000_000_000]);
    expect(logs.some((l) => l.includes("dead-lettered"))).toBe(true);
    await store.close();
  });
});
