// APO, automatic prompt optimisation as an `Algorithm`: improves a prompt template resource from
// rollouts and rewards with textual critiques ("gradients") and rewrites ("edits") by an LLM,
// beam search over candidate templates, and validation on held-out tasks. Every candidate is
// published as a version of the resource and scored by rollouts pinned to that version, run by
// whoever serves the store (the same runner and store LightningRL uses); the winner becomes the
// resource's latest version. Nothing here trains weights or starts a server.

import { promptTemplate } from "../prompt-template.ts";
import { mulberry32 } from "../random.ts";
import { NotFoundError } from "../store/errors.ts";
import type { JsonValue, Rollout, RolloutMode } from "../store/types.ts";
import type { Algorithm, AlgorithmContext, EvalResult, FitResult } from "./algorithm.ts";
import { runRollouts } from "./algorithm.ts";
import { type ChatEndpoint, chatText } from "./apo-llm.ts";
import { critiqueMessages, parseRewrite, type RolloutView, rewriteMessages } from "./apo-prompts.ts";

export interface ApoOptions {
  /** The optimiser LLM (any OpenAI-compatible endpoint, the served model included). */
  llm: ChatEndpoint;
  /** Name of the prompt template resource. Default "prompt". */
  resource?: string;
  /** Template to start from; default: the resource's latest version (which must exist). */
  initialTemplate?: string;
  /** Candidates kept after each round. Default 2. */
  beamWidth?: number;
  /** Rewrites asked for per beam candidate per round. Default 2. */
  branchFactor?: number;
  /** Training tasks every candidate of a round is scored on (the same ones for all). Default 4. */
  minibatchSize?: number;
  /** Rollouts per task when scoring (more for agents that sample). Default 1. */
  samplesPerTask?: number;
  /** Rollouts shown to the optimiser per critique: the worst, then the best. Default 4. */
  feedbackRollouts?: number;
  /** Sampling temperature of rewrites (critiques are greedy). Default 1. */
  temperature?: number;
  /** Most tokens per optimiser answer. Default 512. */
  maxTokens?: number;
  /** Character budget of one optimiser request (transcripts are clipped to fit). Default 6000. */
  maxPromptChars?: number;
  /** Longest template a rewrite may produce. Default 8000 characters. */
  maxTemplateChars?: number;
  /** Minibatch order and rewrite seeds. Default 0. */
  seed?: number;
  /** A rollout with reward ≥ this counts as correct for accuracy. Default 1. */
  successThreshold?: number;
  maxAttempts?: number;
  rolloutTimeoutMs?: number;
}

/** A template the search has published and scored. */
export interface ApoCandidate {
  template: string;
  /** Its version of the resource. */
  version: number;
  /** Version it was rewritten from (null for the initial template). */
  parent: number | null;
  round: number;
  /** Mean reward on the latest minibatch it was scored on (failed rollouts count 0). */
  score: number;
}

export interface ApoFitResult extends FitResult {
  /** The published winner: its template, the resource version holding it, its validation reward. */
  best: { template: string; version: number; valReward: number | null };
  initialValReward: number | null;
}

type ScoredRun = { score: number; rollouts: Rollout[] };

/** APO as an `Algorithm` whose `fit` also says which template won. */
export interface ApoAlgorithm<Task extends JsonValue = JsonValue> extends Algorithm<Task> {
  fit(ctx: AlgorithmContext<Task>, data: { train: Task[]; val?: Task[] }, steps: number): Promise<ApoFitResult>;
}

