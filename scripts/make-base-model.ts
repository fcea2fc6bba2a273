// Builds the built-in demo model models/fulgur-calc/: a synthetic corpus of calculator-agent
// conversations (src/demo/corpus.ts) → a byte-level BPE tokenizer trained on it (one token per
// integer 0-999, so copying a number is copying one token) → a random 1M-parameter Qwen2 model
// with a compact tool template → full-weight SFT on the GPU with the project's own trainer →
// model.safetensors. Then measures the base calculator agent's accuracy on the demo's val split.
// Deterministic in --seed (same machine, same GPU driver). The defaults made the committed model
// (1,500 steps of 16 conversations, ~30 min on 2 CPU cores with lavapipe). Usage:
//   npx tsx scripts/make-base-model.ts [--seed 7] [--out models/fulgur-calc] [--steps 1500]

import { readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { COMPACT_TOOLS_CHAT_TEMPLATE } from "../src/demo/chat-template.ts";
import { corpusConversations, DEMO_TOOLS, tokenizeConversation } from "../src/demo/corpus.ts";
import { runAgentDirect } from "../src/demo/direct-agent.ts";
import { type ArithmeticTask, demoSplits, makeTasks, OPERATIONS } from "../src/demo/tasks.ts";
import { renderChatTemplate } from "../src/model/chat-template.ts";
import { loadModel, type Model } from "../src/model/model.ts";
import { saveFullWeights } from "../src/model/save-weights.ts";
import { writeTinyModel } from "../src/model/tiny.ts";
import type { SftSample } from "../src/trainer/sft.ts";
import { fitSft } from "../src/trainer/sft-fit.ts";

const { values } = parseArgs({
  options: {
    seed: { type: "string", default: "7" },
    out: { type: "string", default: "models/fulgur-calc" },
    steps: { type: "string", default: "1500" },
    hidden: { type: "string", default: "128" },
    layers: { type: "string", default: "4" },
    batch: { type: "string", default: "16" },
    lr: { type: "string", default: "0.004" },
    conversations: { type: "string", default: "12000" },
    "eval-only": { type: "boolean", default: false },
    /** Keep the tokenizer and weights in --out and train them further (a second SFT stage). */
    resume: { type: "boolean", default: false },
  },
});
const seed = Number(values.seed);
const steps = Number(values.steps);
const batchSize = Number(values.batch);
const peakLr = Number(values.lr);
const outDir = values.out;
for (const [name, v] of Object.entries({ seed, steps, batchSize, peakLr })) {
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} must be a non-negative number, got ${v}`);
}

const log = (fields: Record<string, unknown>) => console.log(JSON.stringify(fields));

/**
 * Base accuracy of the agent on `tasks`, greedy and sampled at temperature 1 (as RL samples),
 * overall and per operation, with the tool-call rate and generation throughput.
 */
async function accuracy(model: Model, tasks: ArithmeticTask[]): Promise<Record<string, unknown>> {
  const mean = (xs: number[]) => +(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)).toFixed(3);
  const out: Record<string, unknown> = {};
  for (const [mode, temperature] of [
    ["greedy", 0],
    ["sampled", 1],
  ] as const) {
    const start = performance.now();
    const runs = await Promise.all(tasks.map((t, i) => runAgentDirect(model, t, { temperature, seed: 1000 + i })));
    const seconds = (performance.now() - start) / 1000;
    out[mode] = mean(runs.map((r) => r.reward));
    out[`${mode}ByOp`] = Object.fromEntries(
      OPERATIONS.map((op) => [op, mean(runs.filter((_, i) => tasks[i].op === op).map((r) => r.reward))]),
    );
    out[`${mode}ToolRate`] = mean(runs.map((r) => (r.usedTool ? 1 : 0)));
    out[`${mode}TokensPerSecond`] = Math.round(runs.reduce((n, r) => n + r.generatedTokens, 0) / seconds);
  }
  return out;
}

if (!values["eval-only"]) {
  const corpusTasks = makeTasks(seed * 1000 + 3, Number(values.conversations), "corpus");
  const conversations = corpusConversations(corpusTasks, seed);
  const texts = conversations.map((c) =>
    renderChatTemplate(COMPACT_TOOLS_CHAT_TEMPLATE, c.messages, {
      tools: DEMO_TOOLS,
      bosToken: null,
      eosToken: "<|im_end|>",
    }),
  );
  const t0 = performance.now();
  if (!values.resume) rmSync(outDir, { recursive: true, force: true });
  if (!values.resume)
    await writeTinyModel(outDir, {
      hidden: Number(values.hidden),
      layers: Number(values.layers),
      heads: 4,
      kvHeads: 2,
      intermediate: Number(values.hidden) * 3,
      tie: true,
      seed,
      corpus: texts.slice(0, 600),
      chatTemplate: COMPACT_TOOLS_CHAT_TEMPLATE,
      tokenizerWholeNumbers: 1000,
      tokenizerVocabSize: 1600,
      maxPositionEmbeddings: 512,
    });
  log({ phase: "tokenizer+init", seconds: (performance.now() - t0) / 1000 });

  const model = await loadModel(outDir, { maxSlots: 16, maxSeqLen: 512 });
  const samples: SftSample[] = conversations.map((c) => tokenizeConversation(model.tokenizer, c.messages));
  const meanLen = samples.reduce((n, s) => n + s.tokens.length, 0) / samples.length;
  log({
    phase: "sft-start",
    vocab: model.config.vocabSize,
    conversations: samples.length,
    meanTokens: Math.round(meanLen),
    steps,
    batchSize,
  });
  const sftStart = performance.now();
  let lossSum = 0;
  let lossCount = 0;
  const { history, parameters } = await fitSft(model, samples, {
    steps,
    batchSize,
    lr: peakLr,
    lora: "full",
    seed: (seed ^ 0x5eed) + (values.resume ? 1 : 0),
    onStep: (m) => {
      lossSum += m.loss;
      lossCount++;
      if (m.step % 10 === 0 || m.step === steps) {
        log({
          phase: "sft",
          step: m.step,
          loss: +(lossSum / lossCount).toFixed(4),
          lr: +m.lr.toFixed(5),
          seconds: +((performance.now() - sftStart) / 1000).toFixed(1),
          tokensPerSecond: Math.round(m.tokensPerSecond),
        });
        lossSum = 0;
        lossCount = 0;
      }
    },
  });
  log({
    phase: "sft-done",
    seconds: +((performance.now() - sftStart) / 1000).toFixed(1),
    steps: history.length,
    parameters,
  });
  await saveFullWeights(model.transformer, outDir);
  model.dispose();
}

const model = await loadModel(outDir, { maxSlots: 32, maxSeqLen: 512 });
const { val } = demoSplits();
const evalStart = performance.now();
const acc = await accuracy(model, val);
const bytes = readdirSync(outDir).reduce((n, f) => n + statSync(join(outDir, f)).size, 0);
log({
  phase: "base-accuracy",
  split: "val",
  tasks: val.length,
  ...acc,
  seconds: +((performance.now() - evalStart) / 1000).toFixed(1),
  modelBytes: bytes,
});
model.dispose();
