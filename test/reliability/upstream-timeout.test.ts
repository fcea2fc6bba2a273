// Upstream mode fails cleanly (issue 15 item 7): an upstream that never answers is a 504 after
// the configured time, one that answers garbage (not JSON, or JSON of the wrong shape) is a 502;
// never a hang and never a 500. The upstreams here are real HTTP servers that misbehave.
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UpstreamBackend } from "../../src/proxy/upstream.ts";
import { parseServerArgs } from "../../src/server.ts";
import { type AppHarness, startApp } from "./limits-access-harness.ts";

interface Misbehaving {
  baseURL: string;
  close(): Promise<void>;
}

/** An OpenAI-looking server whose /chat/completions hangs, answers HTML, or half-streams. */
async function startMisbehaving(): Promise<Misbehaving> {
  const app = new Hono();
  const hang = () => new Promise<Response>(() => {});
  app.get("/v1/models", (c) => c.json({ object: "list", data: [{ id: "m", object: "model" }] }));
  app.post("/v1/chat/completions", async (c) => {
    const body = (await c.req.json()) as { messages: { content: string }[]; stream?: boolean };
    const what = body.messages.at(-1)?.content ?? "";
    if (what === "hang") return hang();
    if (what === "html") return c.html("<html><body>Bad gateway (nginx)</body></html>", 200);
    if (what === "shape") return c.json({ unexpected: true });
    if (what === "null-choice") return c.json({ id: "x", object: "chat.completion", model: "m", choices: [null] });
    if (what === "odd-stream") {
      return new Response('data: 42\n\ndata: {"choices":[null]}\n\n', {
        headers: { "content-type": "text/event-stream" },
      });
    }
    if (what === "stall") {
      // Headers and one chunk, then nothing: the idle time between chunks runs out.
      const enc = new TextEncoder();
      const chunk = {
        id: "x",
        object: "chat.completion.chunk",
        model: "m",
        choices: [{ index: 0, delta: { content: "hi" } }],
      };
      return new Response(
        new ReadableStream({
          start(controller) {
            controller.enqueue(enc.encode(`data: ${JSON.stringify(chunk)}\n\n`));
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      );
    }
    return c.json({ error: "unreachable" }, 500);
  });
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const port = (server.address() as AddressInfo).port;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}

describe("upstream failures", () => {
  let bad: Misbehaving;
  let h: AppHarness;
  let client: OpenAI;
  beforeAll(async () => {
    bad = await startMisbehaving();
    h = await startApp({ chatBackend: new UpstreamBackend({ baseURL: bad.baseURL, models: ["m"], timeoutMs: 300 }) });
    client = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 20_000 });
  });
  afterAll(async () => {
    await h.close();
    await bad.close();
  });

  const ask = (content: string, stream = false) =>
    client.chat.completions.create({ model: "m", messages: [{ role: "user", content }], stream }).catch((e) => e);

  it("answers 504 when the upstream does not answer within the timeout", async () => {
    const err = await ask("hang");
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.status).toBe(504);
    expect(err.code).toBe("upstream_timeout");
  });

  it("answers 502 when the upstream's body is not JSON, or not a chat completion", async () => {
    const html = await ask("html");
    expect(html.status).toBe(502);
    expect(String(html.message)).toMatch(/not JSON/i);
    const shape = await ask("shape");
    expect(shape.status).toBe(502);
    const nullChoice = await ask("null-choice");
    expect(nullChoice.status).toBe(502);
    const oddStream = await ask("odd-stream", true);
    expect(oddStream.status).toBe(502);
  });

  it("ends a stream whose upstream stalls mid-way with an error instead of hanging", async () => {
    const stream = (await client.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "stall" }],
      stream: true,
    })) as AsyncIterable<unknown>;
    const failure = await (async () => {
      for await (const _ of stream) {
        // read until the proxy gives up on the stalled upstream
      }
    })().catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(Error);
    expect(String((failure as Error).message)).toMatch(/within|timed out|timeout/i);
  });

  it("takes the timeout from --upstream-timeout-ms and refuses a bad value", () => {
    expect(parseServerArgs(["--upstream", "http://x/v1", "--upstream-timeout-ms", "1500"]).upstreamTimeoutMs).toBe(
      1500,
    );
    expect(() => parseServerArgs(["--upstream-timeout-ms", "soon"])).toThrow(/upstream-timeout-ms/);
  });
});
