// `fulgur eval`: accuracy and mean reward of a model (+ adapter) with an agent on a task set,
// one rollout per task, run by an in-process runner against the model served on loopback.

import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { withAgents } from "../compose.ts";
import { loadModel } from "../model/model.ts";
import { Progress } from "../progress.ts";
import { openStore } from "../store/libsql.ts";
import { evaluateTasks } from "../trainer/algorithm.ts";
import type { Command } from "./command.ts";
import { importAgent, readTasks } from "./inputs.ts";

export const EVAL_USAGE = `fulgur eval --model DIR --agent PATH --tasks FILE [--adapter DIR] [--threshold 1] [--json]
  Runs the agent once per task (JSON array or JSONL) and prints accuracy and mean reward.`;

export async function runEval(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" },
      adapter: { type: "string" },
      agent: { type: "string" },
      tasks: { type: "string" },
      threshold: { type: "string", default: "1" },
      json: { type: "boolean" },
    },
  });
  if (!values.model || !values.agent || !values.tasks)
    throw new Error(`--model, --agent and --tasks are required\n\n${EVAL_USAGE}`);
  const progress = new Progress({ json: values.json });
  const model = await loadModel(resolve(values.model));
  const store = await openStore(":memory:");
  try {
    if (values.adapter) await model.loadAdapter(resolve(values.adapter));
    const agent = await importAgent(values.agent);
    const tasks = await readTasks(resolve(values.tasks));
    const r = await withAgents({ model, store, agent }, () =>
      evaluateTasks(store, tasks, { mode: "test", successThreshold: Number(values.threshold) }),
    );
    progress.event(
      { event: "eval", ...r, adapter: values.adapter ?? null },
      `accuracy ${(r.accuracy * 100).toFixed(1)}% over ${r.rollouts} tasks (mean reward ${r.rewardMean.toFixed(3)}, ${r.failed} failed)`,
    );
    return 0;
  } finally {
    await store.close();
    model.dispose();
  }
}

export const evalCommand: Command = {
  summary: "accuracy of a model (+ adapter) with an agent on a task set",
  usage: EVAL_USAGE,
  run: runEval,
};
