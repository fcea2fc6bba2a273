// UpstreamBackend against the toy upstream in its other modes (vLLM's own tool parser, servers
// without token ids, failing and unreachable upstreams, slow streams the client abandons), model
// naming (modelName, modelMap, acceptAnyModel), legacy completions, response_format checking,
// and the SSE reader and upstream error mapping on their own.
import { type AddressInfo, createServer } from "node:net";
import type OpenAI from "openai";
import type { APIError } from "openai";
import { describe, expect, it } from "vitest";
import type { RecordedChatCall, RecordedCompletionCall } from "../../src/proxy/backend.ts";
import { fromUpstreamError } from "../../src/proxy/errors.ts";
import { readSseData } from "../../src/proxy/sse.ts";
import { UpstreamBackend } from "../../src/proxy/upstream.ts";
import { startProxy, UPSTREAM_MODEL, until } from "./harness.ts";
import { toyLogprob, toyTokenId, toyTokenize } from "./upstream-server.ts";

const TOOL = { type: "function" as const, function: { name: "lookup", parameters: { type: "object" } } };

describe("UpstreamBackend modes", () => {
  it("uses tool_calls an upstream parsed itself (vLLM --tool-call-parser), streaming and not", async () => {
    const h = await startProxy({ upstream: { toolParser: true } });
    try {
      const res = await h.client.chat.completions.create({
        model: UPSTREAM_MODEL,
        messages: [{ role: "user", content: "find it twice" }],
        tools: [TOOL],
      });
      expect(res.choices[0].finish_reason).toBe("tool_calls");
      expect(res.choices[0].message.tool_calls?.map((t) => (t.type === "function" ? t.function.name : ""))).toEqual([
        "lookup",
        "lookup",
      ]);
      const runner = h.client.chat.completions.stream({
        model: UPSTREAM_MODEL,
        messages: [{ role: "user", content: "find it" }],
        tools: [TOOL],
      });
      const final = await runner.finalChatCompletion();
      const call = final.choices[0].message.tool_calls?.[0];
      expect(call?.type === "function" && JSON.parse(call.function.arguments)).toEqual({ query: "find it" });
      await until(() => h.recorder.calls.length === 2);
      const recorded = h.recorder.calls[1] as RecordedChatCall;
      expect(recorded.outcome?.choices[0].toolCalls).toHaveLength(1);
      expect(recorded.outcome?.choices[0].tokenIds?.length).toBeGreaterThan(0);
    } finally {
      await h.close();
    }
  });

  it("records null token ids when the upstream gives none, and keeps the logprobs it gives", async () => {
    const h = await startProxy({ backend: { returnTokenIds: false } });
    try {
      await h.client.chat.completions.create({ model: UPSTREAM_MODEL, messages: [{ role: "user", content: "plain" }] });
      const stream = await h.client.chat.completions.create({
        model: UPSTREAM_MODEL,
        messages: [{ role: "user", content: "plain" }],
        stream: true,
      });
      for await (const _ of stream);
      await until(() => h.recorder.calls.length === 2);
      expect(h.upstream.stats.bodies.every((b) => !("return_token_ids" in b))).toBe(true);
      for (const call of h.recorder.calls as RecordedChatCall[]) {
        expect(call.outcome?.promptTokenIds).toBeNull();
        const choice = call.outcome!.choices[0];
        expect(choice.tokenIds).toBeNull();
        const tokens = toyTokenize("You said: plain");
        expect(choice.logprobs?.map((l) => l.logprob)).toEqual(tokens.map((t, i) => toyLogprob(toyTokenId(t), i)));
        expect(choice.logprobs?.every((l) => l.tokenId === null)).toBe(true);
      }
    } finally {
      await h.close();
    }
  });

  it("does not ask for logprobs the client did not want when requestLogprobs is off", async () => {
    const h = await startProxy({ backend: { requestLogprobs: false } });
    try {
      await h.client.chat.completions.create({ model: UPSTREAM_MODEL, messages: [{ role: "user", content: "x" }] });
      await until(() => h.recorder.calls.length === 1);
      expect(h.upstream.stats.bodies[0].logprobs).toBeUndefined();
      expect((h.recorder.calls[0] as RecordedChatCall).outcome?.choices[0].logprobs).toBeNull();
    } finally {
      await h.close();
    }
  });

  it("maps an upstream 5xx and an unreachable upstream to 502, recording the failure", async () => {
    const h = await startProxy();
    try {
      const err = (await h.client.chat.completions
        .create({ model: UPSTREAM_MODEL, messages: [{ role: "user", content: "!fail500" }] })
        .catch((e: unknown) => e)) as APIError;
      expect(err.status).toBe(502);
      expect(err.type).toBe("upstream_error");
      expect(err.message).toContain("engine crashed");
      await until(() => h.recorder.calls.length === 1);
      expect(h.recorder.calls[0].error).toMatchObject({ status: 502 });
    } finally {
      await h.close();
    }
    // A port that was free a moment ago refuses connections.
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const dead = new UpstreamBackend({ baseURL: `http://127.0.0.1:${port}/v1`, models: [UPSTREAM_MODEL] });
    const failure = await dead
      .chat(
        {
          model: UPSTREAM_MODEL,
          messages: [{ role: "user", content: "x" }],
          tools: null,
          toolChoice: "none",
          parseToolCalls: false,
          parallelToolCalls: true,
          responseFormat: { type: "text" },
          sampling: {
            n: 1,
            temperature: 1,
            topP: 1,
            topK: 0,
            maxTokens: null,
            stop: [],
            seed: null,
            logprobs: false,
            topLogprobs: 0,
            presencePenalty: 0,
            frequencyPenalty: 0,
          },
          stream: false,
          includeUsage: false,
          user: null,
          extra: {},
        },
        { signal: new AbortController().signal, receivedAt: performance.now() },
      )
      .catch((e: unknown) => e);
    expect(failure).toMatchObject({ status: 502, code: "upstream_unavailable" });
    expect((failure as Error).message).toMatch(/unreachable: ECONNREFUSED/);
  });

  it("stops the upstream stream when the client disconnects and records the call as disconnected", async () => {
    const h = await startProxy({ upstream: { tokenDelayMs: 30 } });
    try {
      const controller = new AbortController();
      const stream = await h.client.chat.completions.create(
        {
          model: UPSTREAM_MODEL,
          messages: [{ role: "user", content: "a b c d e f g h i j k l m n o p q r s t u v w x y z" }],
          stream: true,
        },
        { signal: controller.signal },
      );
      let seen = 0;
      try {
        for await (const _ of stream) {
          if (++seen === 3) controller.abort();
        }
      } catch {
        // The SDK may or may not raise on a user abort; either way the stream ends here.
      }
      expect(seen).toBeLessThan(10);
      await until(() => h.upstream.stats.aborted === 1 && h.recorder.calls.length === 1);
      expect(h.recorder.calls[0].error).toMatchObject({ type: "client_disconnected" });
    } finally {
      await h.close();
    }
  });
});

