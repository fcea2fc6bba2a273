// Several named LoRA adapters on one base, served in the same engine steps: each row of a mixed
// batch (adapter A, adapter B, the base model) gets the same tokens and logprobs as when it runs
// alone, and those logprobs are the training forward's log-softmax with that adapter only.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LoraAdapter } from "../../src/model/lora.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import type { Generation } from "../../src/model/scheduler.ts";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { useGpu } from "../helpers/gpu.ts";

const gpu = useGpu();
let dir: string;
let model: Model;

/** B starts at zero; distinct values per adapter so each one changes the output differently. */
function perturb(lora: LoraAdapter, phase: number): void {
  for (const { name, tensor } of lora.parameters()) {
    if (name.includes("lora_B"))
      tensor.write(Array.from({ length: tensor.size }, (_, i) => Math.sin(i * 0.7 + phase) * 0.3));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-multi-adapter-"));
  // intermediate 98: an MLP row is 392 bytes, so a range starting at an odd row cannot be bound in
  // place (16- or 256-byte alignment) and is copied; even rows are views. Both paths run.
  await writeTinyModel(dir, { hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 98, seed: 5, lmHeadStd: 0.5 });
  model = await loadModel(dir, { gpu: gpu(), maxSlots: 8, maxSeqLen: 128, maxStepTokens: 64 });
  perturb(model.createAdapter({ rank: 4, alpha: 8, seed: 1 }, "agentA"), 0);
  perturb(
    model.createAdapter(
      { rank: 2, alpha: 4, seed: 2, targets: ["q_proj", "v_proj", "up_proj", "down_proj"] },
      "agentB",
    ),
    1.3,
  );
});

afterAll(() => {
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (v) => v - lse);
}

// One row of A first: in decode steps B's range then starts at an odd row.
const cases: { prompt: string; adapter: string | null }[] = [
  { prompt: "one adapter per agent", adapter: "agentA" },
  { prompt: "the same batch, another adapter and a longer prompt than the others", adapter: "agentB" },
  { prompt: "no adapter", adapter: null },
  { prompt: "agent B again with seven more", adapter: "agentB" },
  { prompt: "base model, second row", adapter: null },
];

describe("several adapters in one engine step", () => {
  it("gives each row what it gets alone with only its adapter, and the training forward agrees", async () => {
    const engine = model.engine;
    const prompts = cases.map((c) => model.tokenizer.encode(c.prompt));
    const run = (i: number) =>
      engine.submit(prompts[i], {
        adapter: cases[i].adapter,
        temperature: 0,
        maxTokens: 5,
        topLogprobs: 5,
        ignoreEos: true,
      });
    const stepsBefore = engine.scheduler.stats.steps;
    const mixed = await Promise.all(cases.map((_, i) => run(i)));
    const mixedSteps = engine.scheduler.stats.steps - stepsBefore;
    const alone: Generation[] = [];
    for (let i = 0; i < cases.length; i++) alone.push(await run(i));
    // All six shared steps: far fewer than six separate generations of 5 tokens each need.
    expect(mixedSteps).toBeLessThan(cases.length * 5);
    for (let i = 0; i < cases.length; i++) {
      expect(mixed[i].tokens).toEqual(alone[i].tokens);
      for (let k = 0; k < 5; k++) {
        expect(Math.abs(mixed[i].logprobs[k] - alone[i].logprobs[k])).toBeLessThan(1e-4);
        const a = mixed[i].topLogprobs![k];
        const b = alone[i].topLogprobs![k];
        expect(a.map((t) => t.token)).toEqual(b.map((t) => t.token));
        for (let j = 0; j < a.length; j++) expect(Math.abs(a[j].logprob - b[j].logprob)).toBeLessThan(1e-4);
      }
      // The training forward with only this adapter: log-softmax at each generated position.
      const seq = [...prompts[i], ...mixed[i].tokens];
      const logits = await model.logits(
        seq,
        cases[i].adapter === null ? { adapter: false } : { adapterName: cases[i].adapter! },
      );
      const V = model.config.vocabSize;
      for (let k = 0; k < 5; k++) {
        const pos = prompts[i].length - 1 + k;
        const lp = logSoftmax(logits.subarray(pos * V, (pos + 1) * V));
        for (const alt of mixed[i].topLogprobs![k]) expect(Math.abs(alt.logprob - lp[alt.token])).toBeLessThan(2e-3);
      }
    }
    // The adapters matter: the same prompt under A, B and none gives three different distributions.
    const probe = model.tokenizer.encode("same prompt");
    const [ga, gb, g0] = await Promise.all(
      ["agentA", "agentB", null].map((adapter) => engine.submit(probe, { adapter, temperature: 0, maxTokens: 1 })),
    );
    const firsts = [ga.logprobs[0], gb.logprobs[0], g0.logprobs[0]];
    expect(new Set(firsts.map((x) => x.toFixed(4))).size).toBe(3);
  });

  it("an unknown adapter name is refused at submit, naming the loaded ones", async () => {
    await expect(model.engine.submit([1, 2], { adapter: "nobody", maxTokens: 1 })).rejects.toThrow(
      /no LoRA adapter 'nobody' \(loaded: agentA, agentB\)/,
    );
  });

  it("named adapters sit next to the default one; each saves and removes on its own", async () => {
    expect([...model.adapters.keys()]).toEqual(["agentA", "agentB"]);
    expect(model.adapter).toBeNull();
    expect(() => model.createAdapter({ rank: 2, alpha: 2 }, "bad:name")).toThrow(/not valid/);
    const saveDir = join(dir, "saved-b");
    await model.saveAdapter(saveDir, "agentB");
    const before = await model.adapterNamed("agentB")!.toPeft();
    await model.loadAdapter(saveDir, 7, "agentC");
    const c = model.adapterNamed("agentC")!;
    expect(c.version).toBe(7);
    const after = await c.toPeft();
    for (const [k, t] of before.tensors) expect(Array.from(after.tensors.get(k)!.data)).toEqual(Array.from(t.data));
    // Busy adapters are not removed from under their requests.
    const running = model.engine.submit([1, 2, 3], { adapter: "agentC", maxTokens: 3, ignoreEos: true });
    expect(() => model.removeAdapter("agentC")).toThrow(/'agentC' is generating for 1 sequence/);
    await running;
    model.removeAdapter("agentC");
    expect(model.adapterNamed("agentC")).toBeNull();
    expect(model.adapterNamed("agentA")).not.toBeNull();
  });
});
