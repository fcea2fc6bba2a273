// `fulgur train` and `fulgur eval` as a user runs them: a JSON config, an agent module, task
// files; JSON-lines progress ending in a "done" event, a saved PEFT adapter, and eval with it.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { writeTinyModel } from "../../src/model/tiny.ts";

const root = join(import.meta.dirname, "../..");
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-cli-"));
  await writeTinyModel(join(dir, "model"), {
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    intermediate: 48,
    seed: 2,
    tie: false,
    lmHeadStd: 0.5,
  });
  const tasks = Array.from({ length: 4 }, (_, i) => JSON.stringify({ prompt: `say something short ${i}` })).join("\n");
  writeFileSync(join(dir, "tasks.jsonl"), `${tasks}\n`);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[]) {
  return spawnSync(join(root, "node_modules/.bin/tsx"), [join(root, "src/cli.ts"), ...args], {
    cwd: root,
    encoding: "utf8",
    timeout: 240_000,
  });
}

it("trains from a config, saves the adapter, and evaluates with it", () => {
  const config = {
    model: "model",
    agent: join(root, "test/trainer/fixtures/short-answer-agent.ts"),
    tasks: { train: "tasks.jsonl", val: "tasks.jsonl" },
    steps: 2,
    store: "file:store.db",
    algorithm: { samplesPerTask: 4, tasksPerStep: 2 },
    optimizer: { lr: 0.01 },
    lora: { rank: 2, alpha: 4 },
    valEvery: 2,
    logFile: "train.jsonl",
    output: "adapter",
  };
  writeFileSync(join(dir, "train.json"), JSON.stringify(config));
  const r = cli(["train", "--config", join(dir, "train.json"), "--json"]);
  expect(r.status, r.stderr).toBe(0);
  const events = r.stdout
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l));
  expect(events.filter((e) => e.event === "step").map((e) => e.step)).toEqual([1, 2]);
  expect(events.filter((e) => e.event === "validation").length).toBe(2);
  const done = events[events.length - 1];
  expect(done.event).toBe("done");
  expect(existsSync(join(dir, "adapter", "adapter_model.safetensors"))).toBe(true);
  expect(existsSync(join(dir, "train.jsonl"))).toBe(true);

  const e = cli([
    "eval",
    "--model",
    join(dir, "model"),
    "--adapter",
    join(dir, "adapter"),
    "--agent",
    config.agent,
    "--tasks",
    join(dir, "tasks.jsonl"),
    "--json",
  ]);
  expect(e.status, e.stderr).toBe(0);
  const out = JSON.parse(e.stdout.trim().split("\n").pop()!);
  expect(out.event).toBe("eval");
  expect(out.rollouts).toBe(4);
  expect(out.accuracy).toBeGreaterThanOrEqual(0);
  expect(out.accuracy).toBeLessThanOrEqual(1);
});

it("explains a missing config field", () => {
  writeFileSync(join(dir, "bad.json"), JSON.stringify({ model: "model" }));
  const r = cli(["train", "--config", join(dir, "bad.json")]);
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/"agent" is required/);
});

it("runs SFT from chat records: algorithm sft, no agent; LoRA adapter or a whole model", () => {
  const record = (q: string) =>
    JSON.stringify({
      messages: [
        { role: "user", content: q },
        { role: "assistant", content: "Hello from Fulgur." },
      ],
    });
  writeFileSync(join(dir, "chats.jsonl"), `${["Say hi.", "Greet me.", "Hello?", "Start."].map(record).join("\n")}\n`);
  writeFileSync(join(dir, "chats-val.jsonl"), `${record("Welcome me.")}\n`);
  const base = {
    model: "model",
    tasks: { train: "chats.jsonl", val: "chats-val.jsonl" },
    steps: 30,
    algorithm: { name: "sft", batchSize: 4 },
    optimizer: { lr: 0.02 },
  };
  for (const [lora, output, file] of [
    [{ rank: 4, alpha: 8 }, "sft-adapter", "adapter_model.safetensors"],
    ["full", "sft-model", "model.safetensors"],
  ] as const) {
    writeFileSync(join(dir, "sft.json"), JSON.stringify({ ...base, lora, output }));
    const r = cli(["train", "--config", join(dir, "sft.json"), "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const events = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(events.filter((e) => e.event === "step")).toHaveLength(30);
    const done = events[events.length - 1];
    expect(done).toMatchObject({ event: "done", algorithm: "sft", steps: 30 });
    expect(done.validation.map((v: { step: number }) => v.step)).toEqual([0, 30]);
    expect(done.validation[1].loss).toBeLessThan(done.validation[0].loss);
    expect(existsSync(join(dir, output, file)), `${output}/${file}`).toBe(true);
  }
  // A whole model directory loads like any checkpoint.
  expect(existsSync(join(dir, "sft-model", "config.json"))).toBe(true);
  expect(existsSync(join(dir, "sft-model", "tokenizer.json"))).toBe(true);

  writeFileSync(join(dir, "bad-chats.jsonl"), `${JSON.stringify({ messages: [{ role: "user", content: "hi" }] })}\n`);
  writeFileSync(join(dir, "sft-bad.json"), JSON.stringify({ ...base, tasks: { train: "bad-chats.jsonl" } }));
  const bad = cli(["train", "--config", join(dir, "sft-bad.json")]);
  expect(bad.status).toBe(1);
  expect(bad.stderr).toMatch(/train record 1: .*assistant/);
}, 240_000);
