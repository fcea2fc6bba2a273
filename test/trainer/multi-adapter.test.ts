// Multi-agent training: one rollout makes calls as two agents, each served by its own named
// adapter ("tiny:agentA", "tiny:agentB"). A Trainer of adapter agentA learns only from agentA's
// calls (selected by the adapter name each call recorded), steps its own optimizer, publishes
// resource "adapter:agentA", and leaves agentB's tensors bit-identical.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, expect, it } from "vitest";
import { train } from "../../src/compose.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { type PeftAdapter, readPeftAdapter } from "../../src/model/peft.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import type { AgentContext } from "../../src/runner/types.ts";
import { openStore } from "../../src/store/libsql.ts";
import type { Store } from "../../src/store/types.ts";
import { latestCheckpoint } from "../../src/trainer/checkpoint.ts";
import { useGpu } from "../helpers/gpu.ts";

const gpu = useGpu();
let dir: string;
let model: Model;
let store: Store;
let allowed: Set<string>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-multi-train-"));
  await writeTinyModel(join(dir, "tiny"), {
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    intermediate: 48,
    seed: 21,
    tie: false,
    lmHeadStd: 0.5,
  });
  model = await loadModel(join(dir, "tiny"), { gpu: gpu(), maxSlots: 16, maxSeqLen: 256 });
  store = await openStore(`file:${join(dir, "store.db")}`);
  const V = model.config.vocabSize;
  allowed = new Set(Array.from({ length: Math.floor(V / 2) }, (_, i) => model.tokenizer.decode([i])));
});

afterAll(async () => {
  await store?.close();
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** Two agents in one rollout: agentA (the runner's model) answers, agentB comments; A's answer is rewarded. */
async function agent(task: { prompt: string }, ctx: AgentContext): Promise<number> {
  const client = new OpenAI({ baseURL: ctx.llm.baseURL, apiKey: ctx.llm.apiKey, maxRetries: 0 });
  const call = (model: string, user: string) =>
    client.chat.completions.create({
      model,
      messages: [{ role: "user", content: task.prompt }],
      max_tokens: 1,
      temperature: 1,
      user,
    });
  const [a] = await Promise.all([call(ctx.llm.model, "A"), call("tiny:agentB", "B")]);
  return allowed.has(a.choices[0].message.content ?? "") ? 1 : 0;
}

function same(x: PeftAdapter, y: PeftAdapter): boolean {
  for (const [k, t] of x.tensors) {
    const u = y.tensors.get(k)!.data;
    if (!t.data.every((v, i) => Object.is(v, u[i]))) return false;
  }
  return true;
}

it("trains adapter A from A's calls only, with its own optimizer; B stays bit-identical", async () => {
  model.createAdapter({ rank: 4, alpha: 8, seed: 9 }, "agentB");
  const bBefore = await model.adapterNamed("agentB")!.toPeft();
  const tasks = Array.from({ length: 4 }, (_, i) => ({ prompt: `pick a token #${i}` }));
  // Created by the trainer (B = 0 at first): snapshot after step 1 is compared with step 2's end.
  const result = await train({
    model,
    store,
    agent,
    adapter: "agentA",
    lora: { rank: 4, alpha: 8, seed: 1 },
    optimizer: { lr: 0.01 },
    algorithm: { samplesPerTask: 6, tasksPerStep: 2 },
    valEvery: 0,
    checkpointDir: join(dir, "ckpt"),
    data: { train: tasks },
    steps: 2,
  });
  expect(result.steps).toBe(2);
  const a = model.adapterNamed("agentA")!;
  expect(model.adapter).toBeNull();

  // Each step: 12 rollouts × (1 call of A + 1 of B); only A's are samples: one per rollout of
  // each group GRPO keeps (a group whose 6 rewards are all equal has no advantage and is dropped).
  for (const metrics of result.history) {
    expect(metrics.rollouts).toBe(12);
    expect(metrics.samples).toBe(12 - 6 * metrics.droppedGroups);
  }
  expect(result.history.some((m) => m.samples > 0)).toBe(true);
  // A learned: its B matrices moved off zero; agentB's tensors are exactly what they were.
  const aNow = await a.toPeft();
  const bNow = await model.adapterNamed("agentB")!.toPeft();
  expect(same(bNow, bBefore)).toBe(true);
  const movedA = [...aNow.tensors].filter(([k, t]) => k.includes("lora_B") && t.data.some((v) => v !== 0));
  expect(movedA.length).toBeGreaterThan(0);

  // The checkpoint holds agentA (not the absent default adapter) and its version.
  const info = (await latestCheckpoint(join(dir, "ckpt")))!;
  expect(same(await readPeftAdapter(info.adapterDir, model.config), aNow)).toBe(true);
  const meta = JSON.parse(readFileSync(join(info.dir, "trainer.json"), "utf8"));
  expect(meta.adapterVersion).toBe(a.version);

  // Versions: resource "adapter:agentA" advanced per step, and no "adapter" (default) resource.
  const published = await store.getResources("adapter:agentA");
  expect(published.version).toBe(a.version);
  expect(a.version).toBeGreaterThanOrEqual(3);
  await expect(store.getResources("adapter")).rejects.toThrow();

  // Every call recorded its adapter and that adapter's version: A's versions advance, B's stay 0.
  const rollouts = await store.listRollouts({ mode: "train", limit: 1000 });
  expect(rollouts).toHaveLength(24);
  const seen = { agentA: new Set<string | null>(), agentB: new Set<string | null>() };
  for (const r of rollouts) {
    const calls = await store.getTransitions({ rolloutId: r.id });
    expect(calls.map((t) => t.metadata?.adapter).sort()).toEqual(["agentA", "agentB"]);
    for (const t of calls) {
      expect(t.model).toBe(`tiny:${t.metadata?.adapter}`);
      seen[t.metadata?.adapter as "agentA" | "agentB"].add(t.adapterVersion);
    }
  }
  expect(seen.agentA.size).toBe(2);
  expect([...seen.agentB]).toEqual(["0"]);
}, 300_000);
