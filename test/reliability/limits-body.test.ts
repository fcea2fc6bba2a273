// Body and response limits on every route (issue 15 item 6): bodies are limited while they stream
// in (before any parsing), decompressed bodies are limited while they inflate, and store lists
// come back in pages of bounded size that HttpStore follows.
import { request as httpRequest } from "node:http";
import { gzipSync } from "node:zlib";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpStore } from "../../src/store/http-client.ts";
import { type AppHarness, jsonOf, openAIError, startApp, TOY_MODEL } from "./limits-access-harness.ts";

const MiB = 1024 * 1024;

/**
 * Streams `total` bytes of `chunk` repeated (chunked transfer encoding, no content-length) and
 * stops writing as soon as the server answers. Returns the status and how many bytes were
 * written before the answer came: a server that reads the whole body first lets all of them in.
 */
function streamUntilAnswered(
  url: string,
  headers: Record<string, string>,
  head: string,
  chunk: Buffer,
  total: number,
): Promise<{ status: number; body: string; written: number }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: "POST", headers });
    let answered = false;
    let written = 0;
    req.on("response", (res) => {
      answered = true;
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => {
        body += d;
      });
      res.on("end", () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body, written });
      });
    });
    req.on("error", (err) => {
      if (!answered) reject(err);
    });
    const pump = () => {
      if (written === 0) {
        written += Buffer.byteLength(head);
        req.write(head);
      }
      while (!answered && written < total) {
        written += chunk.length;
        if (!req.write(chunk)) {
          req.once("drain", pump);
          return;
        }
      }
      if (!answered) req.end();
    };
    pump();
  });
}