/** Creates the APO algorithm (`fulgur train` with `"algorithm": { "name": "apo", ... }`). */
export function createApo<Task extends JsonValue = JsonValue>(options: ApoOptions): ApoAlgorithm<Task> {
  if (!options?.llm?.baseURL || !options.llm.model) {
    throw new Error('apo: "llm" needs { baseURL, model } of an OpenAI-compatible endpoint');
  }
  const o = {
    resource: options.resource ?? "prompt",
    beamWidth: positiveInt(options.beamWidth ?? 2, "beamWidth"),
    branchFactor: positiveInt(options.branchFactor ?? 2, "branchFactor"),
    minibatchSize: positiveInt(options.minibatchSize ?? 4, "minibatchSize"),
    samplesPerTask: positiveInt(options.samplesPerTask ?? 1, "samplesPerTask"),
    feedbackRollouts: positiveInt(options.feedbackRollouts ?? 4, "feedbackRollouts"),
    temperature: options.temperature ?? 1,
    maxTokens: positiveInt(options.maxTokens ?? 512, "maxTokens"),
    maxPromptChars: positiveInt(options.maxPromptChars ?? 6000, "maxPromptChars"),
    maxTemplateChars: positiveInt(options.maxTemplateChars ?? 8000, "maxTemplateChars"),
    seed: options.seed ?? 0,
    successThreshold: options.successThreshold ?? 1,
  };

  return {
    name: "apo",
    async fit(ctx, data, steps) {
      if (data.train.length === 0) throw new Error("apo: fit needs at least one training task");
      const { store } = ctx;
      const random = mulberry32(o.seed);

      // The starting point: a given template (published now) or the resource as it stands.
      let base: { [key: string]: JsonValue; template: string };
      let start: number;
      if (options.initialTemplate !== undefined) {
        base = { template: options.initialTemplate };
        start = (await store.addResources(o.resource, base)).version;
      } else {
        const record = await store.getResources(o.resource).catch((err: unknown) => {
          if (err instanceof NotFoundError) return null;
          throw err;
        });
        if (!record) throw new Error(`apo: resource "${o.resource}" has no version; give initialTemplate`);
        const template = promptTemplate(record.value);
        base = { ...(record.value as Record<string, JsonValue>), template };
        start = record.version;
      }
      const initial: ApoCandidate = { template: base.template, version: start, parent: null, round: 0, score: 0 };
      const seen = new Set([initial.template.trim()]);
      let beam: ApoCandidate[] = [initial];

      const run = async (c: ApoCandidate, tasks: Task[], mode: RolloutMode, group: string): Promise<ScoredRun> => {
        const requests = tasks.flatMap((task, i) =>
          Array.from({ length: mode === "val" ? 1 : o.samplesPerTask }, () => ({ task, group: `${group}-${i}` })),
        );
        const rollouts = await runRollouts(store, requests, mode, {
          resources: { name: o.resource, version: c.version },
          maxAttempts: options.maxAttempts ?? 2,
          timeoutMs: options.rolloutTimeoutMs ?? 120_000,
        });
        const total = rollouts.reduce((a, r) => a + (r.status === "succeeded" ? (r.finalReward ?? 0) : 0), 0);
        return { score: requests.length ? total / requests.length : 0, rollouts };
      };

      const validate = async (c: ApoCandidate, val: Task[], label: string): Promise<EvalResult<Task>> => {
        const { rollouts } = await run(c, val, "val", `apo-val-${label}-v${c.version}`);
        return evalResult(val, rollouts, o.successThreshold);
      };

      const validation: FitResult["validation"] = [];
      let initialVal: EvalResult<Task> | null = null;
      if (data.val?.length) {
        initialVal = await validate(initial, data.val, "start");
        validation.push({ step: 0, accuracy: initialVal.accuracy, rewardMean: initialVal.rewardMean });
        await reportValidation(ctx, 0, initialVal, initial);
      }

      const order = shuffled(data.train.length, random);
      let cursor = 0;
      const history: Record<string, number>[] = [];
      for (let round = 1; round <= steps; round++) {
        const started = performance.now();
        const batch = Array.from({ length: Math.min(o.minibatchSize, data.train.length) }, () => {
          if (cursor === order.length) {
            cursor = 0;
            order.splice(0, order.length, ...shuffled(data.train.length, random));
          }
          return data.train[order[cursor++]];
        });
        // Parents are rescored on this round's minibatch so every candidate competes on the same tasks.
        const parentRuns = await Promise.all(beam.map((c) => run(c, batch, "train", `apo-r${round}-v${c.version}`)));
        beam.forEach((c, i) => {
          c.score = parentRuns[i].score;
        });

        let rejected = 0;
        let llmErrors = 0;
        let llmCalls = 0;
        const children: ApoCandidate[] = [];
        await Promise.all(
          beam.map(async (parent, p) => {
            const views = await feedback(store, parentRuns[p].rollouts, o.feedbackRollouts);
            let critique: string;
            try {
              llmCalls++;
              critique = await chatText(options.llm, critiqueMessages(parent.template, views, o.maxPromptChars), {
                temperature: 0,
                maxTokens: o.maxTokens,
                seed: o.seed,
              });
            } catch (err) {
              llmErrors++;
              await ctx.log({ event: "apo-llm-error", round, parent: parent.version, error: String(err) });
              return;
            }
            await ctx.log({ event: "apo-critique", round, parent: parent.version, score: parent.score, critique });
            for (let k = 0; k < o.branchFactor; k++) {
              let answer: string;
              try {
                llmCalls++;
                answer = await chatText(options.llm, rewriteMessages(parent.template, critique, o.maxPromptChars), {
                  temperature: o.temperature,
                  maxTokens: o.maxTokens,
                  seed: o.seed + round * 10_007 + p * 101 + k,
                });
              } catch (err) {
                llmErrors++;
                await ctx.log({ event: "apo-llm-error", round, parent: parent.version, error: String(err) });
                continue;
              }
              const parsed = parseRewrite(answer, parent.template, o.maxTemplateChars);
              const duplicate = parsed.ok && seen.has(parsed.template.trim());
              if (!parsed.ok || duplicate) {
                rejected++;
                await ctx.log({
                  event: "apo-rewrite-rejected",
                  round,
                  parent: parent.version,
                  reason: parsed.ok ? "duplicate of a known candidate" : parsed.reason,
                  answer: answer.slice(0, 2000),
                });
                continue;
              }
              seen.add(parsed.template.trim());
              const { version } = await store.addResources(o.resource, { ...base, template: parsed.template });
              children.push({ template: parsed.template, version, parent: parent.version, round, score: 0 });
            }
          }),
        );
        if (llmCalls > 0 && llmErrors === llmCalls) {
          throw new Error(`apo: every optimiser LLM call of round ${round} failed (see the log); stopping`);
        }
        const childRuns = await Promise.all(children.map((c) => run(c, batch, "train", `apo-r${round}-v${c.version}`)));
        for (const [i, c] of children.entries()) {
          c.score = childRuns[i].score;
          await ctx.log({
            event: "apo-candidate",
            round,
            version: c.version,
            parent: c.parent,
            score: c.score,
            template: c.template,
          });
        }
        // Stable sort: on equal scores the older candidate (the parent) keeps its place.
        const pool = [...beam, ...children].sort((a, b) => b.score - a.score);
        beam = pool.slice(0, o.beamWidth);
        const failed = [...parentRuns, ...childRuns].reduce(
          (n, r) => n + r.rollouts.filter((x) => x.status !== "succeeded").length,
          0,
        );
        const metrics: Record<string, number> = {
          rewardMean: beam[0].score,
          bestScore: beam[0].score,
          beamMean: beam.reduce((a, c) => a + c.score, 0) / beam.length,
          parentMean: parentRuns.reduce((a, r) => a + r.score, 0) / parentRuns.length,
          candidates: children.length,
          rejectedRewrites: rejected,
          llmErrors,
          bestVersion: beam[0].version,
          beamSize: beam.length,
          failedRollouts: failed,
          roundSeconds: (performance.now() - started) / 1000,
        };
        history.push(metrics);
        await store.addTrainingStep({ step: round, metrics });
        await ctx.log({
          event: "step",
          algorithm: "apo",
          step: round,
          ...metrics,
          beam: beam.map((c) => ({ version: c.version, score: c.score })),
        });
        ctx.emit({ type: "step", step: round, metrics });
      }

      // The winner is chosen on held-out tasks where there are some (the initial template included,
      // so APO never publishes something that validates worse than what it started from).
      let best = beam[0];
      let bestVal: EvalResult<Task> | null = null;
      if (data.val?.length) {
        const results = await Promise.all(
          beam.map((c) => (c === initial && initialVal ? initialVal : validate(c, data.val!, "end"))),
        );
        // In beam order, so on equal validation rewards the better minibatch score wins.
        for (const [i, r] of results.entries()) {
          if (!bestVal || r.rewardMean > bestVal.rewardMean) {
            best = beam[i];
            bestVal = r;
          }
        }
        if (initialVal && initialVal.rewardMean > bestVal!.rewardMean) {
          best = initial;
          bestVal = initialVal;
        }
      }
      const published = await store.addResources(o.resource, { ...base, template: best.template });
      if (bestVal) {
        validation.push({ step: steps, accuracy: bestVal.accuracy, rewardMean: bestVal.rewardMean });
        await reportValidation(ctx, steps, bestVal, best);
      }
      await ctx.log({
        event: "apo-best",
        version: published.version,
        candidate: best.version,
        valReward: bestVal?.rewardMean ?? null,
        template: best.template,
      });
      return {
        steps,
        history,
        validation,
        checkpoint: null,
        best: { template: best.template, version: published.version, valReward: bestVal?.rewardMean ?? null },
        initialValReward: initialVal?.rewardMean ?? null,
      };
    },
  };
}

