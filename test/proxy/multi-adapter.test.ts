// Multi-agent serving over real HTTP: `fulgur serve --adapter agentA=DIR --adapter agentB=DIR`
// serves model "tiny:agentA" and "tiny:agentB" from one base in the same batches; the official
// `openai` client gets different answers from different adapters, every call records the adapter
// name and version that produced it, /v1/models lists them, and an unknown adapter is a 404.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveApp } from "../../src/http/serve.ts";
import { loadModel } from "../../src/model/model.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { LocalBackend } from "../../src/proxy/local.ts";
import { createApp, type FulgurServer, parseServerArgs, startServer } from "../../src/server.ts";

let dir: string;
let server: FulgurServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-multi-proxy-"));
  const modelDir = join(dir, "tiny");
  await writeTinyModel(modelDir, {
    hidden: 64,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    intermediate: 96,
    seed: 8,
    lmHeadStd: 0.5,
  });
  // Two adapters with different weights, written in PEFT format by a throwaway model.
  const maker = await loadModel(modelDir, { maxSlots: 1, maxSeqLen: 64 });
  try {
    for (const [name, phase] of [
      ["agentA", 0],
      ["agentB", 2.1],
    ] as const) {
      const lora = maker.createAdapter({ rank: 4, alpha: 8, seed: phase === 0 ? 1 : 2 }, name);
      for (const { name: key, tensor } of lora.parameters()) {
        if (key.includes("lora_B"))
          tensor.write(Array.from({ length: tensor.size }, (_, i) => Math.sin(i * 0.9 + phase) * 0.5));
      }
      await maker.saveAdapter(join(dir, name), name);
    }
  } finally {
    maker.dispose();
  }
  const args = parseServerArgs([
    "--adapter",
    `agentA=${join(dir, "agentA")}`,
    "--adapter",
    `agentB=${join(dir, "agentB")}`,
  ]);
  server = await startServer({
    ...args,
    modelDir,
    storeUrl: `file:${join(dir, "store.db")}`,
    port: 0,
    maxSeqLen: 128,
  });
}, 120_000);

afterAll(async () => {
  await server?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

async function attempt(): Promise<{ attemptId: string; client: OpenAI }> {
  await server.store.enqueueRollout({ input: { task: "multi-agent" } });
  const claim = await server.store.claimRollout({ workerId: "multi-adapter-test" });
  const baseURL = `${server.url}/rollouts/${claim!.rollout.id}/attempts/${claim!.attempt.id}/v1`;
  return { attemptId: claim!.attempt.id, client: new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 }) };
}

