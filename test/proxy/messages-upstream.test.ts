// The Messages API on the other backend: `UpstreamBackend` in front of the toy OpenAI-compatible
// server (test/proxy/upstream-server.ts), driven by the official @anthropic-ai/sdk over real HTTP.
// Covers what the tiny model cannot be made to do on demand: text followed by tool calls, two
// tool calls in one turn (content block indexes in the stream), tool calls parsed by the upstream
// itself, client disconnects mid-stream, and the exact record handed to the recorder.
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RecordedChatCall } from "../../src/proxy/backend.ts";
import { type ProxyHarness, startProxy, UPSTREAM_MODEL, until } from "./harness.ts";

const LOOKUP: Anthropic.Tool = {
  name: "lookup",
  description: "Looks a query up.",
  input_schema: { type: "object", properties: { query: { type: "string" } } },
};

function anthropicAt(h: ProxyHarness, path = "") {
  return new Anthropic({ baseURL: `${h.url}${path}`, apiKey: "unused", maxRetries: 0 });
}

describe.each([
  { toolParser: false, what: "Hermes text parsed by the proxy" },
  { toolParser: true, what: "tool calls parsed by the upstream" },
])("Messages API over UpstreamBackend ($what)", ({ toolParser }) => {
  let h: ProxyHarness;
  beforeAll(async () => {
    h = await startProxy({ upstream: { toolParser } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("returns text then tool_use blocks, and streams them as blocks 0, 1, 2 with the same content", async () => {
    const client = anthropicAt(h, "/rollouts/ro-1/attempts/at-1");
    const params = {
      model: UPSTREAM_MODEL,
      max_tokens: 200,
      tools: [LOOKUP],
      messages: [{ role: "user" as const, content: "think twice about cats" }],
    };
    const msg = await client.messages.create(params);
    expect(msg.stop_reason).toBe("tool_use");
    expect(msg.content.map((b) => b.type)).toEqual(["text", "tool_use", "tool_use"]);
    expect(msg.content[0]).toEqual({ type: "text", text: "Let me look that up.\n" });
    for (const block of msg.content.slice(1)) {
      expect(block).toMatchObject({ type: "tool_use", name: "lookup", input: { query: "think twice about cats" } });
    }

    const starts: [number, string][] = [];
    const stream = client.messages.stream(params);
    stream.on("streamEvent", (e) => {
      if (e.type === "content_block_start") starts.push([e.index, e.content_block.type]);
    });
    const streamed = await stream.finalMessage();
    expect(starts).toEqual([
      [0, "text"],
      [1, "tool_use"],
      [2, "tool_use"],
    ]);
    expect(streamed.content.map((b) => (b.type === "tool_use" ? { ...b, id: "" } : b))).toEqual(
      msg.content.map((b) => (b.type === "tool_use" ? { ...b, id: "" } : b)),
    );
    expect(streamed.stop_reason).toBe("tool_use");

    // The recorder got each call once, as a chat call under the attempt of the base URL.
    await until(() => h.recorder.calls.length >= 2);
    const [plain, viaStream] = h.recorder.calls.slice(-2) as RecordedChatCall[];
    for (const call of [plain, viaStream]) {
      expect(call.kind).toBe("chat");
      expect(call.id).toMatch(/^msg_/);
      expect(call.rolloutId).toBe("ro-1");
      expect(call.attemptId).toBe("at-1");
      expect(call.error).toBeNull();
      expect(call.outcome?.choices[0].toolCalls.length).toBe(2);
      expect(call.request.tools?.[0].function.name).toBe("lookup");
    }
    expect(plain.id).toBe(msg.id);
    expect(viaStream.id).toBe(streamed.id);
    expect(plain.outcome?.choices[0].tokenIds?.length).toBe(msg.usage.output_tokens);
  });

  it("sends tool results back as tool messages and honours tool_choice none and stop sequences", async () => {
    const client = anthropicAt(h);
    const reply = await client.messages.create({
      model: UPSTREAM_MODEL,
      max_tokens: 50,
      tools: [LOOKUP],
      messages: [
        { role: "user", content: "cats" },
        { role: "assistant", content: [{ type: "tool_use", id: "toolu_9", name: "lookup", input: { query: "cats" } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_9", content: "purr" }] },
      ],
    });
    expect(reply.content).toEqual([{ type: "text", text: "The tool returned: purr" }]);
    const sent = h.upstream.stats.bodies.at(-1) as { messages: Record<string, unknown>[] };
    expect(sent.messages.map((m) => m.role)).toEqual(["user", "assistant", "tool"]);
    expect(sent.messages[1].tool_calls).toEqual([
      { id: "toolu_9", type: "function", function: { name: "lookup", arguments: '{"query":"cats"}' } },
    ]);
    expect(sent.messages[2]).toMatchObject({ tool_call_id: "toolu_9", content: "purr" });

    const none = await client.messages.create({
      model: UPSTREAM_MODEL,
      max_tokens: 50,
      tools: [LOOKUP],
      tool_choice: { type: "none" },
      stop_sequences: ["dogs"],
      messages: [{ role: "user", content: "cats and dogs" }],
    });
    expect(none.content).toEqual([{ type: "text", text: "You said: cats and " }]);
    expect((h.upstream.stats.bodies.at(-1) as { tool_choice?: unknown }).tool_choice).toBe("none");
    // The upstream does not say which stop string matched: end_turn, not a guess.
    expect(none.stop_reason).toBe("end_turn");
  });
});

describe("client disconnects", () => {
  it("stops the backend and records the call as disconnected", async () => {
    const h = await startProxy({ upstream: { tokenDelayMs: 30 } });
    try {
      const client = anthropicAt(h);
      const controller = new AbortController();
      const stream = client.messages.stream(
        {
          model: UPSTREAM_MODEL,
          max_tokens: 100,
          messages: [{ role: "user", content: "a b c d e f g h i j k l m n o p q r s t u v w x y z" }],
        },
        { signal: controller.signal },
      );
      let deltas = 0;
      stream.on("text", () => {
        if (++deltas === 3) controller.abort();
      });
      await stream.done().catch(() => {});
      expect(deltas).toBeLessThan(10);
      await until(() => h.upstream.stats.aborted === 1 && h.recorder.calls.length === 1);
      expect(h.recorder.calls[0].error).toMatchObject({ type: "client_disconnected" });
    } finally {
      await h.close();
    }
  });
});