function positiveInt(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new Error(`apo: ${name} must be a positive integer, got ${value}`);
  return value;
}

/** 0..n-1 in a seeded random order (Fisher-Yates). */
function shuffled(n: number, random: () => number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** The rollouts a critique sees: the worst half first (what to fix), then the best (what works). */
async function feedback(store: AlgorithmContext["store"], rollouts: Rollout[], count: number): Promise<RolloutView[]> {
  const reward = (r: Rollout) => (r.status === "succeeded" ? (r.finalReward ?? 0) : -Infinity);
  const sorted = [...rollouts].sort((a, b) => reward(a) - reward(b));
  const worst = sorted.slice(0, Math.ceil(count / 2));
  const best = sorted.slice(Math.ceil(count / 2)).slice(-Math.floor(count / 2));
  const chosen = [...worst, ...best.reverse()];
  return Promise.all(
    chosen.map(async (r) => ({
      input: r.input,
      reward: r.status === "succeeded" ? r.finalReward : null,
      transitions: await store.getTransitions({ rolloutId: r.id, limit: 50 }),
    })),
  );
}

function evalResult<Task extends JsonValue>(tasks: Task[], rollouts: Rollout[], threshold: number): EvalResult<Task> {
  const ok = rollouts.filter((r) => r.status === "succeeded" && r.finalReward !== null);
  return {
    accuracy: tasks.length ? ok.filter((r) => r.finalReward! >= threshold).length / tasks.length : 0,
    // Over every task: a rollout that failed or never finished counts 0, as in scoring.
    rewardMean: tasks.length ? ok.reduce((a, r) => a + r.finalReward!, 0) / tasks.length : 0,
    rollouts: rollouts.length,
    failed: tasks.length - ok.length,
    results: rollouts.map((r) => ({ task: r.input as Task, reward: r.status === "succeeded" ? r.finalReward : null })),
  };
}

async function reportValidation<Task extends JsonValue>(
  ctx: AlgorithmContext<Task>,
  step: number,
  r: EvalResult<Task>,
  c: ApoCandidate,
): Promise<void> {
  await ctx.store.addTrainingStep({ step, metrics: { valAccuracy: r.accuracy, valReward: r.rewardMean } });
  await ctx.log({
    event: "validation",
    algorithm: "apo",
    step,
    version: c.version,
    accuracy: r.accuracy,
    rewardMean: r.rewardMean,
  });
  ctx.emit({
    type: "validation",
    step,
    accuracy: r.accuracy,
    rewardMean: r.rewardMean,
    rollouts: r.rollouts,
    results: r.results,
  });
}
