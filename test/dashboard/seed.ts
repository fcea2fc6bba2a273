// Realistic store contents for the dashboard test and screenshot: a GRPO run of a tool-using math
// agent: groups of train rollouts (each with spans, two LLM calls, a calculator tool call and a
// reward), a validation rollout, one retried then failed, one running, queued ones, a cancelled
// one, three adapter versions and 20 training steps of metrics. Everything goes through the real
// Store API; a manual clock spreads the timestamps over the last ten minutes.
import { openStore } from "../../src/store/libsql.ts";
import type { Store } from "../../src/store/types.ts";

export interface SeededStore {
  store: Store;
  /** Rollout ids by what was done to them. */
  ids: { succeeded: string[]; failed: string; running: string; queued: string[]; cancelled: string; val: string };
  /** A succeeded rollout whose first LLM call asked for the calculator tool with `toolArguments`. */
  toolRolloutId: string;
  toolArguments: { expression: string };
  totalRollouts: number;
  steps: number;
  /** Steps that carry valAccuracy (every 5th). */
  valSteps: number;
}

const PROBLEMS = [
  {
    question: "A train travels 182 km in 2.6 hours. What is its average speed in km/h?",
    expression: "182 / 2.6",
    answer: 70,
  },
  { question: "What is 17% of 2,340?", expression: "0.17 * 2340", answer: 397.8 },
  { question: "A rectangle is 12.5 m by 7.2 m. What is its area in m²?", expression: "12.5 * 7.2", answer: 90 },
];
const SYSTEM =
  "You are a careful math assistant. Use the calculator tool for arithmetic, then answer with the number only.";
const CALCULATOR = "calculator";

function tokens(count: number, seed: number): number[] {
  return Array.from({ length: count }, (_, i) => (seed * 7919 + i * 104729) % 151_000);
}

