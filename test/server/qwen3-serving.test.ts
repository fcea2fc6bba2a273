// A tiny Qwen3 behind the whole server: the openai SDK's chat completions render Qwen3's template
// (recorded prompt ids decode to it), and vLLM's `chat_template_kwargs` reaches the template, so
// `enable_thinking: false` pre-fills the empty think block agents use to skip reasoning. A
// malformed `chat_template_kwargs` is a 400 in OpenAI's error shape.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { type FulgurServer, startServer } from "../../src/server.ts";

let dir: string;
let server: FulgurServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-qwen3-server-"));
  await writeTinyModel(join(dir, "qwen3"), {
    architecture: "Qwen3ForCausalLM",
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    headDim: 16,
    intermediate: 48,
    seed: 6,
  });
  server = await startServer({
    modelDir: join(dir, "qwen3"),
    storeUrl: `file:${join(dir, "store.db")}`,
    port: 0,
    maxSeqLen: 256,
  });
});

afterAll(async () => {
  await server?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

async function recordedPrompt(body: Record<string, unknown>): Promise<string> {
  const rollout = await server.store.enqueueRollout({ input: { task: "qwen3" } });
  const claim = await server.store.claimRollout({ workerId: "w" });
  expect(claim?.rollout.id).toBe(rollout.id);
  const attemptId = claim!.attempt.id;
  const client = new OpenAI({
    baseURL: `${server.url}/rollouts/${rollout.id}/attempts/${attemptId}/v1`,
    apiKey: "unused",
    maxRetries: 0,
  });
  const res = await client.chat.completions.create({
    model: "qwen3",
    messages: [{ role: "user", content: "What is 2 + 2?" }],
    max_tokens: 4,
    temperature: 0,
    ...body,
  } as OpenAI.ChatCompletionCreateParamsNonStreaming);
  expect(res.choices).toHaveLength(1);
  await server.recorder.flush();
  const [t] = await server.store.getTransitions({ attemptId });
  return server.model!.tokenizer.decode(Array.from(t.promptIds));
}

describe("Qwen3 served through the OpenAI API", () => {
  it("renders Qwen3's template: no default system prompt, thinking left to the model", async () => {
    expect(await recordedPrompt({})).toBe("<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n");
  });

  it("passes chat_template_kwargs to the template (enable_thinking: false)", async () => {
    expect(await recordedPrompt({ chat_template_kwargs: { enable_thinking: false } })).toBe(
      "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    );
  });

  it("rejects a chat_template_kwargs that is not an object", async () => {
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "qwen3",
        messages: [{ role: "user", content: "hi" }],
        chat_template_kwargs: "enable_thinking=false",
      }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { type: string; param: string; message: string } };
    expect(body.error.type).toBe("invalid_request_error");
    expect(body.error.param).toBe("chat_template_kwargs");
    expect(body.error.message).toMatch(/must be an object/);
  });
});