describe("model names", () => {
  it("serves one configured model id, mapped to the upstream's name", async () => {
    const h = await startProxy({
      routes: { modelName: "fulgur-policy" },
      backend: { modelMap: { "fulgur-policy": UPSTREAM_MODEL } },
    });
    try {
      expect((await h.client.models.list()).data.map((m) => m.id)).toEqual(["fulgur-policy"]);
      const res = await h.client.chat.completions.create({
        model: "fulgur-policy",
        messages: [{ role: "user", content: "x" }],
      });
      expect(res.model).toBe("fulgur-policy");
      expect(h.upstream.stats.bodies[0].model).toBe(UPSTREAM_MODEL);
      const err = (await h.client.chat.completions
        .create({ model: UPSTREAM_MODEL, messages: [{ role: "user", content: "x" }] })
        .catch((e: unknown) => e)) as APIError;
      expect(err.code).toBe("model_not_found");
      await until(() => h.recorder.calls.length === 1);
      expect(h.recorder.calls[0].model).toBe(UPSTREAM_MODEL);
    } finally {
      await h.close();
    }
  });

  it("accepts any model when configured so", async () => {
    const h = await startProxy({
      routes: { acceptAnyModel: true },
      backend: { modelMap: { "gpt-4o-mini": UPSTREAM_MODEL } },
    });
    try {
      const res = await h.client.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "x" }],
      });
      expect(res.choices[0].message.content).toBe("You said: x");
    } finally {
      await h.close();
    }
  });
});