describe("named adapters through the proxy", () => {
  it("lists the base and each adapter as models", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(["tiny", "tiny:agentA", "tiny:agentB"]);
  });

  it("serves each agent with its adapter in the same batch and records adapter name + version per call", async () => {
    const { attemptId, client } = await attempt();
    server.model!.adapterNamed("agentB")!.version = 3;
    const ask = (model: string, n: number) =>
      client.chat.completions.create({
        model,
        messages: [{ role: "user", content: "which agent am I?" }],
        max_tokens: 8,
        temperature: 0,
        logprobs: true,
        n,
        user: model,
      });
    // Concurrent, so the three models' rows share engine steps.
    const [a, b, base] = await Promise.all([ask("tiny:agentA", 2), ask("tiny:agentB", 1), ask("tiny", 1)]);
    expect(a.model).toBe("tiny:agentA");
    expect(b.model).toBe("tiny:agentB");
    expect(base.model).toBe("tiny");
    const tokens = (r: typeof a) => r.choices[0].logprobs!.content!.map((t) => t.logprob.toFixed(5)).join(",");
    expect(tokens(a)).not.toBe(tokens(b));
    expect(tokens(a)).not.toBe(tokens(base));
    expect(tokens(b)).not.toBe(tokens(base));
    // Greedy: both choices of A agree (same adapter, same prompt).
    expect(a.choices[1].message.content).toBe(a.choices[0].message.content);

    const recorded = await server.store.getTransitions({ attemptId });
    expect(recorded).toHaveLength(4);
    const by = (model: string) => recorded.filter((t) => t.model === model);
    expect(by("tiny:agentA").map((t) => [t.metadata?.adapter, t.adapterVersion])).toEqual([
      ["agentA", "0"],
      ["agentA", "0"],
    ]);
    expect(by("tiny:agentB").map((t) => [t.metadata?.adapter, t.adapterVersion])).toEqual([["agentB", "3"]]);
    expect(by("tiny").map((t) => [t.metadata?.adapter, t.adapterVersion])).toEqual([[null, null]]);
    // The recorded token ids are what each adapter produced.
    const respA = Array.from(by("tiny:agentA")[0].responseIds);
    const respB = Array.from(by("tiny:agentB")[0].responseIds);
    expect(respA.length).toBeGreaterThan(0);
    expect(respA).not.toEqual(respB);
  });

  it("completions pick the adapter the same way", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const run = (model: string) =>
      client.completions.create({ model, prompt: "hello", max_tokens: 6, temperature: 0, logprobs: 1 });
    const [a, b] = await Promise.all([run("tiny:agentA"), run("tiny:agentB")]);
    expect(a.model).toBe("tiny:agentA");
    expect(a.choices[0].logprobs!.token_logprobs).not.toEqual(b.choices[0].logprobs!.token_logprobs);
  });

  it("streams and the Responses API pick the adapter the same way, and record it", async () => {
    const { attemptId, client } = await attempt();
    const messages = [{ role: "user" as const, content: "stream as agent A" }];
    const plain = await client.chat.completions.create({
      model: "tiny:agentA",
      messages,
      max_tokens: 6,
      temperature: 0,
    });
    const stream = await client.chat.completions.create({
      model: "tiny:agentA",
      messages,
      max_tokens: 6,
      temperature: 0,
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe(plain.choices[0].message.content ?? "");
    const response = await client.responses.create({ model: "tiny:agentB", input: "hello B", max_output_tokens: 4 });
    expect(["completed", "incomplete"]).toContain(response.status); // incomplete: max_output_tokens reached
    const recorded = await server.store.getTransitions({ attemptId });
    expect(recorded.map((t) => t.metadata?.adapter).sort()).toEqual(["agentA", "agentA", "agentB"]);
  });

  it("an unknown adapter is a 404 model_not_found listing the served models, and nothing is recorded", async () => {
    const { attemptId, client } = await attempt();
    const err = await client.chat.completions
      .create({ model: "tiny:agentZ", messages: [{ role: "user", content: "hi" }], max_tokens: 2 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    const e = err as InstanceType<typeof OpenAI.NotFoundError>;
    expect(e.code).toBe("model_not_found");
    expect(e.message).toContain("tiny:agentZ");
    expect(e.message).toContain("tiny, tiny:agentA, tiny:agentB");
    expect(await server.store.getTransitions({ attemptId })).toHaveLength(0);
  });

  it("with any model accepted, other names get the default adapter but base:unknown is still a 404", async () => {
    const { app } = createApp({
      store: server.store,
      backend: new LocalBackend(server.model!, { modelId: "tiny" }),
      acceptAnyModel: true,
    });
    const other = await serveApp(app, "127.0.0.1", 0);
    try {
      const client = new OpenAI({ baseURL: `${other.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const ok = await client.chat.completions.create({
        model: "gpt-4o",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 2,
      });
      expect(ok.choices[0].message.role).toBe("assistant");
      const err = await client.chat.completions
        .create({ model: "tiny:agentZ", messages: [{ role: "user", content: "hi" }], max_tokens: 2 })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.NotFoundError);
      expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).toBe("model_not_found");
    } finally {
      await other.close();
    }
  });
});