/** Opens an in-memory store and fills it; the clock runs in real time once seeding is done. */
export async function openSeededStore(): Promise<SeededStore> {
  let manual: number | null = Date.now() - 10 * 60_000;
  const now = () => manual ?? Date.now();
  const advance = (ms: number) => {
    if (manual !== null) manual += ms;
  };
  const store = await openStore(":memory:", { clock: now });
  for (let v = 1; v <= 3; v++)
    await store.addResources("adapter", { path: `adapters/step-${v * 5}.safetensors`, step: v * 5 });

  const train = (problem: number, groupId: string) => ({
    input: { question: PROBLEMS[problem].question, answer: PROBLEMS[problem].answer },
    mode: "train" as const,
    groupId,
    resources: { name: "adapter" },
  });
  // Claims take the oldest queued rollout, so the order here is the order they are worked on.
  const plan = [
    ...[0, 1, 2, 3].map(() => train(0, "grp-speed")),
    ...[0, 1, 2, 3].map(() => train(1, "grp-percent")),
    { ...train(2, "grp-area"), mode: "val" as const, groupId: null },
    { ...train(2, "grp-area"), config: { maxAttempts: 2, unresponsiveTimeoutMs: null } },
    train(2, "grp-area"),
    train(2, "grp-area"),
    train(2, "grp-area"),
    train(0, "grp-speed-2"),
  ];
  const rollouts = await store.enqueueRollouts(plan);
  const succeeded: string[] = [];
  const toolArguments = { expression: PROBLEMS[0].expression };

  async function solve(index: number, correct: boolean): Promise<void> {
    const problem = PROBLEMS[index < 4 ? 0 : index < 8 ? 1 : 2];
    const claim = await store.claimRollout({ workerId: `runner-${(index % 3) + 1}` });
    if (!claim) throw new Error("seed: expected a queued rollout to claim");
    const { attempt, rollout } = claim;
    const t0 = now();
    const answer = correct ? problem.answer : Math.round(problem.answer * 1.1);
    const callId = `call_${index}`;
    const first = [
      { role: "system", content: SYSTEM },
      { role: "user", content: problem.question },
    ];
    const toolCall = {
      id: callId,
      type: "function",
      function: { name: CALCULATOR, arguments: JSON.stringify({ expression: problem.expression }) },
    };
    const firstResponse = { role: "assistant", content: null, tool_calls: [toolCall] };
    const second = [
      ...first,
      firstResponse,
      { role: "tool", tool_call_id: callId, name: CALCULATOR, content: JSON.stringify({ result: answer }) },
    ];
    const secondResponse = { role: "assistant", content: String(answer) };
    const spans = await store.addSpans([
      {
        attemptId: attempt.id,
        spanId: `llm-${index}-1`,
        name: "chat.completions",
        kind: "llm",
        startTime: t0,
        endTime: t0 + 840 + index * 37,
      },
      {
        attemptId: attempt.id,
        spanId: `tool-${index}`,
        name: CALCULATOR,
        kind: "tool",
        startTime: t0 + 900,
        endTime: t0 + 960,
        attributes: { expression: problem.expression },
      },
      {
        attemptId: attempt.id,
        spanId: `llm-${index}-2`,
        name: "chat.completions",
        kind: "llm",
        startTime: t0 + 1000,
        endTime: t0 + 1420 + index * 11,
      },
      {
        attemptId: attempt.id,
        spanId: `reward-${index}`,
        name: "exact_match",
        kind: "reward",
        startTime: t0 + 1450,
        endTime: t0 + 1460,
      },
    ]);
    const adapterVersion = String(rollout.resourcesVersion ?? "base");
    await store.addTransitions([
      {
        rolloutId: rollout.id,
        attemptId: attempt.id,
        spanId: spans[0].spanId,
        promptIds: tokens(96, index),
        responseIds: tokens(24, index + 1),
        responseLogprobs: tokens(24, index).map((t) => -(t % 97) / 40),
        messages: first,
        response: firstResponse,
        model: "qwen2.5-0.5b-instruct",
        adapterVersion,
        finishReason: "tool_calls",
        usage: { promptTokens: 96, completionTokens: 24 },
      },
      {
        rolloutId: rollout.id,
        attemptId: attempt.id,
        spanId: spans[2].spanId,
        promptIds: tokens(141, index),
        responseIds: tokens(5, index + 2),
        responseLogprobs: tokens(5, index).map((t) => -(t % 89) / 50),
        messages: second,
        response: secondResponse,
        model: "qwen2.5-0.5b-instruct",
        adapterVersion,
        finishReason: "stop",
        usage: { promptTokens: 141, completionTokens: 5 },
      },
    ]);
    await store.addRewards([
      {
        attemptId: attempt.id,
        spanId: spans[3].spanId,
        value: correct ? 1 : 0,
        dimensions: { correct: correct ? 1 : 0, format: 1 },
      },
    ]);
    advance(1500 + index * 90);
    await store.finishAttempt(attempt.id, { status: "succeeded" });
    succeeded.push(rollout.id);
    advance(2_000);
  }

  for (let i = 0; i < 8; i++) await solve(i, i % 3 !== 2);
  await solve(8, true); // the validation rollout
  const val = succeeded.pop()!;

  // Twice claimed, twice failing: requeued after attempt 1, failed after attempt 2 (maxAttempts 2).
  for (let tryNo = 1; tryNo <= 2; tryNo++) {
    const claim = await store.claimRollout({ workerId: "runner-2" });
    if (!claim) throw new Error("seed: expected the failing rollout to be queued");
    await store.addSpans([
      {
        attemptId: claim.attempt.id,
        name: "agent.run",
        kind: "exception",
        startTime: now(),
        endTime: now() + 300,
        status: { code: "error", message: "tool timed out" },
      },
    ]);
    advance(3_000);
    await store.finishAttempt(claim.attempt.id, {
      status: "failed",
      error: { message: "calculator: tool timed out after 3 s", type: "ToolTimeout" },
    });
  }
  const failed = rollouts[9].id;

  const running = await store.claimRollout({ workerId: "runner-3" });
  if (!running) throw new Error("seed: expected a rollout to run");
  await store.heartbeat(running.attempt.id);
  await store.addSpans([
    { attemptId: running.attempt.id, name: "chat.completions", kind: "llm", startTime: now(), endTime: null },
  ]);

  const cancelled = rollouts[13].id;
  await store.cancelRollout(cancelled);

  for (let step = 1; step <= 20; step++) {
    const progress = step / 20;
    const wobble = Math.sin(step * 1.7) * 0.04;
    const metrics: Record<string, number> = {
      rewardMean: 0.32 + 0.5 * progress + wobble,
      rewardStd: 0.41 - 0.15 * progress + wobble / 2,
      loss: 0.9 * Math.exp(-2 * progress) + 0.05 + wobble / 3,
      kl: 0.002 + 0.018 * progress + Math.abs(wobble) / 10,
      clipFraction: 0.12 - 0.07 * progress + Math.abs(wobble) / 5,
      entropy: 1.35 - 0.5 * progress + wobble,
      gradNorm: 2.4 - 1.3 * progress + wobble * 5,
      tokensPerSecond: 410 + 25 * Math.sin(step) + step,
    };
    if (step % 5 === 0) metrics.valAccuracy = 0.38 + 0.4 * progress + wobble;
    await store.addTrainingStep({ step, metrics });
    advance(20_000);
  }
  manual = null;
  return {
    store,
    ids: { succeeded, failed, running: running.rollout.id, queued: [rollouts[11].id, rollouts[12].id], cancelled, val },
    toolRolloutId: succeeded[0],
    toolArguments,
    totalRollouts: rollouts.length,
    steps: 20,
    valSteps: 4,
  };
}