describe("legacy completions", () => {
  it("answers text and token-id prompts, n per prompt, with logprobs in the legacy shape", async () => {
    const h = await startProxy();
    try {
      const res = await h.client.completions.create({
        model: UPSTREAM_MODEL,
        prompt: ["The sky is", "Roses are"],
        n: 2,
        logprobs: 2,
        max_tokens: 5,
      });
      expect(res.object).toBe("text_completion");
      expect(res.id).toMatch(/^cmpl-/);
      expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
      expect(res.choices[0].text).toBe(" and thenThe sky is");
      expect(res.choices[2].text).toBe(" and thenRoses are");
      const lp = res.choices[0].logprobs!;
      expect(lp.tokens).toEqual(toyTokenize(" and thenThe sky is"));
      expect(lp.token_logprobs).toEqual(lp.tokens!.map((t, i) => toyLogprob(toyTokenId(t), i)));
      expect(lp.top_logprobs?.every((top) => Object.keys(top).length === 2)).toBe(true);
      expect(lp.text_offset?.[1]).toBe(lp.tokens![0].length);

      const byIds = await h.client.completions.create({ model: UPSTREAM_MODEL, prompt: [11, 22, 33] });
      expect(byIds.choices[0].text).toBe(" after 3 tokens");
      expect(byIds.choices[0].logprobs).toBeNull();
      await until(() => h.recorder.calls.length === 2);
      const [first, second] = h.recorder.calls as RecordedCompletionCall[];
      expect(first.outcome?.choices.map((c) => c.promptIndex)).toEqual([0, 0, 1, 1]);
      expect(first.outcome?.promptTokenIds[1]).toEqual(toyTokenize("Roses are").map(toyTokenId));
      expect(second.request.prompts).toEqual([[11, 22, 33]]);
      expect(second.outcome?.promptTokenIds).toEqual([[11, 22, 33]]);
      expect(second.outcome?.choices[0].tokenIds).toEqual(toyTokenize(" after 3 tokens").map(toyTokenId));
    } finally {
      await h.close();
    }
  });

  it("streams completions with a usage chunk and rejects echo", async () => {
    const h = await startProxy();
    try {
      const stream = await h.client.completions.create({
        model: UPSTREAM_MODEL,
        prompt: "Hello",
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = "";
      let usage: OpenAI.CompletionUsage | null | undefined;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.text ?? "";
        if (chunk.usage) usage = chunk.usage;
      }
      expect(text).toBe(" and thenHello");
      expect(usage?.completion_tokens).toBe(2);
      const err = (await h.client.completions
        .create({ model: UPSTREAM_MODEL, prompt: "x", echo: true })
        .catch((e: unknown) => e)) as APIError;
      expect(err.status).toBe(400);
      expect(err.param).toBe("echo");
    } finally {
      await h.close();
    }
  });
});

describe("response_format without constrained decoding", () => {
  it("passes JSON output and rejects non-JSON output with a recorded error", async () => {
    const h = await startProxy({ backend: { constrainedJson: false } });
    try {
      const ok = await h.client.chat.completions.create({
        model: UPSTREAM_MODEL,
        messages: [{ role: "user", content: "json please" }],
        response_format: { type: "json_object" },
      });
      expect(JSON.parse(ok.choices[0].message.content!)).toEqual({ echo: "json please" });
      // Cut short, the JSON is incomplete: the check catches it.
      const err = (await h.client.chat.completions
        .create({
          model: UPSTREAM_MODEL,
          messages: [{ role: "user", content: "json please" }],
          response_format: { type: "json_object" },
          max_tokens: 1,
        })
        .catch((e: unknown) => e)) as APIError;
      expect(err.status).toBe(500);
      expect(err.code).toBe("invalid_json_output");
      await until(() => h.recorder.calls.length === 2);
      expect(h.recorder.calls[1].error).toMatchObject({ code: "invalid_json_output" });
      expect(h.recorder.calls[1].outcome).not.toBeNull();
    } finally {
      await h.close();
    }
  });
});

describe("wire helpers", () => {
  const body = (parts: string[]) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (const p of parts) controller.enqueue(new TextEncoder().encode(p));
        controller.close();
      },
    });
  const collect = async (parts: string[]) => {
    const out: string[] = [];
    for await (const data of readSseData(body(parts))) out.push(data);
    return out;
  };

  it("reads SSE data split anywhere, with CRLF, comments and multi-line data", async () => {
    expect(await collect(['data: {"a":1}\n\n', "data: [DONE]\n\n", "data: late\n\n"])).toEqual(['{"a":1}']);
    expect(await collect(["da", "ta: x\r", "\n\r\n: comment\n", "event: e\ndata: y\ndata: z\n\n"])).toEqual([
      "x",
      "y\nz",
    ]);
    expect(await collect(["data: 日", "本\n\ndata:tail"])).toEqual(["日本", "tail"]);
    // A multi-byte character cut between reads is decoded whole.
    const bytes = new TextEncoder().encode("data: é\n\n");
    const split = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.slice(0, 7));
        controller.enqueue(bytes.slice(7));
        controller.close();
      },
    });
    const out: string[] = [];
    for await (const d of readSseData(split)) out.push(d);
    expect(out).toEqual(["é"]);
  });

  it("maps upstream errors: 4xx through (context length recognised), 5xx to 502", () => {
    const vllm = fromUpstreamError(
      400,
      JSON.stringify({
        object: "error",
        message: "This model's maximum context length is 10 tokens.",
        type: "BadRequestError",
        code: 400,
      }),
      "http://u",
    );
    expect(vllm.toBody().error).toEqual({
      message: "This model's maximum context length is 10 tokens.",
      type: "invalid_request_error",
      param: null,
      code: "context_length_exceeded",
    });
    const openai = fromUpstreamError(
      429,
      JSON.stringify({
        error: { message: "slow down", type: "rate_limit_error", param: null, code: "rate_limit_exceeded" },
      }),
      "http://u",
    );
    expect(openai.status).toBe(429);
    expect(openai.toBody().error).toMatchObject({ type: "rate_limit_error", code: "rate_limit_exceeded" });
    const broken = fromUpstreamError(503, "<html>bad gateway</html>", "http://u");
    expect(broken.status).toBe(502);
    expect(broken.message).toContain("<html>bad gateway</html>");
  });
});