describe("request body limits", () => {
  let h: AppHarness;
  beforeAll(async () => {
    h = await startApp({ upstream: true });
  });
  afterAll(async () => {
    await h.close();
  });

  it("answers 413 in the store's error shape for an oversized rollout input, storing nothing", async () => {
    const input = "x".repeat(20 * MiB);
    const res = await fetch(`${h.url}/api/v1/rollouts`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ input }),
    });
    expect(res.status).toBe(413);
    const error = await openAIError(res);
    expect(error.code).toBe("request_too_large");
    expect(await h.store.listRollouts()).toEqual([]);
  });

  it("stops reading a streamed /v1/traces body at its limit instead of reading it all first", async () => {
    const total = 200 * MiB;
    const result = await streamUntilAnswered(
      `${h.url}/v1/traces`,
      { "content-type": "application/json" },
      '{"resourceSpans":[],"pad":"',
      Buffer.alloc(256 * 1024, "a"),
      total,
    );
    expect(result.status).toBe(413);
    expect(JSON.parse(result.body)).toMatchObject({ code: 8 });
    // The limit is 16 MiB; socket buffers let a few more MiB in, never the whole body.
    expect(result.written).toBeLessThan(64 * MiB);
  });

  it("stops reading a streamed 100 MB rollout input at the store API's limit", async () => {
    const result = await streamUntilAnswered(
      `${h.url}/api/v1/rollouts`,
      { "content-type": "application/json" },
      '{"input":"',
      Buffer.alloc(256 * 1024, "x"),
      100 * MiB,
    );
    expect(result.status).toBe(413);
    expect(JSON.parse(result.body)).toMatchObject({ error: { code: "request_too_large" } });
    expect(result.written).toBeLessThan(64 * MiB);
    expect(await h.store.listRollouts()).toEqual([]);
  });

  it("limits the decompressed size of a gzip body while inflating (gzip bomb → 413)", async () => {
    const json = Buffer.concat([
      Buffer.from('{"resourceSpans":[],"pad":"'),
      Buffer.alloc(40 * MiB, "a"),
      Buffer.from('"}'),
    ]);
    const bomb = gzipSync(json, { level: 9 });
    expect(bomb.length).toBeLessThan(MiB);
    const res = await fetch(`${h.url}/v1/traces`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: bomb,
    });
    expect(res.status).toBe(413);
    expect(((await jsonOf(res)) as { message: string }).message).toMatch(/decompress|limit/i);
  });

  it("accepts a small gzip body on /v1/traces and on the OpenAI routes", async () => {
    const traces = await fetch(`${h.url}/v1/traces`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: gzipSync(JSON.stringify({ resourceSpans: [] })),
    });
    expect(traces.status).toBe(200);
    const chat = await fetch(`${h.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: gzipSync(JSON.stringify({ model: TOY_MODEL, messages: [{ role: "user", content: "hi" }] })),
    });
    expect(chat.status).toBe(200);
  });

  it("answers a gzip bomb on the OpenAI routes with 413 in OpenAI's shape", async () => {
    const bomb = gzipSync(Buffer.alloc(40 * MiB, " "), { level: 9 });
    const res = await fetch(`${h.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: bomb,
    });
    expect(res.status).toBe(413);
    expect((await openAIError(res)).code).toBe("request_too_large");
  });

  it("answers an unsupported content-encoding with 415 and a corrupt gzip body with 400", async () => {
    const br = await fetch(`${h.url}/api/v1/rollouts`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "compress" },
      body: "{}",
    });
    expect(br.status).toBe(415);
    await openAIError(br);
    const corrupt = await fetch(`${h.url}/api/v1/rollouts`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: "definitely not gzip",
    });
    expect(corrupt.status).toBe(400);
    await openAIError(corrupt);
  });

  it("keeps the proxy's own limit through a real openai client (413, nothing recorded)", async () => {
    const client = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const err = await client.chat.completions
      .create({ model: TOY_MODEL, messages: [{ role: "user", content: "y".repeat(9 * MiB) }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(413);
  });
});

describe("store list pages", () => {
  let h: AppHarness;
  beforeAll(async () => {
    h = await startApp({ limits: { maxResponseBytes: 256 * 1024 } });
  });
  afterAll(async () => {
    await h.close();
  });

  it("caps a list response by bytes, returns a cursor, and HttpStore follows the pages", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      ids.push((await h.store.enqueueRollout({ input: { i, pad: "p".repeat(100 * 1024) } })).id);
    }
    const first = await fetch(`${h.url}/api/v1/rollouts?order=asc`);
    expect(first.status).toBe(200);
    const text = await first.text();
    expect(text.length).toBeLessThanOrEqual(256 * 1024 + 110 * 1024);
    const page = JSON.parse(text) as { data: { id: string }[]; next: string | null };
    expect(page.data.length).toBeGreaterThan(0);
    expect(page.data.length).toBeLessThan(12);
    expect(typeof page.next).toBe("string");

    const client = new HttpStore(h.url);
    const all = await client.listRollouts({ order: "asc" });
    expect(all.map((r) => r.id)).toEqual(ids);
    // A limit still means a limit, across pages.
    const some = await client.listRollouts({ order: "asc", limit: 7, offset: 2 });
    expect(some.map((r) => r.id)).toEqual(ids.slice(2, 9));
  });

  it("pages spans too, and rejects a malformed cursor with 400", async () => {
    const [r] = await h.store.listRollouts({ limit: 1, order: "asc" });
    const claim = await h.store.claimRollout({ workerId: "w" });
    expect(claim).not.toBeNull();
    const attemptId = claim?.attempt.id ?? "";
    const spans = Array.from({ length: 8 }, (_, i) => ({
      attemptId,
      spanId: `${"0".repeat(15)}${i}`,
      name: `s${i}`,
      kind: "custom" as const,
      startTime: 1000 + i,
      attributes: { pad: "q".repeat(60 * 1024) },
    }));
    await h.store.addSpans(spans);
    const first = (await jsonOf(await fetch(`${h.url}/api/v1/spans?attemptId=${attemptId}`))) as {
      data: unknown[];
      next: string | null;
    };
    expect(first.data.length).toBeLessThan(8);
    expect(first.next).not.toBeNull();
    const all = await new HttpStore(h.url).getSpans({ attemptId });
    expect(all.map((s) => s.name)).toEqual(spans.map((s) => s.name));
    expect(r.id).toBe(claim?.rollout.id);
    // A window of the list, across pages, read in windows from the store (not whole per page).
    const window = await new HttpStore(h.url).getSpans({ attemptId, limit: 5, offset: 2 });
    expect(window.map((s) => s.name)).toEqual(["s2", "s3", "s4", "s5", "s6"]);
    const tooMany = await fetch(`${h.url}/api/v1/rollouts?limit=20000`);
    expect(tooMany.status).toBe(400);
    const bad = await fetch(`${h.url}/api/v1/spans?attemptId=${attemptId}&cursor=%%%`);
    expect(bad.status).toBe(400);
    await openAIError(bad);
  });
});
