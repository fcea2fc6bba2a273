// The Agents SDK and LangGraph example agents train with `fulgur train` as they are: a config that
// names the example module unchanged, the built-in `fulgur-calc` model and arithmetic task files
// (the examples' task type), run as a user runs the CLI. One LightningRL step each: every
// rollout ends without an agent error, every call the framework made is recorded under its
// attempt with exact token ids and one logprob per token, and the trainer saves an adapter.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { makeTasks } from "../../src/demo/tasks.ts";
import { openStore } from "../../src/store/libsql.ts";

const root = join(import.meta.dirname, "../..");
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-train-examples-"));
  const tasks = makeTasks(31, 2, "ex").map((t) => JSON.stringify(t));
  writeFileSync(join(dir, "tasks.jsonl"), `${tasks.join("\n")}\n`);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

it.each([
  ["examples/agents-sdk-agent.ts", "agents-sdk"],
  ["examples/langgraph-agent.ts", "langgraph"],
])(
  "fulgur train --config with agent %s, unchanged",
  async (example, name) => {
    const config = {
      model: join(root, "models/fulgur-calc"),
      agent: join(root, example),
      tasks: { train: "tasks.jsonl" },
      steps: 1,
      store: `file:${name}.db`,
      algorithm: { samplesPerTask: 2, tasksPerStep: 2 },
      optimizer: { lr: 1e-3 },
      lora: { rank: 2, alpha: 4 },
      output: `${name}-adapter`,
    };
    const configPath = join(dir, `${name}.json`);
    writeFileSync(configPath, JSON.stringify(config));
    const r = spawnSync(
      join(root, "node_modules/.bin/tsx"),
      [join(root, "src/cli.ts"), "train", "--config", configPath, "--json"],
      {
        cwd: root,
        encoding: "utf8",
        timeout: 400_000,
        env: { ...process.env, OPENAI_AGENTS_DISABLE_TRACING: "1" },
      },
    );
    expect(r.status, r.stderr).toBe(0);
    const events = r.stdout
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l));
    const [step] = events.filter((e) => e.event === "step");
    expect(step).toMatchObject({ step: 1, rollouts: 4, failedRollouts: 0 });
    expect(events.at(-1)).toMatchObject({ event: "done", steps: 1 });
    expect(existsSync(join(dir, `${name}-adapter`, "adapter_model.safetensors"))).toBe(true);

    const store = await openStore(`file:${join(dir, `${name}.db`)}`);
    try {
      const rollouts = await store.listRollouts();
      expect(rollouts).toHaveLength(4);
      for (const rollout of rollouts) {
        expect(rollout.status).toBe("succeeded");
        const [attempt] = await store.listAttempts(rollout.id);
        expect(attempt.error).toBeNull();
        const transitions = await store.getTransitions({ attemptId: attempt.id });
        expect(transitions.length).toBeGreaterThanOrEqual(1);
        for (const tr of transitions) {
          // Both frameworks default to the Responses API.
          expect(String(tr.metadata?.callId)).toMatch(/^resp_/);
          expect(tr.rolloutId).toBe(rollout.id);
          expect(tr.promptIds.length).toBeGreaterThan(0);
          expect(tr.responseIds.length).toBeGreaterThan(0);
          expect(tr.responseLogprobs?.length).toBe(tr.responseIds.length);
          expect(tr.metadata?.error ?? null).toBeNull();
        }
      }
    } finally {
      await store.close();
    }
  },
  420_000,
);
